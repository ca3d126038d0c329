"""A lifecycle node in another process is driven through the standard lifecycle services."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros
HERE = Path(__file__).resolve().parent


def _call(node, executor, client, request, timeout=10.0):
    assert client.wait_for_service(timeout_sec=timeout), client.srv_name
    future = client.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=timeout)
    assert future.done(), "no answer from " + client.srv_name
    return future.result()


def test_configure_activate_deactivate_cleanup_shutdown(rclpy_context):
    import rclpy
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    peer = subprocess.Popen(
        [sys.executable, str(HERE / "_lifecycle_peer.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert peer.stdout.readline().strip() == "READY"
        node = rclpy.create_node("lifecycle_driver", context=rclpy_context)
        ex = SingleThreadedExecutor(context=rclpy_context)
        ex.add_node(node)
        said, data = [], []
        node.create_subscription(
            String, "lifecycle_peer/transitions", lambda m: said.append(m.data), 50
        )
        node.create_subscription(String, "lifecycle_peer/data", lambda m: data.append(m.data), 10)
        change = node.create_client(ChangeState, "lifecycle_peer/change_state")
        get = node.create_client(GetState, "lifecycle_peer/get_state")

        def state() -> int:
            return _call(node, ex, get, GetState.Request()).current_state.id

        def go(transition_id: int) -> None:
            req = ChangeState.Request()
            req.transition.id = transition_id
            assert _call(node, ex, change, req).success, transition_id

        def spin_until(cond, timeout=10.0) -> bool:
            end = time.monotonic() + timeout
            while not cond() and time.monotonic() < end:
                ex.spin_once(timeout_sec=0.05)
            return cond()

        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        go(Transition.TRANSITION_CONFIGURE)
        assert state() == State.PRIMARY_STATE_INACTIVE
        go(Transition.TRANSITION_ACTIVATE)
        assert state() == State.PRIMARY_STATE_ACTIVE
        assert spin_until(lambda: len(data) >= 2), "an active node publishes"
        go(Transition.TRANSITION_DEACTIVATE)
        assert state() == State.PRIMARY_STATE_INACTIVE
        go(Transition.TRANSITION_CLEANUP)
        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        go(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        assert state() == State.PRIMARY_STATE_FINALIZED
        assert spin_until(lambda: len(said) >= 5)
        assert said == ["configure", "activate", "deactivate", "cleanup", "shutdown"]
        # An invalid transition from FINALIZED is refused, not crashed on.
        req = ChangeState.Request()
        req.transition.id = Transition.TRANSITION_CONFIGURE
        assert not _call(node, ex, change, req).success
        node.destroy_node()
    finally:
        peer.terminate()
        peer.wait(timeout=10)
