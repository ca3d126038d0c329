"""bench/ort_op_profile.py: per-op kernel times from ORT's profiler, on a real two-op model."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "ort_op_profile.py"


def _load():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("ort_op_profile", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _model(path: Path) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).random((8, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 32, 32])],
        [w],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9),
        str(path),
    )


def test_profile_sums_kernel_time_per_op_type(tmp_path):
    bench = _load()
    model = tmp_path / "m.onnx"
    _model(model)
    res = bench.profile_model(str(model), threads=1, runs=5)
    assert res["input_shapes"] == {"x": [1, 3, 32, 32]}
    assert "Conv" in res["per_op_ms"] and res["per_op_ms"]["Conv"] > 0
    assert res["total_kernel_ms"] >= res["per_op_ms"]["Conv"]
    assert bench.main([str(model), "--runs", "3", "--out", str(tmp_path), "--name", "p"]) == 0
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["models"][0]["model"] == str(model)
    assert "Conv" in (tmp_path / "p.md").read_text()
