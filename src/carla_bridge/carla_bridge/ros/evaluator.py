"""Closed-loop evaluator node: ground truth vs perception outputs, paired by image stamp.

Subscriptions (names are parameters):

=======================  ======================================  ==============================
parameter                type                                    default topic
=======================  ======================================  ==============================
image_topic              sensor_msgs/Image (sensor-data QoS)     /camera/image_raw
gt_lanes_topic           edge_perception_msgs/LaneSegmentation   /ground_truth/lanes
gt_detections_topic      vision_msgs/Detection2DArray            /ground_truth/detections
gt_instances_topic       edge_perception_msgs/InstanceArray      /ground_truth/instances
lane_mask_topic          sensor_msgs/Image mono8                 /lane_node/class_mask
lanes_topic              edge_perception_msgs/LaneSegmentation   "" (off; for embedded masks)
detections_topic         vision_msgs/Detection2DArray            /detection_node/detections
instances_topic          edge_perception_msgs/InstanceArray      /vis_node/instances
timing_topics (list)     edge_perception_msgs/FrameTiming        /<node>/timing of those three
(fixed) ~/write_report   std_msgs/Empty                          write the report now
=======================  ======================================  ==============================

Publishes ``~/progress`` (diagnostic_msgs/DiagnosticArray, every ``progress_period_s``, default
0.5 s, 0 = off): one status ``evaluator`` whose values are ``images_seen`` and ``paired_lane``,
``paired_detection``, ``paired_instance`` (frames scored so far), so a caller (the demo) can wait
until the evaluator has really scored the frames it wants instead of guessing.

An empty topic name switches that input off. A second prediction for an already paired stamp
(e.g. the same mask on two topics) is ignored and counted.

A prediction's latency is its arrival time on this node's clock minus its header stamp (the image
stamp), so run the evaluator with the same ``use_sim_time`` as the publisher. Lane predictions
are remapped to ``lane_classes`` by class name when the LaneSegmentation carries ``class_names``
(``solid``/``dashed`` are accepted for ``lane_solid``/``lane_dashed``).

The report (``<output_dir>/<stem>.json`` and ``.md``) is written at shutdown, every
``report_period_s`` seconds when > 0, and whenever ``~/write_report`` receives a message.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import rclpy
import rclpy.executors
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from edge_perception.ros import convert
from edge_perception.ros.spin import spin_until_shutdown
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Empty
from vision_msgs.msg import Detection2DArray

from carla_bridge.classes import LANE_CLASSES, OBJECT_CLASSES
from carla_bridge.evaluation import ClosedLoopEvaluator, write_report
from edge_perception_msgs.msg import FrameTiming, InstanceArray, LaneSegmentation

LANE_ALIASES = {"solid": "lane_solid", "dashed": "lane_dashed", "road": "drivable"}

DEFAULT_TOPICS = {
    "image_topic": "/camera/image_raw",
    "gt_lanes_topic": "/ground_truth/lanes",
    "gt_detections_topic": "/ground_truth/detections",
    "gt_instances_topic": "/ground_truth/instances",
    "lane_mask_topic": "/lane_node/class_mask",
    "lanes_topic": "",
    "detections_topic": "/detection_node/detections",
    "instances_topic": "/vis_node/instances",
}
DEFAULT_TIMING_TOPICS = ["/lane_node/timing", "/detection_node/timing", "/vis_node/timing"]


def lane_remap(names: Sequence[str], table: Sequence[str]) -> np.ndarray:
    """Lookup table from a prediction's class indices to indices of ``table`` (by name)."""
    lut = np.zeros(max(len(names), 1), np.uint8)
    for i, name in enumerate(names):
        n = LANE_ALIASES.get(name, name)
        if n not in table:
            raise ValueError(
                "lane class %r of the prediction is not in the evaluator's lane_classes %s"
                % (name, list(table))
            )
        lut[i] = list(table).index(n)
    return lut


