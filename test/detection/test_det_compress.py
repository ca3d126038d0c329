"""INT8 PTQ of the detector (real ORT quantiser and sessions): mixed policy keeps decoder FP32."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from edge_perception.cli import main as cli
from edge_perception.detection.compress import mixed_exclusions, prepare_mixed_source
from edge_perception.detection.export import export_detector
from edge_perception.detection.model import build_rtdetr
from edge_perception.export import ort_session
from edge_perception.quant.ptq import ArrayCalibrationReader, quantize_static_qdq


def _quantised_scopes(path):
    """Scopes whose tensors are quantised: producers of QuantizeLinear inputs (activations) and
    consumers of DequantizeLinear nodes that read an initializer (INT8 weights)."""
    g = onnx.load(path).graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {i.name for i in g.initializer}
    scopes = set()
    for n in g.node:
        if n.op_type == "QuantizeLinear" and n.input[0] in producer:
            name = producer[n.input[0]].name
            if name.startswith("/"):
                scopes.add(name.split("/")[1])
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            for c in g.node:
                if n.output[0] in c.input and c.name.startswith("/"):
                    scopes.add(c.name.split("/")[1])
    return scopes


def test_mixed_policy_quantises_backbone_and_encoder_only(tmp_path):
    torch.manual_seed(0)
    fp32 = str(tmp_path / "fp32.onnx")
    export_detector(build_rtdetr("tiny"), fp32, (64, 64))
    # random init: many equal tensors (zero biases, unit norms) are shared across scopes
    fp32_src = str(tmp_path / "fp32_unshared.onnx")
    assert prepare_mixed_source(fp32, fp32_src) > 0
    excl = mixed_exclusions(fp32_src)
    assert excl and all(
        n.startswith(("/decoder/", "/postprocessor/")) or "/" not in n for n in excl
    )
    calib = np.random.default_rng(0).random((4, 3, 64, 64), dtype=np.float32)
    mixed, full = str(tmp_path / "mixed.onnx"), str(tmp_path / "all.onnx")
    quantize_static_qdq(
        fp32_src,
        mixed,
        ArrayCalibrationReader("images", calib),
        nodes_to_exclude=excl,
        preprocess=False,
    )
    quantize_static_qdq(fp32, full, ArrayCalibrationReader("images", calib))
    s_mixed, s_full = _quantised_scopes(mixed), _quantised_scopes(full)
    assert {"backbone", "encoder"} <= s_mixed
    assert "decoder" not in s_mixed and "postprocessor" not in s_mixed
    assert "decoder" in s_full
    x = calib[:2]
    ref = ort_session(fp32).run(["scores"], {"images": x})[0]
    got = ort_session(mixed).run(["scores"], {"images": x})[0]
    assert got.shape == ref.shape and np.isfinite(got).all()


@pytest.mark.slow  # two quantisations, three evaluations, three timing subprocesses
def test_det_quantize_cli_writes_table_and_gates(det_dataset, tmp_path):
    torch.manual_seed(0)
    fp32 = tmp_path / "models" / "det.onnx"
    export_detector(build_rtdetr("tiny"), str(fp32), (64, 96))
    report = tmp_path / "bench" / "det_compression.md"
    # an impossible budget: every INT8 model fails unless exactly as accurate as FP32
    rc = cli(
        [
            "det-quantize",
            "--onnx",
            str(fp32),
            "--data",
            str(det_dataset),
            "--calib-images",
            "4",
            "--runs",
            "2",
            "--report",
            str(report),
            "--max-drop",
            "-100",
        ]
    )
    assert rc == 0
    table = report.read_text()
    for name in ("fp32", "int8_all", "int8_mixed"):
        assert f"| {name} |" in table
    data = json.loads(report.with_suffix(".json").read_text())
    assert [r["name"] for r in data["rows"]] == ["fp32", "int8_all", "int8_mixed"]
    assert all(r["fps"] > 0 and r["size_mb"] > 0 for r in data["rows"])
    assert not (tmp_path / "models" / "det_int8.onnx").exists()  # gate failed: FP32 stays
    assert "FP32 model stays" in data["meta"]["decision"]
