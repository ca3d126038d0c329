"""End to end on a tiny real data set: det-train (+ resume) -> det-export -> det-eval (ONNX)."""

from __future__ import annotations

import csv
import json

import pytest
from edge_perception.cli import main as cli


def _rows(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_train_resume_export_eval(det_dataset, tmp_path):
    out = tmp_path / "run"
    common = [
        "det-train",
        "--data",
        str(det_dataset),
        "--out",
        str(out),
        "--variant",
        "tiny",
        "--input-size",
        "64",
        "96",
        "--batch-size",
        "3",
        "--warmup-iters",
        "2",
        "--no-progress",
        "--seed",
        "3",
    ]
    assert cli(common + ["--epochs", "2"]) == 0
    for name in ("last.pt", "best.pt", "metrics.csv", "curves.png", "args.json"):
        assert (out / name).is_file(), name
    assert [r["epoch"] for r in _rows(out / "metrics.csv")] == ["0", "1"]
    # resume continues at epoch 2 (not from scratch) up to the new --epochs
    assert cli(common + ["--epochs", "3", "--resume"]) == 0
    rows = _rows(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert int(rows[2]["iteration"]) == 3 * int(rows[0]["iteration"])

    onnx_path = tmp_path / "det.onnx"
    assert cli(["det-export", "--checkpoint", str(out / "last.pt"), "--out", str(onnx_path)]) == 0
    manifest = json.loads((tmp_path / "det.json").read_text())
    assert manifest["task"] == "detection" and manifest["input_size"] == [64, 96]
    assert manifest["data_version"] == "test-0" and manifest["seed"] == 3
    assert [o["name"] for o in manifest["outputs"]] == ["boxes", "scores", "labels"]

    ev_onnx, ev_ckpt = tmp_path / "onnx.json", tmp_path / "ckpt.json"
    assert (
        cli(
            [
                "det-eval",
                "--onnx",
                str(onnx_path),
                "--data",
                str(det_dataset),
                "--json",
                str(ev_onnx),
            ]
        )
        == 0
    )
    assert (
        cli(
            [
                "det-eval",
                "--checkpoint",
                str(out / "last.pt"),
                "--data",
                str(det_dataset),
                "--json",
                str(ev_ckpt),
            ]
        )
        == 0
    )
    a, b = json.loads(ev_onnx.read_text()), json.loads(ev_ckpt.read_text())
    assert a["num_images"] == 4 and a["num_predictions"] > 0
    assert a["map"] == pytest.approx(b["map"], abs=0.01)  # ONNX and PyTorch agree


def test_bad_data_root_is_a_clear_error(tmp_path, capsys):
    code = cli(
        [
            "det-train",
            "--data",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "r"),
            "--variant",
            "tiny",
            "--epochs",
            "1",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err  # one line, no traceback
    assert "coco.json not found" in err[0] and "carla_bridge data set" in err[0]
