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


def _det_dataset(root: Path) -> Path:
    """The detection tests' tiny on-disk data set (``test/detection/conftest.py``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "det_conftest_data", Path(__file__).resolve().parents[1] / "detection" / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_dataset(root, n_train=3, n_val=2)


def _torch_truncated(p: Path) -> None:
    import torch

    torch.save({"config": {}, "model": {"w": torch.zeros(4096)}}, p)
    p.write_bytes(p.read_bytes()[:3000])


def _torch_not_det(p: Path) -> None:
    import torch

    torch.save({"state_dict": {"w": torch.zeros(3)}}, p)  # e.g. another tool's checkpoint


BAD_PT = [
    (_directory, "is a directory"),
    (_junk, "cannot be loaded by torch"),
    (_torch_truncated, "cannot be loaded by torch"),
    (_torch_not_det, "is not a det-train checkpoint (no 'config' entry)"),
    (_empty, "is empty"),
]
BAD_PT_IDS = ["directory", "junk", "truncated", "not-det-train", "empty"]


@pytest.mark.parametrize("make, needle", BAD_PT, ids=BAD_PT_IDS)
@pytest.mark.parametrize("command", ["det-export", "det-eval"])
def test_det_bad_checkpoint(command, make, needle, tmp_path, capsys):
    pt = tmp_path / "last.pt"
    make(pt)
    if command == "det-export":
        args = [command, "--checkpoint", str(pt), "--out", str(tmp_path / "d.onnx")]
    else:  # the checkpoint is read before the data set
        args = [command, "--checkpoint", str(pt), "--data", str(tmp_path / "no_data")]
    _err(capsys, edge_perception(args), str(pt), needle)
    assert not (tmp_path / "d.onnx").exists()


@pytest.mark.parametrize(
    "make, needle",
    [(m, n.split(" (no")[0]) for m, n in BAD_PT[1:]]
    + [(lambda p: None, "det-train checkpoint not found (--resume)")],
    ids=BAD_PT_IDS[1:] + ["missing"],
)
def test_det_train_resume_bad_checkpoint(make, needle, tmp_path, capsys):
    data = _det_dataset(tmp_path / "data")
    out = tmp_path / "run"
    out.mkdir()
    make(out / "last.pt")
    args = ["det-train", "--data", str(data), "--out", str(out), "--variant", "tiny",
            "--input-size", "64", "96", "--batch-size", "3", "--epochs", "1", "--no-progress",
            "--resume"]  # fmt: skip
    code = edge_perception(args)
    text = capsys.readouterr().err
    lines = [ln for ln in text.replace("\r", "\n").splitlines() if "error:" in ln]
    assert code == 2 and "Traceback" not in text and len(lines) == 1, text
    assert str(out / "last.pt") in lines[0] and needle in lines[0], text
