"""A minimal lifecycle node run by test_runner.py through ``python -m test_runner_peer``.

It prints every transition (``PEER <name> <transition> <monotonic ns>``) and publishes its
``greeting`` parameter on ``~/greeting`` while active, so a test can see the parameters file and
the remaps the runner wrote. Holds no tests; rclpy is imported in main() only.
"""

from __future__ import annotations

import sys
import time


def main() -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
    from std_msgs.msg import String

    class Peer(LifecycleNode):
        def __init__(self) -> None:
            super().__init__("runner_peer")
            self.declare_parameter("greeting", "")
            self._pub = None
            self._timer = None

        def _say(self, what: str) -> None:
            print("PEER %s %s %d" % (self.get_name(), what, time.monotonic_ns()), flush=True)

        def on_configure(self, state):
            self._say("configure")
            self._pub = self.create_lifecycle_publisher(String, "greeting", 10)
            self._timer = self.create_timer(0.1, self._tick)
            return TransitionCallbackReturn.SUCCESS

        def _tick(self) -> None:
            if self._pub is not None and self._pub.is_activated:
                self._pub.publish(String(data=self.get_parameter("greeting").value))

        def on_activate(self, state):
            self._say("activate")
            return super().on_activate(state)

        def on_deactivate(self, state):
            self._say("deactivate")
            return super().on_deactivate(state)

        def on_cleanup(self, state):
            self._say("cleanup")
            self.destroy_timer(self._timer)
            self.destroy_lifecycle_publisher(self._pub)
            self._pub = self._timer = None
            return TransitionCallbackReturn.SUCCESS

    rclpy.init(args=sys.argv)
    node = Peer()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
