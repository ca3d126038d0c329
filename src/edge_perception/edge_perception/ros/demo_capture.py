"""The demo's ROS side: watch a running deployment and keep its overlay images.

:func:`capture` joins the deployment's domain with a node of its own, subscribes to the lane,
detection and VIS overlays, the lane class masks, the detections and the lifecycle manager's
status, and returns once ``frames`` frames went through both perception nodes, ``timeout_s``
passed, the bring-up failed, or ``abort()`` returned a reason. Used by :mod:`edge_perception.demo`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from edge_perception.ros.convert import image_to_array, stamp_to_ns
from edge_perception.ros.lifecycle_manager import STATUS_QOS, parse_status

TOPICS = {
    "lane_overlay": "/lane_node/overlay",
    "det_overlay": "/detection_node/overlay",
    "vis_overlay": "/vis_node/overlay",  # only while vis_node runs (a VIS model exists)
    "lane_mask": "/lane_node/class_mask",
    "detections": "/detection_node/detections",
    "manager_status": "/lifecycle_manager/status",
    "evaluator_progress": "/evaluator/progress",
}

GRAPH_WAIT_S = 10.0


@dataclass
class Capture:
    """What :func:`capture` saw; images are RGB uint8, keyed by the source image stamp (ns)."""

    lane_overlays: OrderedDict[int, np.ndarray] = field(default_factory=OrderedDict)
    det_overlays: OrderedDict[int, np.ndarray] = field(default_factory=OrderedDict)
    vis_overlays: OrderedDict[int, np.ndarray] = field(default_factory=OrderedDict)
    lane_frames: int = 0
    det_frames: int = 0
    detections: int = 0
    seconds: float = 0.0
    manager_phase: str = ""
    error: str = ""
    evaluator: Dict[str, int] = field(default_factory=dict)  # last ~/progress counts
    topics: Dict[str, List[str]] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        """Frames that went through both nodes (the smaller of the two counts)."""
        return min(self.lane_frames, self.det_frames)


def _keep(store: OrderedDict[int, np.ndarray], stamp: int, img: np.ndarray, keep: int) -> None:
    store[stamp] = img
    while len(store) > keep:
        store.popitem(last=False)


def capture(
    domain_id: int,
    frames: int,
    timeout_s: float,
    abort: Optional[Callable[[], Optional[str]]] = None,
    keep: int = 64,
    expect_topics: Sequence[str] = (),
    wait_evaluator: bool = False,
) -> Capture:
    """Watch the deployment on ``domain_id`` (see the module docstring); never raises on ROS
    trouble, the reason lands in ``Capture.error``.

    ``wait_evaluator``: also go on until the closed-loop evaluator reports (``~/progress``) that it
    scored ``frames`` lane and detection frames, since it may have joined after the first frames.
    ``expect_topics``: topics (e.g. those the RViz config shows) that should be on the graph; after
    the frames are in, the graph is watched up to :data:`GRAPH_WAIT_S` more for them, since
    endpoint discovery can trail the first messages. ``Capture.topics`` is the last graph seen.
    """
    ctx = Context()
    rclpy.init(context=ctx, domain_id=int(domain_id))
    out = Capture()
    node = rclpy.create_node("edge_perception_demo_capture", context=ctx)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

    def on_lane_overlay(msg: Image) -> None:
        _keep(out.lane_overlays, stamp_to_ns(msg.header.stamp), image_to_array(msg), keep)

    def on_det_overlay(msg: Image) -> None:
        _keep(out.det_overlays, stamp_to_ns(msg.header.stamp), image_to_array(msg), keep)

    def on_vis_overlay(msg: Image) -> None:
        _keep(out.vis_overlays, stamp_to_ns(msg.header.stamp), image_to_array(msg), keep)

    def on_mask(_msg: Image) -> None:
        out.lane_frames += 1

    def on_dets(msg: Detection2DArray) -> None:
        out.det_frames += 1
        out.detections += len(msg.detections)

    def on_status(msg: DiagnosticArray) -> None:
        phase, _states = parse_status(msg)
        out.manager_phase = phase
        if phase == "failed":
            errors = [s.message for s in msg.status if s.level == DiagnosticStatus.ERROR]
            out.error = "lifecycle bring-up failed: " + "; ".join(e for e in errors if e)

    node.create_subscription(Image, TOPICS["lane_overlay"], on_lane_overlay, reliable)
    node.create_subscription(Image, TOPICS["det_overlay"], on_det_overlay, reliable)
    node.create_subscription(Image, TOPICS["vis_overlay"], on_vis_overlay, reliable)
    node.create_subscription(Image, TOPICS["lane_mask"], on_mask, reliable)
    node.create_subscription(Detection2DArray, TOPICS["detections"], on_dets, reliable)

    def on_progress(msg: DiagnosticArray) -> None:
        for status in msg.status:
            for kv in status.values:
                if kv.value.isdigit():
                    out.evaluator[kv.key] = int(kv.value)

    def evaluator_behind() -> bool:
        if not wait_evaluator:
            return False
        got = out.evaluator
        return min(got.get("paired_lane", 0), got.get("paired_detection", 0)) < frames

    node.create_subscription(DiagnosticArray, TOPICS["manager_status"], on_status, STATUS_QOS)
    node.create_subscription(DiagnosticArray, TOPICS["evaluator_progress"], on_progress, 10)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    t0 = time.monotonic()
    try:
        # Overlays are rendered only for subscribers, so the first frames may come without them:
        # go on until at least one frame has both overlays (for the strip), within timeout_s.
        while (
            out.frames < frames
            or not set(out.lane_overlays) & set(out.det_overlays)
            or evaluator_behind()
        ) and not out.error:
            if time.monotonic() - t0 > timeout_s:
                break
            reason = abort() if abort is not None else None
            if reason:
                out.error = reason
                break
            executor.spin_once(timeout_sec=0.1)
        settle = time.monotonic() + (GRAPH_WAIT_S if not out.error else 0.0)
        while True:
            out.topics = {name: list(types) for name, types in node.get_topic_names_and_types()}
            if set(expect_topics) <= set(out.topics) or time.monotonic() > settle:
                break
            executor.spin_once(timeout_sec=0.1)
    finally:
        out.seconds = time.monotonic() - t0
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        ctx.try_shutdown()
    return out
