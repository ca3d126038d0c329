"""Preprocessing, transforms and the lane / detection pipelines on tiny exported models."""

from __future__ import annotations

import numpy as np
import pytest
from edge_perception.backends import BackendError, create_backend
from edge_perception.runtime.detection import DetectionPipeline
from edge_perception.runtime.lane import LanePipeline
from edge_perception.runtime.preprocess import Preprocessor, make_transform
from edge_perception.runtime.tracking import TrackerConfig
from tiny_models import TinyLaneUNet, detector_onnx, lane_onnx, pattern_lane_onnx


def _frame(h=48, w=80, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_preprocessor_reuses_buffer_and_scales():
    pre = Preprocessor((32, 64), "stretch")
    a, t = pre(_frame())
    b, _ = pre(_frame(seed=1))
    assert a is b and a.shape == (1, 3, 32, 64) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    same, _ = pre(np.full((32, 64, 3), 255, np.uint8))
    assert np.allclose(same, 1.0)
    assert (t.scale_x, t.scale_y) == (64 / 80, 32 / 48)
    with pytest.raises(ValueError, match="RGB uint8"):
        pre(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="resize mode"):
        Preprocessor((32, 64), "crop")


def test_preprocessor_interpolation_area_or_linear():
    import cv2

    frame = _frame(48, 80, seed=3)
    area, _ = Preprocessor((30, 50), "stretch", interpolation="area")(frame)
    linear, _ = Preprocessor((30, 50), "stretch", interpolation="linear")(frame)
    for buf, flag in ((area, cv2.INTER_AREA), (linear, cv2.INTER_LINEAR)):
        want = cv2.resize(frame, (50, 30), interpolation=flag).transpose(2, 0, 1) / 255.0
        np.testing.assert_allclose(buf[0], want, atol=1e-6)
    assert not np.allclose(area, linear)  # the two really differ on a noise frame
    with pytest.raises(ValueError, match="interpolation 'cubic'"):
        Preprocessor((30, 50), interpolation="cubic")


def test_letterbox_pads_and_maps_back():
    pre = Preprocessor((64, 64), "letterbox")
    img = np.full((32, 64, 3), 200, np.uint8)
    buf, t = pre(img)
    assert (t.pad_x, t.pad_y, t.scale_x) == (0, 16, 1.0)
    assert np.allclose(buf[0, :, :16], 114 / 255) and np.allclose(buf[0, :, 16:48], 200 / 255)
    boxes = t.boxes_to_source(np.array([[0, 16, 64, 48], [-5, 0, 10, 70]]))
    np.testing.assert_allclose(boxes, [[0, 0, 64, 32], [0, 0, 10, 32]])
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 10:20] = 3
    back = t.mask_to_source(mask)
    assert back.shape == (32, 64) and (back[:, 10:20] == 3).all() and back.sum() == 3 * 320


def test_stretch_transform_round_trip():
    t = make_transform((480, 640), (240, 320), "stretch")
    np.testing.assert_allclose(t.boxes_to_source([[10, 20, 30, 40]]), [[20, 40, 60, 80]])
    m = np.zeros((240, 320), np.uint8)
    m[100:, :] = 1
    back = t.mask_to_source(m)
    assert back.shape == (480, 640) and back[199].sum() == 0 and back[201].all()
    with pytest.raises(ValueError, match="input size"):
        t.mask_to_source(np.zeros((10, 10), np.uint8))


def test_lane_pipeline_output_shapes_and_values(tmp_path):
    path = lane_onnx(str(tmp_path / "lane.onnx"))
    pipe = LanePipeline(create_backend("onnxruntime", path, intra_op_threads=1))
    assert pipe.input_hw == (32, 64)
    out = pipe.process(_frame(64, 128))
    res = out.result
    assert res.class_mask.shape == (64, 128) and res.class_mask.dtype == np.uint8
    assert res.class_mask.max() < 4 and res.class_names[0] == "background"
    assert out.keyframe and out.times.inference_ms > 0 and out.times.total_ms >= 0
    # the camera-size mask is the model's mask resized (nearest) from the input size
    import torch

    feeds, t = pipe.preprocess(_frame(64, 128))
    ref = TinyLaneUNet()(torch.from_numpy(feeds["images"].copy()))[1].numpy()[0]
    assert (t.mask_to_source(ref) == res.class_mask).mean() > 0.99
    assert isinstance(res.lines, list)
    assert pipe.describe()["input_size"] == "32x64"


def test_lane_pipeline_dynamic_input_needs_size(tmp_path):
    path = lane_onnx(str(tmp_path / "dyn.onnx"), dynamic_hw=True)
    b = create_backend("onnxruntime", path)
    with pytest.raises(ValueError, match="dynamic input size"):
        LanePipeline(b)
    pipe = LanePipeline(b, input_size=(64, 96))
    assert pipe.process(_frame()).result.class_mask.shape == (48, 80)
    static = create_backend("onnxruntime", lane_onnx(str(tmp_path / "s.onnx")))
    with pytest.raises(ValueError, match="conflicts"):
        LanePipeline(static, input_size=(64, 96))
    with pytest.raises(ValueError, match="predicts 4 classes but class_names has 3"):
        LanePipeline(static, class_names=["a", "b", "c"])


