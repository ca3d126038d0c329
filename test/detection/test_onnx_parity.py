"""ONNX export of the deploy graph: contract names/dtypes, parity with PyTorch in real ORT."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edge_perception.detection.export import export_detector
from edge_perception.detection.model import build_rtdetr
from edge_perception.export import ort_session


def test_contract_and_parity(tmp_path):
    torch.manual_seed(0)
    model = build_rtdetr("tiny")
    path = str(tmp_path / "det.onnx")
    info = export_detector(model, path, (64, 96))
    assert info["parity"]["ok"]
    sess = ort_session(path)
    assert [i.name for i in sess.get_inputs()] == ["images"]
    assert [o.name for o in sess.get_outputs()] == ["boxes", "scores", "labels"]
    x = np.random.default_rng(1).random((3, 3, 64, 96), dtype=np.float32)  # dynamic batch
    boxes, scores, labels = sess.run(None, {"images": x})
    k = model.cfg.num_top
    assert boxes.shape == (3, k, 4) and boxes.dtype == np.float32
    assert scores.shape == (3, k) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < model.cfg.num_classes
    assert np.all(np.diff(scores, axis=1) <= 1e-7)  # top-K sorted, no NMS
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    np.testing.assert_allclose(boxes, ref[0].numpy(), atol=1e-3)
    np.testing.assert_allclose(scores, ref[1].numpy(), atol=1e-5)
    # boxes are in input pixels: PyTorch eval output (normalised cxcywh) scaled by hand
    model.deploy(False)
    with torch.no_grad():
        out = model(torch.from_numpy(x[:1]))
    probs = out["pred_logits"].sigmoid()[0]
    q, c = divmod(int(probs.flatten().argmax()), probs.shape[1])
    cx, cy, w, h = out["pred_boxes"][0, q].tolist()
    expected = [(cx - w / 2) * 96, (cy - h / 2) * 64, (cx + w / 2) * 96, (cy + h / 2) * 64]
    np.testing.assert_allclose(boxes[0, 0], expected, atol=1e-3)
    assert labels[0, 0] == c


def test_bad_export_arguments(tmp_path):
    model = build_rtdetr("tiny")
    with pytest.raises(ValueError, match="multiples of 32"):
        export_detector(model, str(tmp_path / "x.onnx"), (60, 64))
    with pytest.raises(ValueError, match="GridSample"):
        export_detector(model, str(tmp_path / "x.onnx"), (64, 64), opset=13)
