"""``edge-perception run`` with a bad parameter: the manager's bring-up fails, it exits 1, and the
runner prints the failing child's last error line and the node's own (parameter, value, range)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from edge_perception.ros.runner import error_line

REPO = Path(__file__).resolve().parents[2]


def test_error_line_picks_log_errors_and_exceptions():
    assert error_line("[ERROR] [1796477430.29] [lane_node]: configure failed: x\n") == (
        "[ERROR] [lane_node]: configure failed: x"
    )
    assert error_line("[FATAL] [1.0] [n]: boom") == "[FATAL] [n]: boom"
    assert error_line("ModuleNotFoundError: No module named 'nope'") == (
        "ModuleNotFoundError: No module named 'nope'"
    )
    assert error_line("rclpy._rclpy_pybind11.RCLError: failed to init") != ""
    for quiet in ("[INFO] [1.0] [n]: active", "[WARN] [1.0] [n]: slow", "KeyboardInterrupt", ""):
        assert error_line(quiet) == ""


@pytest.mark.ros
def test_runner_prints_the_bad_parameter_and_exits_nonzero(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "edge_perception.ros.runner", str(REPO / "config" / "cpu.yaml")]
        + ["threads:=-1", "enable_scenario_publisher:=false", "enable_detection_node:=false"]
        + ["--grace", "5", "--log-dir", str(tmp_path / "logs")],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert res.returncode == 1, res.stderr
    err = res.stderr
    assert "[run] lifecycle_manager exited with status 1: [ERROR] [lifecycle_manager]:" in err
    assert "[run]   lane_node's last error: [ERROR] [lane_node]:" in err
    assert "threads: -1 is below the minimum 0; allowed: an integer in 0..256" in err
    assert "Traceback" not in (tmp_path / "logs" / "lane_node.log").read_text()
