"""spin_until_shutdown: returns on shutdown, re-raises errors while the context is valid."""

from __future__ import annotations

import threading

import pytest

pytestmark = pytest.mark.ros


def test_returns_when_the_context_is_shut_down_and_reraises_otherwise():
    import rclpy
    from edge_perception.ros.spin import spin_until_shutdown
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    ctx = Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("spin_test", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)

    def boom() -> None:
        raise RuntimeError("callback failed")

    timer = node.create_timer(0.05, boom)
    with pytest.raises(RuntimeError, match="callback failed"):
        spin_until_shutdown(executor)  # a real error while the context is valid propagates
    node.destroy_timer(timer)
    stopper = threading.Timer(0.3, ctx.shutdown)
    stopper.start()
    spin_until_shutdown(executor)  # returns once the context is shut down, whatever rclpy raised
    stopper.join()
    assert not ctx.ok()
    executor.shutdown()
    node.destroy_node()
