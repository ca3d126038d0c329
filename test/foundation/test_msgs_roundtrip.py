"""Every custom message and every vision_msgs message crosses a process boundary over real DDS."""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

VISION = [
    "Point2D", "Pose2D", "BoundingBox2D", "ObjectHypothesis", "ObjectHypothesisWithPose",
    "Detection2D", "Detection2DArray", "VisionClass", "LabelInfo", "VisionInfo",
]  # fmt: skip
CUSTOM = ["MaskRLE", "Instance", "InstanceArray", "LaneLine", "LaneSegmentation", "FrameTiming"]
TYPES = ["vision_msgs/" + t for t in VISION] + ["edge_perception_msgs/" + t for t in CUSTOM]

# The vision_msgs 4.x layout (Humble and later): field names, types and order, from the package's
# published definitions. A wire-compatible copy must match it exactly.
VISION_LAYOUT = {
    "Point2D": [("x", "double"), ("y", "double")],
    "Pose2D": [("position", "vision_msgs/Point2D"), ("theta", "double")],
    "BoundingBox2D": [
        ("center", "vision_msgs/Pose2D"),
        ("size_x", "double"),
        ("size_y", "double"),
    ],
    "ObjectHypothesis": [("class_id", "string"), ("score", "double")],
    "ObjectHypothesisWithPose": [
        ("hypothesis", "vision_msgs/ObjectHypothesis"),
        ("pose", "geometry_msgs/PoseWithCovariance"),
    ],
    "Detection2D": [
        ("header", "std_msgs/Header"),
        ("results", "sequence<vision_msgs/ObjectHypothesisWithPose>"),
        ("bbox", "vision_msgs/BoundingBox2D"),
        ("id", "string"),
    ],
    "Detection2DArray": [
        ("header", "std_msgs/Header"),
        ("detections", "sequence<vision_msgs/Detection2D>"),
    ],
    "VisionClass": [("class_id", "uint16"), ("class_name", "string")],
    "LabelInfo": [
        ("header", "std_msgs/Header"),
        ("class_map", "sequence<vision_msgs/VisionClass>"),
        ("threshold", "float"),
    ],
    "VisionInfo": [
        ("header", "std_msgs/Header"),
        ("method", "string"),
        ("database_location", "string"),
        ("database_version", "int32"),
    ],
}


def _cls(type_name: str):
    pkg, name = type_name.split("/")
    return getattr(importlib.import_module(pkg + ".msg"), name)


@pytest.mark.parametrize("name", VISION)
def test_vision_msgs_layout_matches_4x(name):
    fields = list(_cls("vision_msgs/" + name).get_fields_and_field_types().items())
    assert fields == VISION_LAYOUT[name]


def test_every_message_round_trips_between_processes(rclpy_context):
    import rclpy
    from _fill import fill
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

    peer = subprocess.Popen(
        [sys.executable, str(HERE / "_echo_peer.py"), *TYPES],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert peer.stdout.readline().strip() == "READY"
        node = rclpy.create_node("roundtrip_test", context=rclpy_context)
        executor = SingleThreadedExecutor(context=rclpy_context)
        executor.add_node(node)
        qos = QoSProfile(
            depth=10,
            reliability=QoSReliabilityPolicy.RELIABLE,
            durability=QoSDurabilityPolicy.TRANSIENT_LOCAL,
        )
        sent, got, pubs = {}, {}, []
        for i, t in enumerate(TYPES):
            cls = _cls(t)
            topic = "rt/" + t.replace("/", "_")
            sent[t] = fill(cls(), seed=i + 1)
            node.create_subscription(cls, topic + "/out", lambda m, t=t: got.setdefault(t, m), qos)
            pubs.append((node.create_publisher(cls, topic + "/in", qos), t))
        deadline = time.monotonic() + 30.0
        while len(got) < len(TYPES) and time.monotonic() < deadline:
            for pub, t in pubs:
                if t not in got and pub.get_subscription_count() > 0:
                    pub.publish(sent[t])
            executor.spin_once(timeout_sec=0.1)
        missing = sorted(set(TYPES) - set(got))
        assert not missing, "no echo for %s" % missing
        for t in TYPES:
            assert got[t] == sent[t], t
            assert got[t] != _cls(t)(), "filled message must differ from the default: " + t
        node.destroy_node()
    finally:
        peer.terminate()
        peer.wait(timeout=10)
