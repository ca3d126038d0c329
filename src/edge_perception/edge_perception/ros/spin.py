"""Spinning until shutdown, the same way in every process of the project.

Ctrl-C or SIGTERM shuts the rclpy context down from a signal handler. ``executor.spin()`` then
normally raises ``ExternalShutdownException``; but when the shutdown lands while the executor is
building its wait set, rclpy raises an ``RCLError`` ("the given context is not valid") instead,
and a process that only caught the former exited with status 1 after a clean Ctrl-C (seen in CI).
"""

from __future__ import annotations

from typing import Any, Optional


def spin_until_shutdown(executor: Any, context: Optional[Any] = None) -> None:
    """``executor.spin()``; returns when the context is shut down or on Ctrl-C.

    Any error while the context is still valid is re-raised. ``context`` defaults to the
    executor's.
    """
    from rclpy.executors import ExternalShutdownException
    from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        return
    except _rclpy.RCLError:
        if (context if context is not None else executor.context).ok():
            raise
