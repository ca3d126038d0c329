"""DetectionNode over real DDS: a real rclpy peer publishes images and reads every output.

The model is a tiny seeded torch module with the RT-DETR I/O contract (``images`` -> ``boxes``,
``scores``, ``labels``), exported to ONNX here: three fixed boxes whose scores scale with the
image brightness (grey 128 -> about 0.9 / 0.6 / 0.3, black -> 0), labels car / truck / bus.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import pytest

pytestmark = pytest.mark.ros

CLASSES = ["car", "truck", "bus", "motorcycle", "bicycle", "pedestrian", "traffic_sign"]
INPUT_HW = (32, 64)


def _export_tiny_detector(path: Path, decoder_layers: int = 3) -> Path:
    import torch
    from torch import nn

    class TinyDetector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer(
                "boxes",
                torch.tensor([[2.0, 2.0, 10.0, 10.0], [4.0, 4.0, 40.0, 20.0], [1, 1, 5, 5]]),
            )
            self.register_buffer("base", torch.tensor([1.8, 1.2, 0.6]))
            self.register_buffer("labels", torch.tensor([0, 1, 2], dtype=torch.int64))

        def forward(self, images: torch.Tensor):
            n = images.shape[0]
            mean = images.mean(dim=(1, 2, 3)).unsqueeze(1)
            scores = torch.clamp(self.base.unsqueeze(0) * mean, 0.0, 1.0)
            return self.boxes.expand(n, 3, 4), scores, self.labels.expand(n, 3)

    torch.manual_seed(0)
    example = torch.zeros(1, 3, *INPUT_HW)
    torch.onnx.export(
        TinyDetector().eval(),
        (example,),
        str(path),
        input_names=["images"],
        output_names=["boxes", "scores", "labels"],
        opset_version=17,
        dynamo=False,
    )
    manifest = {"task": "detection", "class_names": CLASSES, "decoder_layers": decoder_layers}
    path.with_suffix(".json").write_text(json.dumps(manifest))
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return _export_tiny_detector(tmp_path_factory.mktemp("det") / "tiny_det.onnx")


def _wait(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


class _Rig:
    """DetectionNode + a peer node on one multi-threaded executor of a private context."""

    def __init__(self, context, model: Path, **params) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from edge_perception.ros.detection_node import DetectionNode
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.parameter import Parameter
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray
        from visualization_msgs.msg import MarkerArray

        from edge_perception_msgs.msg import FrameTiming

        overrides = {"model": str(model), "input_topic": "/cam/image", "qos": "reliable"}
        overrides.update(params)
        self.node = DetectionNode(
            "det_under_test",
            context=context,
            parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
        )
        self.peer = rclpy.create_node("det_peer", context=context)
        self.got: Dict[str, List] = {
            k: [] for k in ("dets", "overlay", "markers", "timing", "diag")
        }
        ns = "/det_under_test/"
        sub = self.peer.create_subscription
        sub(Detection2DArray, ns + "detections", self.got["dets"].append, 10)
        sub(Image, ns + "overlay", self.got["overlay"].append, 10)
        sub(MarkerArray, ns + "markers", self.got["markers"].append, 10)
        sub(FrameTiming, ns + "timing", self.got["timing"].append, 10)
        sub(DiagnosticArray, "/diagnostics", self.got["diag"].append, 10)
        self.image_pub = self.peer.create_publisher(Image, "/cam/image", 10)
        self.executor = MultiThreadedExecutor(num_threads=3, context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def send(self, value: int, stamp_s: int, hw=(48, 96)) -> None:
        from edge_perception.ros.convert import array_to_image, make_header

        rgb = np.full(hw + (3,), value, np.uint8)
        self.image_pub.publish(array_to_image(rgb, "rgb8", make_header(stamp_s * 10**9, "cam")))

    def dets_for(self, stamp_s: int):
        found = [m for m in self.got["dets"] if m.header.stamp.sec == stamp_s]
        return found[0] if found else None

    def dets_for_stamp(self, stamp):
        found = [m for m in self.got["dets"] if m.header.stamp == stamp]
        return found[0] if found else None

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self.peer.destroy_node()


def test_publishes_detections_label_info_overlay_markers(rclpy_context, tiny_model):
    import rclpy
    from edge_perception.ros.detection_node import LABEL_QOS
    from lifecycle_msgs.msg import State
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from visualization_msgs.msg import Marker

    rig = _Rig(rclpy_context, tiny_model, score_threshold=0.5)
    try:
        assert rig.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert rig.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert rig.node._state_machine.current_state[0] == State.PRIMARY_STATE_ACTIVE
        # LabelInfo reaches a subscriber that joins after it was sent (transient local).
        from vision_msgs.msg import LabelInfo

        labels: List[LabelInfo] = []
        late = rclpy.create_node("late_listener", context=rclpy_context)
        late.create_subscription(LabelInfo, "/det_under_test/label_info", labels.append, LABEL_QOS)
        rig.executor.add_node(late)
        assert _wait(lambda: labels), "no LabelInfo for a late subscriber"
        class_map = {c.class_id: c.class_name for c in labels[0].class_map}
        assert class_map == dict(enumerate(CLASSES))
        assert labels[0].threshold == pytest.approx(0.5)
        # Wait for discovery of the image subscription, then send a grey frame.
        assert _wait(lambda: rig.image_pub.get_subscription_count() > 0)
        assert _wait(lambda: rig.node._pubs["overlay"].get_subscription_count() > 0)
        rig.send(128, stamp_s=1)
        assert _wait(lambda: rig.dets_for(1) is not None), rig.node.diagnostic_values()
        msg = rig.dets_for(1)
        assert msg.header.frame_id == "cam"
        assert [d.results[0].hypothesis.class_id for d in msg.detections] == ["0", "1"]
        assert all(d.header.stamp.sec == 1 for d in msg.detections)
        scores = [d.results[0].hypothesis.score for d in msg.detections]
        assert scores[0] == pytest.approx(0.9, abs=0.01) and scores[1] == pytest.approx(
            0.6, abs=0.01
        )
        # Boxes are scaled from the 32x64 input to the 48x96 camera image (x1.5).
        b = msg.detections[0].bbox
        assert (b.center.position.x, b.center.position.y, b.size_x) == pytest.approx((9, 9, 12))
        assert _wait(lambda: any(m.header.stamp.sec == 1 for m in rig.got["timing"]))
        assert _wait(lambda: rig.got["overlay"] and rig.got["markers"])
        ov = rig.got["overlay"][-1]
        assert (ov.height, ov.width, ov.encoding, ov.header.frame_id) == (48, 96, "bgr8", "cam")
        markers = rig.got["markers"][-1].markers
        assert markers[0].action == Marker.DELETEALL and len(markers) == 1 + 2 * 2
        # A black frame gives an empty array, still published with its header.
        rig.send(0, stamp_s=2)
        assert _wait(lambda: rig.dets_for(2) is not None)
        assert rig.dets_for(2).detections == [] and rig.dets_for(2).header.frame_id == "cam"
        # Live class filter; bad values are rejected with a reason.
        res = rig.node.set_parameters([Parameter("classes", value=["truck"])])[0]
        assert res.successful, res.reason
        rig.send(128, stamp_s=3)
        assert _wait(lambda: rig.dets_for(3) is not None)
        assert [d.results[0].hypothesis.class_id for d in rig.dets_for(3).detections] == ["1"]
        for name, value, why in (
            ("classes", ["unicorn"], "unicorn"),
            ("score_threshold", 1.5, "score_threshold"),
            ("max_detections", 0, "max_detections"),
            ("decoder_layers", -1, "decoder_layers"),
        ):
            res = rig.node.set_parameters([Parameter(name, value=value)])[0]
            assert not res.successful and why in res.reason, (name, res.reason)
        assert _wait(
            lambda: any(
                s.name.startswith("det_under_test") and any(kv.key == "fps" for kv in s.values)
                for a in rig.got["diag"]
                for s in a.status
            )
        )
    finally:
        rig.close()


def test_decoder_layers_selects_an_export_or_fails_with_reason(
    rclpy_context, tiny_model, tmp_path
):
    from rclpy.lifecycle import TransitionCallbackReturn

    model = tmp_path / "det.onnx"
    shutil.copy(tiny_model, model)
    shutil.copy(tiny_model.with_suffix(".json"), model.with_suffix(".json"))
    rig = _Rig(rclpy_context, model, decoder_layers=2)
    try:
        assert rig.node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert (
            "det.dec2.onnx" in rig.node._last_error and "--eval-layers 2" in rig.node._last_error
        )
        _export_tiny_detector(tmp_path / "det.dec2.onnx", decoder_layers=2)
        assert rig.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert rig.node.model_path.endswith("det.dec2.onnx")
        assert rig.node.diagnostic_values()["decoder_layers"] == "2"
    finally:
        rig.close()


def test_missing_model_fails_configure_with_reason(rclpy_context, tmp_path):
    from rclpy.lifecycle import TransitionCallbackReturn

    rig = _Rig(rclpy_context, tmp_path / "nope.onnx")
    try:
        assert rig.node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "nope.onnx" in rig.node._last_error
    finally:
        rig.close()


def _export_blob_detector(path: Path) -> Path:
    """Two outputs: a box around the red and one around the green light (intensity-weighted
    centroid +- 6 px), scores 0.9 x light mass / a 12x12 square; labels car and pedestrian."""
    import torch
    from torch import nn

    class BlobDetector(nn.Module):
        def forward(self, images: torch.Tensor):
            h, w = images.shape[2:]
            ys = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
            xs = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
            light = images[:, :2]  # red, green
            mass = light.sum(dim=(2, 3))
            cx = (light * xs).sum(dim=(2, 3)) / (mass + 1e-6)
            cy = (light * ys).sum(dim=(2, 3)) / (mass + 1e-6)
            boxes = torch.stack([cx - 6, cy - 6, cx + 6, cy + 6], dim=-1)
            scores = torch.clamp(0.9 * mass / 144.0, 0.0, 1.0)
            labels = torch.tensor([[0, 5]], dtype=torch.int64).expand(images.shape[0], 2)
            return boxes, scores, labels

    torch.onnx.export(
        BlobDetector().eval(),
        (torch.zeros(1, 3, 48, 96),),
        str(path),
        input_names=["images"],
        output_names=["boxes", "scores", "labels"],
        opset_version=17,
        dynamo=False,
    )
    path.with_suffix(".json").write_text(json.dumps({"task": "detection", "class_names": CLASSES}))
    return path


def test_track_ids_stable_across_a_replayed_sequence(rclpy_context, tmp_path):
    """A red car moving right and a green pedestrian moving left: Detection2D.id keeps each
    object's track id through frames, a dimmed (low-score) frame and a missed frame."""
    from edge_perception.ros.convert import array_to_image, make_header
    from rclpy.lifecycle import TransitionCallbackReturn

    model = _export_blob_detector(tmp_path / "blob.onnx")
    rig = _Rig(rclpy_context, model, score_threshold=0.5, input_size=[48, 96])
    try:
        assert rig.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert rig.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert _wait(lambda: rig.image_pub.get_subscription_count() > 0)
        assert _wait(lambda: rig.node._pubs["markers"].get_subscription_count() > 0)
        seen = []
        for t in range(8):
            rgb = np.zeros((48, 96, 3), np.uint8)
            rgb[10:22, 10 + 6 * t : 22 + 6 * t, 0] = 255
            green = {4: 40, 5: 0}.get(t, 255)  # t=4: score ~0.14 (low), t=5: missed
            rgb[26:38, 74 - 6 * t : 86 - 6 * t, 1] = green
            header = make_header((t + 1) * 10**8, "cam")
            rig.image_pub.publish(array_to_image(rgb, "rgb8", header))
            assert _wait(lambda: rig.dets_for_stamp(header.stamp) is not None)  # noqa: B023
            msg = rig.dets_for_stamp(header.stamp)
            seen.append({d.results[0].hypothesis.class_id: d.id for d in msg.detections})
        car, ped = seen[0]["0"], seen[0]["5"]
        assert car and ped and car != ped
        assert [s.get("0") for s in seen] == [car] * 8, seen
        assert [s.get("5") for s in seen] == [ped] * 5 + [None] + [ped] * 2, seen
        # Markers are coloured by track and labelled with the track id.
        from edge_perception.runtime.tracking import track_colour

        assert _wait(lambda: any(m.markers[0].header.stamp == header.stamp
                                 for m in rig.got["markers"]))  # fmt: skip
        last = [m for m in rig.got["markers"] if m.markers[0].header.stamp == header.stamp][0]
        texts = {m.text.split()[1]: m for m in last.markers if m.ns == "labels"}
        assert set(texts) == {"#" + car, "#" + ped}
        r, g, b = track_colour(int(car))
        c = texts["#" + car].color
        assert (c.r, c.g, c.b) == pytest.approx((r / 255, g / 255, b / 255))
    finally:
        rig.close()
