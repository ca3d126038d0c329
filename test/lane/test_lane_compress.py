"""``lane-quantize`` end to end on the tiny generated set: every variant, the table, the gate."""

from __future__ import annotations

import json

import pytest
from edge_perception.cli import main as cli_main


@pytest.fixture(scope="module")
def checkpoint(lane_dataset, tmp_path_factory):
    from edge_perception.lane.train import cli as train_cli

    out = tmp_path_factory.mktemp("cmp_run")
    args = [
        "--data",
        str(lane_dataset),
        "--out",
        str(out),
        "--variant",
        "tiny",
        "--size",
        "64",
        "96",
        "--epochs",
        "3",
        "--batch-size",
        "4",
        "--lr",
        "1e-2",
        "--warmup",
        "1",
        "--quiet",
    ]
    assert train_cli(args) == 0
    return out / "best.pt"


def _run(lane_dataset, checkpoint, tmp_path, max_drop: str):
    return cli_main(
        [
            "lane-quantize",
            "--checkpoint",
            str(checkpoint),
            "--data",
            str(lane_dataset),
            "--work-dir",
            str(tmp_path / "work"),
            "--models-dir",
            str(tmp_path / "models"),
            "--name",
            "lane_t",
            "--bench",
            str(tmp_path / "bench"),
            "--calib-images",
            "4",
            "--qat-epochs",
            "1",
            "--runs",
            "2",
            "--batch-size",
            "4",
            "--max-drop",
            max_drop,
            "--quiet",
        ]
    )


def test_lane_quantize_table_and_gate(lane_dataset, checkpoint, tmp_path):
    assert _run(lane_dataset, checkpoint, tmp_path, "1.0") == 0
    res = json.loads((tmp_path / "bench.json").read_text())
    assert set(res["rows"]) == {"fp32", "ptq", "dynamic", "qat"}
    for name, row in res["rows"].items():
        assert 0.0 <= row["miou"] <= 1.0 and row["fps"] > 0 and row["peak_rss_mb"] > 0
        assert (row["qdq_nodes"] > 0) == (name in ("ptq", "qat"))
    md = (tmp_path / "bench.md").read_text()
    assert "| ptq |" in md and "Gate" in md
    models = tmp_path / "models"
    man = json.loads((models / "lane_t.json").read_text())
    assert man["precision"] == "fp32" and man["metrics"]["val"]["miou"] == pytest.approx(
        res["rows"]["fp32"]["miou"]
    )
    assert man["train_command"].startswith("edge-perception lane-train --data")
    assert "--variant tiny" in man["train_command"]
    assert (models / "lane_t_int8.onnx").exists() == res["gate"]["passed"]
    # an impossible budget (INT8 must be 100 points *better*) keeps FP32 only
    assert _run(lane_dataset, checkpoint, tmp_path, "-100") == 0
    res2 = json.loads((tmp_path / "bench.json").read_text())
    assert not res2["gate"]["passed"]
    assert not (models / "lane_t_int8.onnx").exists() and (models / "lane_t.onnx").exists()