def test_lane_pipeline_rejects_detector(tmp_path):
    b = create_backend("onnxruntime", detector_onnx(str(tmp_path / "det.onnx")))
    with pytest.raises(BackendError, match="'mask' or 'logits'"):
        LanePipeline(b)


def test_detection_pipeline_threshold_filter_topk_rescale(tmp_path):
    b = create_backend("onnxruntime", detector_onnx(str(tmp_path / "det.onnx"), (32, 64)))
    pipe = DetectionPipeline(b, score_threshold=0.5)
    det = pipe.process(_frame(64, 128)).result  # camera is 2x the input
    np.testing.assert_allclose(det.scores, [0.9, 0.8, 0.7, 0.6], rtol=1e-6)
    # No tracker: Detection2D.id stays empty (a rank would read as an identity across frames).
    assert det.labels.tolist() == [0, 1, 5, 0] and det.ids == ["", "", "", ""]
    assert det.track_ids is None
    np.testing.assert_allclose(det.boxes_xyxy[0], [0, 0, 64, 32])
    np.testing.assert_allclose(det.boxes_xyxy[1], [32, 16, 128, 64])
    pipe = DetectionPipeline(b, score_threshold=0.1, max_detections=2, classes=["car"])
    det = pipe.process(_frame(32, 64)).result
    assert det.labels.tolist() == [0, 0] and np.allclose(det.scores, [0.9, 0.6])
    with pytest.raises(ValueError, match="unknown"):
        DetectionPipeline(b, classes=["tram"])
    with pytest.raises(BackendError, match="boxes/scores/labels"):
        DetectionPipeline(create_backend("onnxruntime", lane_onnx(str(tmp_path / "l.onnx"))))


def test_lane_pipeline_extracts_lines_in_camera_pixels(tmp_path):
    pytest.importorskip("edge_perception.lane.postprocess")
    b = create_backend("onnxruntime", pattern_lane_onnx(str(tmp_path / "pattern.onnx")))
    pipe = LanePipeline(b)
    assert pipe.lines_available
    res = pipe.process(_frame(128, 256)).result  # camera = 4x wide, 2x tall
    assert res.class_mask.shape == (128, 256)
    assert len(res.lines) == 2
    left, right = res.lines
    assert left.type == "solid" and right.type == "dashed"
    assert np.all(np.abs(left.points[:, 0] - 16 * 4) < 8)
    assert np.all(np.abs(right.points[:, 0] - 48 * 4) < 8)
    assert left.points[0, 1] > left.points[-1, 1]  # bottom (near) first
    assert left.points[:, 1].max() <= 128
    off = LanePipeline(b, extract_lines=False).process(_frame(128, 256)).result
    assert off.lines == []


def test_detection_pipeline_tracking_gives_stable_ids_and_keeps_low_score_continuations(tmp_path):
    b = create_backend("onnxruntime", detector_onnx(str(tmp_path / "det.onnx"), (32, 64)))
    cfg = TrackerConfig(low_threshold=0.1, high_threshold=0.5, new_track_threshold=0.55)
    pipe = DetectionPipeline(b, score_threshold=0.5, tracker=cfg)
    first = pipe.process(_frame(32, 64)).result
    assert first.ids == ["1", "2", "3", "4"] and first.track_ids.tolist() == [1, 2, 3, 4]
    for _ in range(3):
        again = pipe.process(_frame(32, 64)).result
        assert again.ids == first.ids
        np.testing.assert_allclose(again.boxes_xyxy, first.boxes_xyxy)
    # Raising the threshold turns the 0.6 / 0.7 boxes into low-score detections: they still
    # continue their tracks; the 0.3 / 0.2 ones never started one.
    pipe.score_threshold = 0.75
    kept = pipe.process(_frame(32, 64)).result
    assert kept.ids == ["1", "2", "3", "4"] and pipe.tracker.config.high_threshold == 0.75
    pipe.reset()
    pipe.score_threshold = 0.8  # births now need 0.85
    # ids restart after reset; the 0.8 box passes the threshold but cannot start a track: it is
    # still published (tracking adds ids, it does not withhold detections), with no id ...
    res = pipe.process(_frame(32, 64)).result
    assert res.ids == ["1", ""] and res.track_ids.tolist() == [1, -1]
    np.testing.assert_allclose(res.scores, [0.9, 0.8], rtol=1e-6)
    # ... unless only confirmed tracks are wanted
    pipe.publish_unconfirmed = False
    assert pipe.process(_frame(32, 64)).result.ids == ["1"]
