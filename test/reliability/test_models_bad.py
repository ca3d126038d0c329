"""Corrupt and wrong model files (issue 12, finding 9): one line naming the file, exit 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from edge_perception.backends.base import BackendError
from edge_perception.backends.factory import create_backend
from edge_perception.cli import main as edge_perception

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def lane_ds(tmp_path_factory) -> Path:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lane"))
    from lane_synth import write_dataset

    return write_dataset(tmp_path_factory.mktemp("lane"), frames=(2, 2))


def _err(capsys, code: int, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def _directory(p: Path) -> None:
    p.mkdir()


def _junk(p: Path) -> None:
    p.write_bytes(b"\x08\x07garbage" * 50)


def _truncated(p: Path) -> None:
    p.write_bytes((MODELS / "lane_small.onnx").read_bytes()[:5000])


def _detector(p: Path) -> None:
    shutil.copy(MODELS / "det_small.onnx", p)


def _empty(p: Path) -> None:
    p.write_bytes(b"")


@pytest.mark.parametrize(
    "make, needle",
    [
        (_directory, "is a directory"),
        (_junk, "cannot be loaded by ONNX"),
        (_truncated, "cannot be loaded by ONNX"),
        (_detector, "is not a lane model"),
        (_empty, "is empty"),
    ],
    ids=["directory", "junk", "truncated", "detector", "empty"],
)
def test_lane_eval_bad_onnx_model(make, needle, lane_ds, tmp_path, capsys):
    model = tmp_path / "m.onnx"
    make(model)
    code = edge_perception(["lane-eval", "--model", str(model), "--data", str(lane_ds)])
    _err(capsys, code, str(model), needle)


def test_lane_eval_bad_checkpoint(lane_ds, tmp_path, capsys):
    pt = tmp_path / "m.pt"
    pt.write_bytes(b"PK\x03\x04not a zip")
    code = edge_perception(["lane-eval", "--model", str(pt), "--data", str(lane_ds)])
    _err(capsys, code, str(pt), "cannot be loaded by torch")
    d = tmp_path / "ckpt_dir.pt"
    d.mkdir()
    code = edge_perception(["lane-eval", "--model", str(d), "--data", str(lane_ds)])
    _err(capsys, code, str(d), "is a directory")


def test_backend_directory_model_says_so(tmp_path):
    with pytest.raises(BackendError, match="is a directory"):
        create_backend("onnxruntime", str(tmp_path))
