"""Evaluator node over real DDS on a tiny hand-made GT / prediction stream with known metrics."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy", reason="rclpy is not importable: source env.sh")

H, W = 24, 32
STAMPS = [2_000_000_000 + k * 100_000_000 for k in range(3)]


def _spin_until(ex, cond, timeout=10.0) -> bool:
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        ex.spin_once(timeout_sec=0.05)
    return cond()


def _lane_mask(k: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[H // 2 :] = 1
    m[H // 2 :, 6 + k : 8 + k] = 2
    return m


def _obj_mask() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[4:14, 10:20] = True
    return m


def test_evaluator_node_scores_identical_and_shifted_predictions(rclpy_context, tmp_path):
    from carla_bridge.classes import LANE_CLASSES, OBJECT_CLASSES
    from carla_bridge.ros.evaluator import EvaluatorNode
    from edge_perception.ros import convert
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Empty
    from vision_msgs.msg import Detection2DArray

    from edge_perception_msgs.msg import FrameTiming, InstanceArray, LaneSegmentation

    out = tmp_path / "report"
    topics = {
        "lane_mask_topic": "/perception/lane/class_mask",
        "lanes_topic": "/perception/lanes",
        "detections_topic": "/perception/detections",
        "instances_topic": "/perception/instances",
    }
    ev = EvaluatorNode(context=rclpy_context, parameter_overrides=[
        Parameter("output_dir", value=str(out)),
        Parameter("timing_topics", value=["/perception/timing"]),
        *[Parameter(k, value=v) for k, v in topics.items()],
    ])  # fmt: skip
    src = rclpy.create_node("fake_stream", context=rclpy_context)
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {
        "gt_lanes": src.create_publisher(LaneSegmentation, "/ground_truth/lanes", qos),
        "gt_det": src.create_publisher(Detection2DArray, "/ground_truth/detections", qos),
        "gt_inst": src.create_publisher(InstanceArray, "/ground_truth/instances", qos),
        "lanes": src.create_publisher(LaneSegmentation, "/perception/lanes", qos),
        "mask": src.create_publisher(Image, "/perception/lane/class_mask", qos),
        "det": src.create_publisher(Detection2DArray, "/perception/detections", qos),
        "inst": src.create_publisher(InstanceArray, "/perception/instances", qos),
        "timing": src.create_publisher(FrameTiming, "/perception/timing", qos),
        "report": src.create_publisher(Empty, "/evaluator/write_report", 1),
    }
    from diagnostic_msgs.msg import DiagnosticArray

    progress: list = []
    src.create_subscription(DiagnosticArray, "/evaluator/progress", progress.append, 10)
    ex = SingleThreadedExecutor(context=rclpy_context)
    ex.add_node(ev)
    ex.add_node(src)
    try:
        assert _spin_until(ex, lambda: all(p.get_subscription_count() for p in pubs.values()))
        gt_box = np.array([[0.0, 0.0, 10.0, 10.0]])
        shifted = gt_box + [2.0, 0.0, 2.0, 0.0]  # IoU 80 / 120 = 0.667
        for k, stamp in enumerate(STAMPS):
            hdr = convert.make_header(stamp, "camera")
            pubs["gt_lanes"].publish(convert.lane_to_msg(hdr, _lane_mask(k), LANE_CLASSES))
            pubs["gt_det"].publish(convert.detections_to_msg(hdr, gt_box, [1.0], [0],
                                                             OBJECT_CLASSES))  # fmt: skip
            inst = convert.instances_to_msg(hdr, (H, W), [_obj_mask()], [1.0], [5])
            pubs["gt_inst"].publish(inst)
            # predictions: lanes with another class order (remapped by name), the mask on its
            # own topic for the first frame, a shifted box, identical instance masks
            names = ["background", "solid", "dashed", "drivable"]
            remapped = np.array([0, 3, 1, 2], np.uint8)[_lane_mask(k)]
            if k == 0:
                pubs["mask"].publish(convert.array_to_image(_lane_mask(k), "mono8", hdr))
            else:
                pubs["lanes"].publish(convert.lane_to_msg(hdr, remapped, names))
            if k == 1:  # the same mask again on the other topic: ignored, counted
                pubs["mask"].publish(convert.array_to_image(_lane_mask(k), "mono8", hdr))
            pubs["det"].publish(convert.detections_to_msg(hdr, shifted, [0.9], [0],
                                                          OBJECT_CLASSES))  # fmt: skip
            pubs["inst"].publish(inst)
            pubs["timing"].publish(convert.timing_msg(hdr, "det_node", "onnxruntime", 1, 5, 1, 9))
        done = ev.evaluator._pairs
        assert _spin_until(ex, lambda: done["lane"].paired == 3 and done["detection"].paired == 3
                           and done["instance"].paired == 3)  # fmt: skip
        s = ev.evaluator.summary()
        assert s["pairing"]["lane"]["prediction_without_gt"] == 0

        def counts() -> dict:
            return {kv.key: kv.value for kv in progress[-1].status[0].values} if progress else {}

        want = {"paired_lane": "3", "paired_detection": "3", "paired_instance": "3"}
        assert _spin_until(ex, lambda: want.items() <= counts().items(), timeout=5.0), counts()
        assert _spin_until(ex, lambda: done["lane"].duplicates == 1, timeout=3.0)
        assert s["lane"]["miou"] == pytest.approx(1.0)
        assert s["detection"]["map"] == pytest.approx(0.4, abs=1e-6)
        assert s["detection"]["map50"] == pytest.approx(1.0)
        assert s["instance"]["map"] == pytest.approx(1.0)
        assert s["timing"]["det_node"]["end_to_end_ms"]["mean"] == pytest.approx(9.0)
        assert s["latency_ms"]["detections"]["n"] == 3
        pubs["report"].publish(Empty())
        assert _spin_until(ex, lambda: (out / "evaluation.json").is_file())
        report = json.loads((out / "evaluation.json").read_text())
        assert report["detection"]["map"] == pytest.approx(0.4, abs=1e-6)
        assert "| det_node | end_to_end_ms |" in (out / "evaluation.md").read_text()
    finally:
        ev.destroy_node()
        src.destroy_node()


def test_evaluator_process_writes_its_report_on_sigint(rclpy_context, tmp_path):
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "carla_bridge.ros.evaluator", "--ros-args",
         "-p", "output_dir:=%s" % tmp_path, "-p", "stem:=final"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    probe = rclpy.create_node("probe", context=rclpy_context)
    try:
        from rclpy.executors import SingleThreadedExecutor

        ex = SingleThreadedExecutor(context=rclpy_context)
        ex.add_node(probe)
        assert _spin_until(ex, lambda: "evaluator" in probe.get_node_names(), timeout=15.0)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
        probe.destroy_node()
    report = json.loads((tmp_path / "final.json").read_text())
    assert report["images_seen"] == 0 and report["lane"] is None
    assert (tmp_path / "final.md").is_file() and "evaluation report" in out
