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


def test_query_selection_box_head_on_selected_tokens_equals_all_tokens_then_gather():
    """The encoder box head runs on the K selected tokens only; that must equal running it on
    every token and gathering the top-K (the per-token MLP makes them the same)."""
    from edge_perception.detection.decoder import make_anchors

    m = _model()
    with torch.no_grad():
        m.decoder.enc_bbox_head.layers[-1].weight.normal_(0, 0.1)
        m.decoder.enc_bbox_head.layers[-1].bias.normal_(0, 0.1)
    m.train()
    captured = {}
    m.decoder.register_forward_pre_hook(lambda mod, args: captured.update(feats=args[0]))
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        out = m(x)
    dec, feats = m.decoder, captured["feats"]
    shapes = [(int(f.shape[2]), int(f.shape[3])) for f in feats]
    memory = torch.cat([f.flatten(2).transpose(1, 2) for f in feats], dim=1)
    with torch.no_grad():
        enc_mem = dec.enc_output(memory)
        all_boxes = dec.enc_bbox_head(enc_mem) + make_anchors(shapes, memory.device)
        topk = torch.topk(dec.enc_score_head(enc_mem).max(-1).values, dec.num_queries, 1).indices
    want = torch.gather(all_boxes, 1, topk[..., None].expand(-1, -1, 4)).sigmoid()
    assert memory.shape[1] > dec.num_queries  # the head really skipped tokens
    torch.testing.assert_close(out["enc_outputs"]["pred_boxes"], want, rtol=1e-5, atol=1e-6)
