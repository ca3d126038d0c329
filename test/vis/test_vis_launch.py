"""vis_node in the deployments: started when its model exists, else skipped with one line that
says why and how to get the model (launch configs, runner, demo topics)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from edge_perception.ros.launch_common import LaunchConfigError, resolve

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("config", ["cpu.yaml", "xavier.yaml"])
def test_vis_node_runs_only_with_its_model(config, tmp_path):
    path = str(REPO / "config" / config)
    missing = resolve(path, {"vis_model": str(tmp_path / "none_key.onnx")})
    vis = next(n for n in missing.nodes if n.name == "vis_node")
    assert not vis.enabled and "vis_node" not in missing.managed_names
    assert missing.skipped_nodes == [vis]
    assert "none_key.onnx not found" in vis.skipped and "vis-export" in vis.skipped
    model = tmp_path / "vis_key.onnx"
    model.write_bytes(b"")
    present = resolve(path, {"vis_model": str(model)})
    vis = next(n for n in present.nodes if n.name == "vis_node")
    assert vis.enabled and not vis.skipped and "vis_node" in present.managed_names
    assert vis.parameters["model"] == str(model)
    off = resolve(path, {"vis_model": str(model), "enable_vis_node": "false"})
    assert not off.skipped_nodes and "vis_node" not in off.managed_names


def test_requires_layout_is_checked(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "cpu.yaml").read_text())
    vis = next(n for n in cfg["launch"]["nodes"] if n["name"] == "vis_node")
    vis["requires"] = ["models/x.onnx"]
    bad = tmp_path / "config" / "bad.yaml"
    bad.parent.mkdir()
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(LaunchConfigError, match="requires"):
        resolve(str(bad))


def test_runner_says_why_vis_node_is_not_started(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "edge_perception.ros.runner", "cpu.yaml", "--print"]
        + ["vis_model:=%s" % (tmp_path / "no_key.onnx")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if "vis_node" in ln]
    assert len(lines) == 1 and "not started" in lines[0] and "vis-train" in lines[0]
    assert "vis_node:" not in res.stdout  # no command for it


def test_demo_expects_no_topics_of_a_node_it_does_not_start(tmp_path):
    from edge_perception.demo import rviz_topics, started_topics

    plan = resolve(str(REPO / "config" / "cpu.yaml"), {"vis_model": str(tmp_path / "n_key.onnx")})
    assert "/vis_node/overlay" in rviz_topics()
    topics = started_topics(plan)
    assert "/vis_node/overlay" not in topics and "/detection_node/overlay" in topics
