"""A perception node under test plus a peer node over real DDS, for the reliability suite.

The peer publishes camera frames (one at a time, or a steady stream from a timer), calls the
node's lifecycle services and records what the node publishes: ``~/timing``, its ``/diagnostics``
status and its log lines (``/rosout``). One executor spins both in the test's thread.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from edge_perception.ros.convert import array_to_image, make_header, stamp_to_ns
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Log
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from edge_perception_msgs.msg import FrameTiming

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
TOPIC = "cam/image"
STATE_LABELS = {
    State.PRIMARY_STATE_UNCONFIGURED: "unconfigured",
    State.PRIMARY_STATE_INACTIVE: "inactive",
    State.PRIMARY_STATE_ACTIVE: "active",
    State.PRIMARY_STATE_FINALIZED: "finalized",
}
T = Transition
ALL_TRANSITIONS = {
    "configure": T.TRANSITION_CONFIGURE,
    "cleanup": T.TRANSITION_CLEANUP,
    "activate": T.TRANSITION_ACTIVATE,
    "deactivate": T.TRANSITION_DEACTIVATE,
    "unconfigured_shutdown": T.TRANSITION_UNCONFIGURED_SHUTDOWN,
    "inactive_shutdown": T.TRANSITION_INACTIVE_SHUTDOWN,
    "active_shutdown": T.TRANSITION_ACTIVE_SHUTDOWN,
}


def frame(seed: int = 0, h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def lane_params(model: str, **params: Any) -> List[Parameter]:
    """Overrides for a lane node on the test topic (reliable QoS, fast diagnostics)."""
    values: Dict[str, Any] = {
        "model": model,
        "input_topic": TOPIC,
        "qos": "reliable",
        "threads": 1,
        "overlay": False,
        "diagnostics_period": 0.2,
        "warmup_runs": 0,
    }
    values.update(params)
    return [Parameter(k, value=v) for k, v in values.items()]


class NodeHarness:
    """The node under test and a peer, spun by one executor in this thread."""

    def __init__(self, ctx: Any, node: Any) -> None:
        self.node = node
        self.name = node.get_name()
        self.peer = Node("reliability_peer", context=ctx)
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(node)
        self.executor.add_node(self.peer)
        self.timing: List[FrameTiming] = []
        self.diag: List[DiagnosticStatus] = []
        self.logs: List[Log] = []
        self.errors: List[BaseException] = []
        self.peer.create_subscription(
            FrameTiming, f"/{self.name}/timing", self.timing.append, RELIABLE
        )
        self.peer.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, RELIABLE)
        self.peer.create_subscription(Log, "/rosout", self._on_log, RELIABLE)
        self.pub = self.peer.create_publisher(Image, TOPIC, RELIABLE)
        self.change = self.peer.create_client(ChangeState, f"/{self.name}/change_state")
        self.get = self.peer.create_client(GetState, f"/{self.name}/get_state")
        self._stream: Any = None
        self.sent: List[int] = []
        self._seq = 0

    # ---------------------------------------------------------------- recording
    def _on_diag(self, arr: DiagnosticArray) -> None:
        self.diag.extend(st for st in arr.status if st.name.startswith(self.name + ":"))

    def _on_log(self, msg: Log) -> None:
        if msg.name == self.name:
            self.logs.append(msg)

    def log_lines(self, needle: str) -> List[str]:
        return [m.msg for m in self.logs if needle in m.msg]

    # ---------------------------------------------------------------- spinning
    def spin_until(self, cond: Callable[[], bool], timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            self.executor.spin_once(timeout_sec=0.02)
        return cond()

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def call(self, client: Any, request: Any) -> Any:
        assert self.spin_until(client.service_is_ready, 10.0), "service not ready"
        future = client.call_async(request)
        assert self.spin_until(future.done, 30.0), "service call timed out"
        return future.result()

    def transition(self, tid: int) -> bool:
        req = ChangeState.Request()
        req.transition.id = tid
        return self.call(self.change, req).success

    def state(self) -> int:
        return self.call(self.get, GetState.Request()).current_state.id

    def bring_to(self, label: str) -> None:
        """Drive the node from unconfigured to ``label`` (unconfigured/inactive/active)."""
        steps = {
            "unconfigured": [],
            "inactive": ["configure"],
            "active": ["configure", "activate"],
        }
        for step in steps[label]:
            assert self.transition(ALL_TRANSITIONS[step]), step
        assert STATE_LABELS[self.state()] == label

    # ---------------------------------------------------------------- frames
    def now_ns(self) -> int:
        return time.time_ns()

    def send(self, rgb: np.ndarray, stamp_ns: Optional[int] = None, encoding: str = "rgb8") -> int:
        stamp = self.now_ns() if stamp_ns is None else stamp_ns
        self.pub.publish(array_to_image(rgb, encoding, make_header(stamp, "camera")))
        return stamp

    def send_msg(self, msg: Image) -> None:
        self.pub.publish(msg)

    def wait_subscribed(self) -> None:
        assert self.spin_until(lambda: self.pub.get_subscription_count() > 0, 10.0)
        assert self.spin_until(lambda: self.peer.count_publishers(f"/{self.name}/timing") > 0)

    def processed(self, stamp_ns: int) -> List[FrameTiming]:
        return [t for t in self.timing if stamp_to_ns(t.header.stamp) == stamp_ns]

    def good_frame_processed(self, timeout: float = 15.0) -> bool:
        """Send a good frame (fresh stamp) and wait for its ``~/timing``; again every 0.5 s
        until one is processed (amid a stream, a newer frame may replace it in the mailbox)."""
        end = time.monotonic() + timeout
        stamps: List[int] = []
        while time.monotonic() < end:
            self._seq += 1
            stamps.append(self.send(frame(self._seq)))
            if self.spin_until(lambda: any(self.processed(s) for s in stamps), 0.5):
                return True
        return False

    def start_stream(self, rate_hz: float) -> None:
        """Publish a good frame every ``1 / rate_hz`` s from a peer timer (stamp = now)."""
        self.stop_stream()
        img = frame(99)

        def tick() -> None:
            self.sent.append(self.send(img))

        self._stream = self.peer.create_timer(1.0 / rate_hz, tick)

    def stop_stream(self) -> None:
        if self._stream is not None:
            self.peer.destroy_timer(self._stream)
            self._stream = None

    # ---------------------------------------------------------------- diagnostics
    def last_diag(self) -> Optional[DiagnosticStatus]:
        return self.diag[-1] if self.diag else None

    def fresh_diag(self, cond: Callable[[DiagnosticStatus], bool], timeout: float = 10.0):
        """The first status published from now on that satisfies ``cond`` (None on timeout)."""
        start = len(self.diag)

        def first() -> Optional[DiagnosticStatus]:
            return next((st for st in self.diag[start:] if cond(st)), None)

        self.spin_until(lambda: first() is not None, timeout)
        return first()

    @staticmethod
    def value(st: DiagnosticStatus, key: str) -> str:
        for kv in st.values:
            if kv.key == key:
                return kv.value
        return ""

    def close(self) -> None:
        self.stop_stream()
        self.executor.remove_node(self.node)
        self.executor.remove_node(self.peer)
        self.node.destroy_node()
        self.peer.destroy_node()
        self.executor.shutdown()
