"""Precision policies: presets and custom rules select ONNX nodes by name (no TensorRT needed)."""

from __future__ import annotations

import json

import pytest
from _trt_graphs import conv_chain
from edge_perception.tensorrt.policy import (
    PRESETS,
    PolicyError,
    is_qdq_model,
    load_policy,
    onnx_node_names,
    policy_from_dict,
    resolve_onnx,
    rule_matches,
    summarize,
    with_scoped_names,
)

YOLACT_NODES = [
    "/backbone/layer1/layer1.0/conv1/Conv",
    "/backbone/layer4/layer4.2/conv3/Conv",
    "/fpn/lat_layers.0/Conv",
    "/fpn/pred_layers.2/Conv",
    "/prediction_layers.0/bbox_layer/Conv",
    "/prediction_layers.0/conf_layer/Conv",
    "/proto_net/proto_net.0/Conv",
    "/proto_net/proto_net.4/Conv",
    "/semantic_seg_conv/Conv",
]


def test_yolact_preset_on_a_real_graph(tmp_path):
    """What YolactEdge ships: backbone, protonet and flow net INT8; FPN and heads FP16."""
    path = conv_chain(tmp_path / "yolact.onnx", YOLACT_NODES)
    got = resolve_onnx(PRESETS["yolact"], str(path))
    assert list(got) == YOLACT_NODES  # graph order, every node resolved
    expected = ["int8", "int8", "fp16", "fp16", "fp16", "fp16", "int8", "int8", "fp16"]
    assert [got[n] for n in YOLACT_NODES] == expected
    # the FPN has its own "pred_layers": FPN (fp16) either way
    assert got["/fpn/pred_layers.2/Conv"] == "fp16"


def test_yolact_preset_on_the_vis_graph_names():
    """The module paths of this project's VIS export (vis/export.py graphs)."""
    pol = PRESETS["yolact"]
    names = {
        "/model/det/backbone/stages.1/stages.1.0/dw/dw.0/Conv": "int8",
        "/model/protonet/top/dw/dw.0/Conv": "int8",
        "/model/flow_net/down16/down16.0/Conv": "int8",
        "/model/det/encoder/td_fuse.0/reduce/reduce.0/Conv": "fp16",
        "/model/fuse/lateral/lateral.0/Conv": "fp16",
        "/model/det/decoder/layers.0/cross_attn/GridSample": "fp16",
        "/model/query_heads/coeff/coeff.0/Gemm": "fp16",
        "/model/propagator/layer/ffn/ffn.0/MatMul": "fp16",
        "/model/propagator/GridSample_1": "fp16",
    }
    assert {n: pol.precision_for(n) for n in names} == names


def test_rtdetr_preset():
    names = {
        "/backbone/res_layers.0/blocks.0/branch2a/conv/Conv": "int8",
        "/encoder/encoder.0/layers.0/self_attn/MatMul": "int8",
        "/encoder/input_proj.0/conv/Conv": "int8",
        "/decoder/decoder/layers.0/cross_attn/MatMul": "fp16",
        "/decoder/dec_score_head.0/MatMul": "fp16",
        "/decoder/enc_bbox_head/layers.0/MatMul": "fp16",
    }
    pol = PRESETS["rtdetr"]
    assert {n: pol.precision_for(n) for n in names} == names


def test_lane_preset_all_int8_but_final_head():
    pol = PRESETS["lane"]
    assert pol.precision_for("/encoder/down1/double_conv/Conv") == "int8"
    assert pol.precision_for("/decoder/up4/conv/Conv") == "int8"
    assert pol.precision_for("/head/Conv") == "fp16"
    assert pol.precision_for("/outc/conv/Conv") == "fp16"
    assert pol.precisions() == ["fp16", "int8"] and pol.needs_int8


def test_first_matching_rule_wins_and_unused_rules_are_reported(tmp_path):
    pol = policy_from_dict(
        {
            "rules": [
                {"pattern": "^/backbone/stem/", "precision": "fp16"},
                {"pattern": "^/backbone/", "precision": "int8"},
                {"pattern": "^/nothing_here/", "precision": "fp32"},
            ]
        }
    )
    names = onnx_node_names(
        conv_chain(tmp_path / "m.onnx", ["/backbone/stem/Conv", "/backbone/l1/Conv", "/x/Conv"])
    )
    matches = {r.pattern: found for r, found in rule_matches(pol, names)}
    assert matches == {
        "^/backbone/stem/": ["/backbone/stem/Conv"],
        "^/backbone/": ["/backbone/l1/Conv"],
        "^/nothing_here/": [],
    }
    assert summarize(pol, names) == {"fp16": 1, "int8": 1, "auto": 1}


