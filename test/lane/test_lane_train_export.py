"""Training for a few steps, exact resume, evaluation, ONNX export parity and the CLI wiring."""

from __future__ import annotations

import csv
import json

import numpy as np
import onnx
import pytest
import torch
from edge_perception.cli import main as cli_main
from edge_perception.export import check_parity, ort_session
from edge_perception.lane.evaluate import evaluate_path
from edge_perception.lane.export import export_lane_model
from edge_perception.lane.model import build_model, load_checkpoint
from edge_perception.lane.train import cli as train_cli

COMMON = [
    "--variant",
    "tiny",
    "--size",
    "64",
    "96",
    "--batch-size",
    "4",
    "--quiet",
    "--warmup",
    "1",
]


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def test_train_resume_is_exact(lane_dataset, tmp_path):
    data = str(lane_dataset)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert train_cli(["--data", data, "--out", a, "--epochs", "2", *COMMON]) == 0
    # same run interrupted after epoch 1 (2 steps of batch 4 over 8 frames), then resumed
    assert (
        train_cli(["--data", data, "--out", b, "--epochs", "2", "--max-steps", "2", *COMMON]) == 0
    )
    with open(tmp_path / "b" / "log.csv") as f:
        assert len(list(csv.DictReader(f))) == 1
    assert train_cli(["--data", data, "--out", b, "--epochs", "2", "--resume", *COMMON]) == 0
    wa, wb = _weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt")
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    first = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    init = build_model("tiny").state_dict()
    assert any(not torch.equal(init[k], first["model"][k]) for k in init)  # it did learn
    with open(tmp_path / "a" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0.0 <= float(r["val_miou"]) <= 1.0 for r in rows)
    assert (tmp_path / "a" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(FileNotFoundError, match="resume"):
        train_cli(
            ["--data", data, "--out", str(tmp_path / "c"), "--epochs", "1", "--resume", *COMMON]
        )


def test_export_parity_and_eval_agree(lane_dataset, tmp_path):
    torch.manual_seed(0)
    model = build_model("tiny")
    # non-trivial BN statistics so that the export is tested with folded, non-identity BN
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 3, 64, 96))
    path = str(tmp_path / "lane.onnx")
    manifest = export_lane_model(model, path, (64, 96), {"seed": 0})
    proto = onnx.load(path)
    assert [i.name for i in proto.graph.input] == ["images"]
    assert [o.name for o in proto.graph.output] == ["logits", "mask"]
    sess = ort_session(path)
    out = sess.run(None, {"images": np.random.default_rng(0).random((3, 3, 64, 96), np.float32)})
    assert out[0].shape == (3, 4, 64, 96) and out[1].dtype == np.uint8  # dynamic batch
    assert manifest["parity"]["ok"] and manifest["parity"]["max_abs"]["logits"] < 1e-3
    side = json.loads((tmp_path / "lane.json").read_text())
    assert side["inputs"][0]["name"] == "images" and side["classes"][2] == "lane_solid"
    # a wrong model (different weights) must fail the parity check
    other = build_model("tiny").deploy()
    torch.nn.init.constant_(other.head.bias, 5.0)
    bad = check_parity(other, path, {"images": torch.rand(1, 3, 64, 96)})
    assert not bad.ok
    # the same metric through PyTorch checkpoint and ONNX Runtime
    ckpt = tmp_path / "m.pt"
    torch.save(
        {"model": model.state_dict(), "config": model.config.__dict__, "input_size": [64, 96]},
        ckpt,
    )
    r_pt = evaluate_path(str(ckpt), str(lane_dataset), progress=False)
    r_onnx = evaluate_path(path, str(lane_dataset), progress=False)
    assert r_pt["frames"] == r_onnx["frames"] == 4
    assert r_onnx["miou"] == pytest.approx(r_pt["miou"], abs=1e-3)


def test_cli_train_eval_export(lane_dataset, tmp_path):
    out = tmp_path / "run"
    assert (
        cli_main(
            [
                "lane-train",
                "--data",
                str(lane_dataset),
                "--out",
                str(out),
                "--epochs",
                "1",
                *COMMON,
            ]
        )
        == 0
    )
    onnx_path = tmp_path / "m.onnx"
    assert (
        cli_main(["lane-export", "--checkpoint", str(out / "best.pt"), "--out", str(onnx_path)])
        == 0
    )
    res = tmp_path / "eval.json"
    md = tmp_path / "eval.md"
    assert (
        cli_main(
            [
                "lane-eval",
                "--model",
                str(onnx_path),
                "--data",
                str(lane_dataset),
                "--out",
                str(res),
                "--md",
                str(md),
            ]
        )
        == 0
    )
    got = json.loads(res.read_text())
    ck = load_checkpoint(str(out / "best.pt"))[1]
    assert got["miou"] == pytest.approx(ck["metrics"]["miou"], abs=1e-3)
    assert "| m.onnx |" in md.read_text()


def test_init_from_checkpoint(lane_dataset, tmp_path):
    data = str(lane_dataset)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert train_cli(["--data", data, "--out", a, "--epochs", "1", *COMMON]) == 0
    # lr 0: the fine-tuning stage must start from exactly the given weights
    assert (
        train_cli(
            [
                "--data",
                data,
                "--out",
                b,
                "--epochs",
                "1",
                "--lr",
                "0",
                "--init",
                f"{a}/last.pt",
                *COMMON,
            ]
        )
        == 0
    )
    wa, wb = _weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt")
    convs = [k for k in wa if k.endswith("weight") and wa[k].ndim == 4]
    assert convs and all(torch.equal(wa[k], wb[k]) for k in convs)
    with pytest.raises(ValueError, match="variant"):
        train_cli(
            [
                "--data",
                data,
                "--out",
                str(tmp_path / "c"),
                "--epochs",
                "1",
                "--init",
                f"{a}/last.pt",
                *COMMON[2:],
                "--variant",
                "small",
            ]
        )
