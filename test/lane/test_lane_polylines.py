"""lane-eval --polylines on a real (tiny) carla_bridge dataset with ground-truth lane polylines."""

from __future__ import annotations

import dataclasses
import json

import torch
from carla_bridge.dataset.generate import generate_dataset
from carla_bridge.scenario import ScenarioConfig
from edge_perception.cli import main as cli_main
from edge_perception.lane.export import export_lane_model
from edge_perception.lane.model import build_model


def test_polyline_scores_of_an_exported_model(tmp_path):
    cfg = ScenarioConfig()
    cfg = dataclasses.replace(cfg, camera=dataclasses.replace(cfg.camera, width=160, height=96))
    data = tmp_path / "ds"
    generate_dataset(
        str(data), cfg, train_sequences=0, val_sequences=1, frames_per_sequence=3,
        workers=1, progress=False,
    )  # fmt: skip
    torch.manual_seed(0)
    onnx_path = str(tmp_path / "m.onnx")
    export_lane_model(build_model("tiny"), onnx_path, (96, 160))
    res = tmp_path / "eval.json"
    args = ["lane-eval", "--model", onnx_path, "--data", str(data), "--out", str(res)]
    assert cli_main(args + ["--polylines", "--row-step", "2", "--line-x-tol", "4"]) == 0
    got = json.loads(res.read_text())
    lines = got["polylines"]
    assert lines["frames"] == got["frames"] == 3
    assert lines["row_step"] == 2 and lines["x_tol_px"] == 4.0
    assert lines["tp"] + lines["fn"] > 0  # the generated frames have ground-truth lane lines
    assert lines["extract_ms"] >= 0.0 and lines["traced_on"] == "predictions"
    # traced on the ground-truth masks: the tracer's upper bound beats an untrained network
    assert cli_main(args + ["--polylines", "--lines-from-labels", "--merge-gap", "0"]) == 0
    oracle = json.loads(res.read_text())["polylines"]
    assert oracle["traced_on"] == "labels" and oracle["merge_gap"] == 0
    assert oracle["tp"] > 0 and oracle["tp"] >= lines["tp"]