class EvaluatorNode(Node):
    """See the module docstring; ``self.evaluator`` holds the metrics so far."""

    def __init__(self, node_name: str = "evaluator", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        for name, topic in DEFAULT_TOPICS.items():
            self.declare_parameter(name, topic)
        self.declare_parameter("output_dir", "evaluation")
        self.declare_parameter("stem", "evaluation")
        self.declare_parameter("report_period_s", 0.0)
        self.declare_parameter("lane_classes", list(LANE_CLASSES))
        self.declare_parameter("object_classes", list(OBJECT_CLASSES))
        self.declare_parameter("line_tol_px", 2.0)
        self.declare_parameter("line_f1_stride", 1)  # lane-line F1 on every n-th frame, 0 = off
        self.lane_classes: List[str] = list(self.get_parameter("lane_classes").value)
        self.object_classes: List[str] = list(self.get_parameter("object_classes").value)
        self.evaluator = ClosedLoopEvaluator(
            self.object_classes, self.lane_classes,
            line_tol_px=float(self.get_parameter("line_tol_px").value),
            line_f1_stride=int(self.get_parameter("line_f1_stride").value),
        )  # fmt: skip
        self._warned: Dict[str, bool] = {}
        self.declare_parameter("timing_topics", DEFAULT_TIMING_TOPICS)
        t = {n: self.get_parameter(n).value for n in DEFAULT_TOPICS}
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        subs = [
            (Image, "image_topic", self._on_image, qos_profile_sensor_data),
            (LaneSegmentation, "gt_lanes_topic", self._on_gt_lanes, reliable),
            (Detection2DArray, "gt_detections_topic", self._on_gt_detections, reliable),
            (InstanceArray, "gt_instances_topic", self._on_gt_instances, reliable),
            (Image, "lane_mask_topic", self._on_lane_mask, reliable),
            (LaneSegmentation, "lanes_topic", self._on_lanes, reliable),
            (Detection2DArray, "detections_topic", self._on_detections, reliable),
            (InstanceArray, "instances_topic", self._on_instances, reliable),
        ]
        for cls, name, cb, qos in subs:
            if t[name]:
                self.create_subscription(cls, t[name], cb, qos)
        for topic in self.get_parameter("timing_topics").value:
            if topic:
                self.create_subscription(FrameTiming, topic, self._on_timing, reliable)
        self.create_subscription(Empty, "~/write_report", self._on_write_report, 1)
        period = float(self.get_parameter("report_period_s").value)
        if period > 0:
            self.create_timer(period, self._on_write_report)
        self.declare_parameter("progress_period_s", 0.5)
        self._progress_pub = self.create_publisher(DiagnosticArray, "~/progress", 10)
        progress = float(self.get_parameter("progress_period_s").value)
        if progress > 0:
            self.create_timer(progress, self.publish_progress)

    # ------------------------------------------------------------------ helpers
    def _now(self) -> int:
        return self.get_clock().now().nanoseconds

    def _guard(self, what: str, fn: Any, *args: Any) -> None:
        """Run one callback body; log each kind of failure once instead of crashing the node."""
        try:
            fn(*args)
        except (ValueError, TypeError) as exc:
            if not self._warned.get(what):
                self._warned[what] = True
                self.get_logger().error("%s: %s (further errors of this kind are counted)"
                                        % (what, exc))  # fmt: skip

    def publish_progress(self) -> None:
        """Publish :meth:`ClosedLoopEvaluator.progress` on ``~/progress``."""
        counts = self.evaluator.progress()
        status = DiagnosticStatus(level=DiagnosticStatus.OK, name="evaluator", message="running")
        status.values = [KeyValue(key=k, value=str(v)) for k, v in counts.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._progress_pub.publish(msg)

    def _on_write_report(self, _msg: Any = None) -> None:
        self.write_report()

    def write_report(self) -> List[str]:
        """Write JSON + Markdown now; returns the paths."""
        paths = write_report(self.evaluator.summary(), self.get_parameter("output_dir").value,
                             self.get_parameter("stem").value)  # fmt: skip
        self.get_logger().info("evaluation report: %s" % ", ".join(paths))
        return paths

    # ------------------------------------------------------------------ callbacks
    def _on_image(self, msg: Image) -> None:
        self.evaluator.add_image(convert.stamp_to_ns(msg.header.stamp), msg.height, msg.width)

    def _on_gt_lanes(self, msg: LaneSegmentation) -> None:
        def run() -> None:
            res = convert.msg_to_lane(msg)
            if res.class_mask is None:
                raise ValueError("ground-truth LaneSegmentation without an embedded class mask")
            mask = res.class_mask
            if res.class_names and list(res.class_names) != self.lane_classes:
                mask = lane_remap(res.class_names, self.lane_classes)[mask]
            self.evaluator.add_ground_truth("lane", convert.stamp_to_ns(msg.header.stamp), mask)

        self._guard("ground-truth lanes", run)

    def _add_lane_prediction(self, stamp: int, mask: np.ndarray, names: Sequence[str],
                             stream: str) -> None:  # fmt: skip
        if names and list(names) != self.lane_classes:
            mask = lane_remap(names, self.lane_classes)[mask]
        self.evaluator.add_prediction("lane", stamp, mask, self._now(), stream)

    def _on_lane_mask(self, msg: Image) -> None:
        def run() -> None:
            if msg.encoding != "mono8":
                raise ValueError("lane class mask must be mono8, got %r" % msg.encoding)
            mask = convert.image_to_array(msg)[..., 0].copy()
            self._add_lane_prediction(convert.stamp_to_ns(msg.header.stamp), mask, [], "lane_mask")

        self._guard("lane mask", run)

    def _on_lanes(self, msg: LaneSegmentation) -> None:
        def run() -> None:
            res = convert.msg_to_lane(msg)
            if res.class_mask is None:
                return  # the mask comes on lane_mask_topic
            self._add_lane_prediction(convert.stamp_to_ns(msg.header.stamp), res.class_mask,
                                      res.class_names, "lanes")  # fmt: skip

        self._guard("lanes", run)

    def _on_gt_detections(self, msg: Detection2DArray) -> None:
        self._guard("ground-truth detections", lambda: self.evaluator.add_ground_truth(
            "detection", convert.stamp_to_ns(msg.header.stamp),
            convert.msg_to_detections(msg, self.object_classes)))  # fmt: skip

    def _on_detections(self, msg: Detection2DArray) -> None:
        self._guard(
            "detections",
            lambda: self.evaluator.add_prediction(
                "detection",
                convert.stamp_to_ns(msg.header.stamp),
                convert.msg_to_detections(msg, self.object_classes),
                self._now(),
                "detections",
            ),
        )

    def _on_gt_instances(self, msg: InstanceArray) -> None:
        self._guard("ground-truth instances", lambda: self.evaluator.add_ground_truth(
            "instance", convert.stamp_to_ns(msg.header.stamp),
            convert.msg_to_instances(msg, decode_masks=False)))  # fmt: skip

    def _on_instances(self, msg: InstanceArray) -> None:
        self._guard(
            "instances",
            lambda: self.evaluator.add_prediction(
                "instance",
                convert.stamp_to_ns(msg.header.stamp),
                convert.msg_to_instances(msg, decode_masks=False),
                self._now(),
                "instances",
            ),
        )

    def _on_timing(self, msg: FrameTiming) -> None:
        self.evaluator.add_timing(msg.node or "unknown", {
            "preprocess_ms": msg.preprocess_ms, "inference_ms": msg.inference_ms,
            "postprocess_ms": msg.postprocess_ms, "end_to_end_ms": msg.end_to_end_ms,
        })  # fmt: skip


def main(args: Optional[list] = None) -> None:
    """Console entry: spin until Ctrl-C / shutdown, then write the report."""
    rclpy.init(args=args)
    node = EvaluatorNode()
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    try:
        spin_until_shutdown(executor)
    finally:
        try:
            node.write_report()
        finally:
            node.destroy_node()
            rclpy.try_shutdown()


if __name__ == "__main__":
    main()
