"""The shared exporter on a non-lane model: names, dynamic batch, manifest, errors, atomicity."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
import torch
from edge_perception.export import check_parity, export_onnx, read_manifest, write_manifest
from torch import nn


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor):
        f = self.conv(x).relu()
        return self.fc(f.mean((2, 3))), f.argmax(1)


def test_export_names_dynamic_batch_and_manifest(tmp_path):
    torch.manual_seed(0)
    model = TwoHeads().eval()
    path = str(tmp_path / "m.onnx")
    export_onnx(model, (torch.rand(1, 3, 8, 8),), path, ["images"], ["scores", "ids"])
    proto = onnx.load(path)
    assert [o.name for o in proto.graph.output] == ["scores", "ids"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert not any(f.endswith(".data") for f in os.listdir(tmp_path))  # single file
    rep = check_parity(model, path, {"images": np.random.rand(3, 3, 8, 8).astype(np.float32)})
    assert rep.ok and rep.max_abs["scores"] < 1e-5 and rep.mismatch["ids"] == 0.0
    write_manifest(path, {"task": "test", "seed": 3})
    man = read_manifest(path)
    assert man["seed"] == 3 and man["outputs"][0]["name"] == "scores"
    assert man["size_bytes"] == os.path.getsize(path)
    assert json.loads((tmp_path / "m.json").read_text())["inputs"][0]["shape"][0] == "N"


def test_static_batch_and_errors(tmp_path):
    model = TwoHeads().eval()
    path = str(tmp_path / "s.onnx")
    export_onnx(
        model, (torch.rand(2, 3, 8, 8),), path, ["images"], ["a", "b"], dynamic_batch=False
    )
    assert onnx.load(path).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    with pytest.raises(ValueError, match="input names"):
        export_onnx(model, (torch.rand(1, 3, 8, 8),), path, ["x", "y"], ["a", "b"])
    with pytest.raises(TypeError, match="tuple"):
        export_onnx(model, torch.rand(1, 3, 8, 8), path, ["x"], ["a", "b"])


def test_failed_export_leaves_no_file(tmp_path):
    class Bad(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    path = tmp_path / "bad.onnx"
    with pytest.raises(RuntimeError, match="boom"):
        export_onnx(Bad(), (torch.rand(1, 3, 4, 4),), str(path), ["x"], ["y"])
    assert list(tmp_path.iterdir()) == []
