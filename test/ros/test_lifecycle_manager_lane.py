"""The lifecycle manager bringing up the real lane node (and a detection node that fails)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros


def _tiny_lane_onnx(path: Path) -> Path:
    """A seeded 1x1-conv segmentation net with the lane I/O contract (images -> logits, mask)."""
    import torch
    from torch import nn

    class TinyLane(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.head = nn.Conv2d(3, 4, 1)

        def forward(self, images):
            logits = self.head(images)
            return logits, logits.argmax(1).to(torch.uint8)

    torch.onnx.export(
        TinyLane().eval(),
        (torch.zeros(1, 3, 32, 64),),
        str(path),
        input_names=["images"],
        output_names=["logits", "mask"],
        opset_version=17,
        dynamo=False,
    )
    return path


def test_manager_activates_lane_node_and_reports_a_failing_detector(rclpy_context, tmp_path):
    from edge_perception.ros.detection_node import DetectionNode
    from edge_perception.ros.lane_node import LaneSegmentationNode
    from edge_perception.ros.lifecycle_manager import LifecycleManager
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rclpy.parameter import Parameter

    model = _tiny_lane_onnx(tmp_path / "lane.onnx")
    lane = LaneSegmentationNode(
        "lane_under_test",
        context=rclpy_context,
        parameter_overrides=[Parameter("model", value=str(model))],
    )
    det = DetectionNode(
        "det_without_model",
        context=rclpy_context,
        parameter_overrides=[Parameter("model", value=str(tmp_path / "missing.onnx"))],
    )
    manager = LifecycleManager(
        "lane_manager",
        context=rclpy_context,
        parameter_overrides=[
            Parameter("node_names", value=["lane_under_test", "det_without_model"]),
            Parameter("service_timeout_s", value=5.0),
        ],
    )
    executor = MultiThreadedExecutor(num_threads=3, context=rclpy_context)
    for n in (lane, det, manager):
        executor.add_node(n)

    def spin() -> None:
        try:
            executor.spin()
        except ExternalShutdownException:
            pass

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        assert manager.startup() is False
        states = manager.states()
        assert states["/lane_under_test"] == "active"
        assert states["/det_without_model"] == "failed"
        status = manager.status_array()
        failed = [s for s in status.status if s.hardware_id == "/det_without_model"][0]
        assert "configure failed" in failed.message
        assert "missing.onnx" in det._last_error
        manager.shutdown()
        assert manager.states()["/lane_under_test"] == "unconfigured"
        assert lane.pipeline is None  # cleaned up: the model was released
    finally:
        executor.shutdown(timeout_sec=2.0)
        for n in (lane, det, manager):
            n.destroy_node()
