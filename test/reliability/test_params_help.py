"""``python -m edge_perception.ros.<node> --help``: usage from the config dataclasses, exit 0,
and no node started; an unknown argument exits 2."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

pytest.importorskip("rclpy")

from edge_perception.config import LaneNodeConfig  # noqa: E402
from edge_perception.ros.detection_node import DetectionParams  # noqa: E402
from edge_perception.ros.vis_node import VisParams  # noqa: E402

pytestmark = pytest.mark.ros

NODES = {
    "edge_perception.ros.lane_node": LaneNodeConfig,
    "edge_perception.ros.detection_node": DetectionParams,
    "edge_perception.ros.vis_node": VisParams,
}


@pytest.mark.parametrize("module", sorted(NODES))
def test_help_lists_every_parameter_and_exits_0(module):
    res = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.startswith("usage: python -m " + module)
    assert "--autostart" in out and "[ERROR]" not in res.stderr
    lines = out.splitlines()
    for f in dataclasses.fields(NODES[module]):
        row = [i for i, ln in enumerate(lines) if ln.split()[:1] == [f.name]]
        assert row, "parameter %s missing from --help" % f.name
        assert f.metadata["help"].split("(")[0].strip() in lines[row[0]]
        assert "default:" in lines[row[0] + 1] and "allowed:" in lines[row[0] + 1]
    assert "default: 0; allowed: an integer in 0..256" in out  # threads
    assert "allowed: one of: sensor_data, reliable" in out  # qos


def test_unknown_argument_exits_2():
    res = subprocess.run(
        [sys.executable, "-m", "edge_perception.ros.lane_node", "--autostrat"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert "--autostrat" in res.stderr and "--help" in res.stderr
