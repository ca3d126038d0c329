"""Decoder-depth knob: fewer layers at inference change the outputs and the work done."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from edge_perception.detection.export import export_detector
from edge_perception.detection.model import build_rtdetr
from edge_perception.export import ort_session


def _model():
    torch.manual_seed(0)
    m = build_rtdetr("tiny", decoder_layers=3).eval()
    # the heads start at zero (refinement off); give them weights so layers differ
    with torch.no_grad():
        for mlp in m.decoder.bbox_heads:
            mlp.layers[-1].weight.normal_(0, 0.1)
    return m


def test_set_eval_layers_changes_outputs_and_layer_count():
    m = _model()
    calls = []
    for i, layer in enumerate(m.decoder.layers):
        layer.register_forward_hook(lambda *a, i=i: calls.append(i))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        full = m(x)
        assert calls == [0, 1, 2]
        calls.clear()
        m.set_eval_layers(1)
        short = m(x)
        assert calls == [0]
    assert not torch.allclose(full["pred_boxes"], short["pred_boxes"])
    assert m.decoder.score_heads[0] is not m.decoder.score_heads[2]
    with pytest.raises(ValueError, match="1..3"):
        m.set_eval_layers(4)
    with pytest.raises(ValueError):
        m.set_eval_layers(0)


def test_training_always_runs_every_layer():
    m = _model().train()
    m.set_eval_layers(1)
    targets = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    out = m(torch.rand(1, 3, 64, 64), targets)
    assert len(out["aux_outputs"]) == 2 and len(out["dn_outputs"]) == 3


def test_export_option_bakes_fewer_layers(tmp_path):
    full_path, short_path = str(tmp_path / "full.onnx"), str(tmp_path / "short.onnx")
    export_detector(_model(), full_path, (64, 64))
    export_detector(_model(), short_path, (64, 64), eval_layers=1)

    def scopes(p):
        return {
            n.name.split("/")[2]
            for n in onnx.load(p).graph.node
            if n.name.startswith("/decoder/layers.")
        }

    assert scopes(full_path) == {"layers.0", "layers.1", "layers.2"}
    assert scopes(short_path) == {"layers.0"}
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    a = ort_session(full_path).run(["boxes"], {"images": x})[0]
    b = ort_session(short_path).run(["boxes"], {"images": x})[0]
    assert not np.allclose(a, b)
