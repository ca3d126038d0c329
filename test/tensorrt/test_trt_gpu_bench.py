"""bench/gpu_bench.py: statistics, table layout, and the clean skip where no CUDA GPU exists."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_bench.py"


def load():
    spec = importlib.util.spec_from_file_location("gpu_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_statistics_add_fps_at_the_median():
    bench = load()
    s = bench.stats([10.0] * 98 + [20.0, 30.0], batch=2)
    assert s["p50"] == 10.0 and s["fps"] == 200.0
    assert s["p90"] == 10.0 and 10.0 < s["p99"] <= 30.0
    assert s["n"] == 100 and s["mean"] == pytest.approx(10.3)
    with pytest.raises(ValueError):
        bench.stats([], 1)


def test_markdown_table_has_one_row_per_result():
    bench = load()
    rows = [
        dict(
            model="lane:small",
            backend="pytorch",
            precision="fp16",
            batch=1,
            **bench.stats([5.0, 5.0, 6.0], 1),
        ),
        dict(model="det.onnx", backend="tensorrt", precision="int8", error="no calibration"),
    ]
    lines = bench.table(rows).splitlines()
    assert lines[0] == (
        "| model | backend | precision | batch | FPS | p50 ms | p90 ms | p99 ms | mean ms | n |"
    )
    assert lines[2] == "| lane:small | pytorch | fp16 | 1 | 200.0 | 5.0 | 5.8 | 5.98 | 5.33 | 3 |"
    assert "failed: no calibration" in lines[3] and len(lines) == 4


def test_without_a_gpu_it_skips_cleanly(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the real benchmark would run")
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--out-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and out.stdout.strip() == "no CUDA GPU: skipped"
    assert not (tmp_path / "r").exists()  # nothing written


def test_bad_size_is_a_usage_error():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--size", "big"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 2 and "--size must be HxW" in out.stderr