@pytest.mark.parametrize(
    "data, message",
    [
        ({"rules": [{"pattern": "x", "precision": "int4"}]}, "int4"),
        ({"rules": [{"pattern": "([", "precision": "fp16"}]}, "not a valid regex"),
        ({"rules": [], "colour": "red"}, "unknown key"),
        ({"rules": []}, "no rules and no default"),
        ({"rules": "x"}, "must be a list"),
        ({"default": "fp16", "strict": "yes"}, "'strict' must be"),
        ({"rules": [{"pattern": "x"}]}, "expected {pattern"),
    ],
)
def test_invalid_policies_are_rejected_with_a_reason(data, message):
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace("[", r"\[")):
        policy_from_dict(data)


def test_load_policy_from_yaml_json_preset_and_short_rule_form(tmp_path):
    yml = tmp_path / "mine.yaml"
    yml.write_text("default: fp16\nstrict: false\nrules:\n  - {'^/backbone/': int8}\n")
    pol = load_policy(str(yml))
    assert pol is not None and pol.name == "mine" and not pol.strict
    assert pol.precision_for("/backbone/x/Conv") == "int8"
    assert pol.precision_for("/other/Conv") == "fp16"
    js = tmp_path / "p.json"
    js.write_text(json.dumps(pol.to_dict()))
    assert load_policy(str(js)).digest() == pol.digest()
    assert load_policy("lane") is PRESETS["lane"]
    assert load_policy(None) is None
    with pytest.raises(PolicyError, match="unknown precision policy"):
        load_policy("yolo")
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(str(tmp_path / "missing.yaml"))


def test_digest_follows_the_rules():
    a = policy_from_dict({"rules": [{"pattern": "a", "precision": "int8"}]})
    b = policy_from_dict({"rules": [{"pattern": "a", "precision": "fp16"}]})
    assert a.digest() == policy_from_dict(a.to_dict()).digest()
    assert a.digest() != b.digest()


def test_qdq_models_are_detected(tmp_path):
    assert is_qdq_model(str(conv_chain(tmp_path / "q.onnx", ["/a/Conv"], qdq=True)))
    assert not is_qdq_model(str(conv_chain(tmp_path / "f.onnx", ["/a/Conv"])))


def test_dynamo_export_gets_module_scoped_names(tmp_path):
    """torch's default (dynamo) exporter names nodes node_conv2d; the module path is restored."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
            self.head = torch.nn.Conv2d(4, 2, 1)

        def forward(self, x):
            return self.head(self.backbone(x))

    path = tmp_path / "net.onnx"
    torch.onnx.export(
        Net().eval(),
        (torch.zeros(1, 3, 16, 16),),
        str(path),
        dynamo=True,
        input_names=["images"],
        output_names=["logits"],
    )
    import onnx

    raw = [n.name for n in onnx.load(str(path)).graph.node]
    names = onnx_node_names(str(path))
    assert not any("/" in n for n in raw)  # what TensorRT would see without renaming
    assert any(n.startswith("/backbone/") for n in names)
    assert any(n.startswith("/head/") for n in names)
    pol = PRESETS["lane"]
    assert {pol.precision_for(n) for n in names if n.startswith("/head/")} == {"fp16"}
    assert {pol.precision_for(n) for n in names if n.startswith("/backbone/")} == {"int8"}
    hand_made = onnx.load(str(conv_chain(tmp_path / "h.onnx", ["/a/Conv"])))
    assert with_scoped_names(hand_made) is hand_made  # nothing to rename: same object


def test_onnxruntime_qdq_defaults_are_flagged_and_symmetric_int8_passes(tmp_path):
    """Real ONNX Runtime static quantisation: its default (UINT8 asymmetric activations) is what
    TensorRT refuses; signed symmetric INT8 is what it builds."""
    import numpy as np

    quant = pytest.importorskip("onnxruntime.quantization")
    from edge_perception.tensorrt.policy import qdq_problems

    fp32 = str(conv_chain(tmp_path / "m.onnx", ["/a/Conv", "/b/Conv"]))

    class Reader(quant.CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.batches = iter(
                [{"images": rng.random((1, 3, 16, 16), dtype=np.float32)} for _ in range(4)]
            )

        def get_next(self):
            return next(self.batches, None)

    asym = str(tmp_path / "asym.onnx")
    quant.quantize_static(
        fp32,
        asym,
        Reader(),
        quant_format=quant.QuantFormat.QDQ,
        activation_type=quant.QuantType.QUInt8,
        weight_type=quant.QuantType.QInt8,
    )
    assert is_qdq_model(asym) and qdq_problems(asym)
    sym = str(tmp_path / "sym.onnx")
    quant.quantize_static(
        fp32,
        sym,
        Reader(),
        quant_format=quant.QuantFormat.QDQ,
        activation_type=quant.QuantType.QInt8,
        weight_type=quant.QuantType.QInt8,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    assert is_qdq_model(sym) and qdq_problems(sym) == []
