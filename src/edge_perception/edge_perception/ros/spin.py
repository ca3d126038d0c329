"""Spinning until shutdown, the same way in every process of the project.

Ctrl-C or SIGTERM shuts the rclpy context down from a signal handler. ``executor.spin()`` then
normally raises ``ExternalShutdownException``; but when the shutdown lands while the executor is
building its wait set, rclpy raises an ``RCLError`` ("the given context is not valid") instead,
and a process that only caught the former exited with status 1 after a clean Ctrl-C (seen in CI).
"""

from __future__ import annotations

import sys
from typing import Any, Callable, List, Optional, Sequence


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


AUTOSTART_HELP = "configure and activate at start-up (else a lifecycle manager does)"


def lifecycle_main(
    argv: Optional[Sequence[str]],
    prog: str,
    doc: Optional[str],
    config_class: Any,
    make_node: Callable[[], Any],
) -> int:
    """The console-script ``main`` of every lifecycle node of the project.

    ``--help`` prints the parameters of ``config_class`` (descriptions, defaults, allowed values)
    with the first paragraph of ``doc`` and returns 0; an argument outside ``--ros-args`` other
    than ``--autostart`` returns 2 with one line; otherwise the node from ``make_node()`` spins
    until Ctrl-C / shutdown (``--autostart`` configures and activates it first).
    """
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.utilities import remove_ros_args

    from edge_perception.ros.node_base import spin_node
    from edge_perception.ros.params import usage

    args: List[str] = list(sys.argv if argv is None else argv)
    own = remove_ros_args(args)[1:]
    if "-h" in own or "--help" in own:
        summary = (doc or "").split("\n\n")[0]
        sys.stdout.write(usage(config_class, prog, summary, {"--autostart": AUTOSTART_HELP}))
        return 0
    unknown = [a for a in own if a != "--autostart"]
    if unknown:
        print(
            "%s: unknown argument(s) %s; ROS arguments go after --ros-args (see --help)"
            % (prog, " ".join(unknown)),
            file=sys.stderr,
        )
        return 2
    rclpy.init(args=args)
    node = make_node()
    if "--autostart" in own and node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
        node.trigger_activate()
    spin_node(node)
    return 0
