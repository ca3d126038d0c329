"""A small lifecycle node, run in its own process, that records its transitions on a topic."""

from __future__ import annotations

import rclpy
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from std_msgs.msg import String


class Recorder(LifecycleNode):
    def __init__(self) -> None:
        super().__init__("lifecycle_peer")
        self._log = self.create_publisher(String, "lifecycle_peer/transitions", 50)
        self._timer = None
        self._pub = None

    def _say(self, what: str) -> TransitionCallbackReturn:
        self._log.publish(String(data=what))
        return TransitionCallbackReturn.SUCCESS

    def on_configure(self, state):
        self._pub = self.create_lifecycle_publisher(String, "lifecycle_peer/data", 10)
        return self._say("configure")

    def on_activate(self, state):
        self._timer = self.create_timer(0.05, lambda: self._pub.publish(String(data="tick")))
        super().on_activate(state)
        return self._say("activate")

    def on_deactivate(self, state):
        self.destroy_timer(self._timer)
        super().on_deactivate(state)
        return self._say("deactivate")

    def on_cleanup(self, state):
        self.destroy_lifecycle_publisher(self._pub)
        return self._say("cleanup")

    def on_shutdown(self, state):
        return self._say("shutdown")


def main() -> None:
    rclpy.init()
    node = Recorder()
    print("READY", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
