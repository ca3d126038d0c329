"""``edge-perception trt-build`` argument handling (exit 2 + a clear message on bad input)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from _trt_graphs import conv_chain
from edge_perception.cli import main
from edge_perception.tensorrt import tensorrt_available

HAVE_TRT = tensorrt_available()


@pytest.fixture
def model(tmp_path):
    return str(
        conv_chain(tmp_path / "yolact.onnx", ["/backbone/c1/Conv", "/fpn/Conv", "/proto_net/Conv"])
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--precision", "int4"], "invalid choice: 'int4'"),
        (["--shape", "images"], "expected NAME:DIMS"),
        (["--shape", "images:1x3xhx8"], "integers joined by 'x'"),
        (["--dla-core", "-1"], "DLA core must be >= 0"),
        (["--workspace-mb", "0"], "must be positive"),
        (["--calibrator", "percentile"], "invalid choice"),
        (["--opt-level", "9"], "invalid choice"),
        (["--check", "--force"], "not allowed with argument"),
    ],
)
def test_argparse_errors_exit_2(model, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(["trt-build", model] + args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--policy", "yolo"], "unknown precision policy 'yolo'"),
        (["--policy", "yolact"], "--precision int8"),
        (["--precision", "fp32", "--dla-core", "0"], "DLA needs"),
        (["--precision", "int8", "--calib-data", "/nonexistent/dir"], "is not a folder"),
        (["--explain-policy"], "--explain-policy needs --policy"),
        (["--shape", "images:1x3x16x16", "--shape", "images:1x3x16x16"], "given twice"),
    ],
)
def test_inconsistent_options_exit_2(model, capsys, args, message):
    assert main(["trt-build", model] + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("edge-perception trt-build: error: ") and message in err


def test_missing_or_non_onnx_model_exit_2(tmp_path, capsys):
    assert main(["trt-build", str(tmp_path / "nope.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    other = tmp_path / "m.pt"
    other.write_bytes(b"x")
    assert main(["trt-build", str(other)]) == 2
    assert "must be an .onnx file" in capsys.readouterr().err


def test_explain_policy_needs_no_tensorrt(model, capsys):
    assert (
        main(
            [
                "trt-build",
                model,
                "--precision",
                "int8",
                "--policy",
                "yolact",
                "--explain-policy",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["policy"] == "yolact" and out["nodes"] == 3
    assert out["precisions"] == {"int8": 2, "fp16": 1}
    assert [r["nodes"] for r in out["rules"]] == [2, 1, 0]  # int8: backbone + protonet
    assert (
        main(["trt-build", model, "--precision", "int8", "--policy", "yolact", "--explain-policy"])
        == 0
    )
    text = capsys.readouterr().out
    assert "<- matches nothing" in text and "/proto_net/Conv" in text


@pytest.mark.skipif(HAVE_TRT, reason="checks the message shown where TensorRT is absent")
def test_without_tensorrt_build_exits_1_with_the_fix(model, capsys):
    assert main(["trt-build", model, "--precision", "fp16"]) == 1
    assert "TensorRT's Python package is not importable" in capsys.readouterr().err


def test_help_lists_the_sub_command():
    out = subprocess.run(
        [sys.executable, "-m", "edge_perception.cli", "trt-build", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "--calib-data" in out.stdout and "--dla-core" in out.stdout
