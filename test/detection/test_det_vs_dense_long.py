"""bench/det_vs_dense_long.py: the arms' training commands come from the long-run scripts, and
the equal-CPU interpolation."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import det_vs_dense_long as dvd  # noqa: E402


def test_arms_time_the_scripts_own_training_commands():
    det = dvd.script_train_args(dvd.SCRIPTS["det_small"])
    yolox = dvd.script_train_args(dvd.SCRIPTS["YOLOX-nano"])
    assert det[det.index("--variant") + 1] == "small"
    assert yolox[yolox.index("--variant") + 1] == "yolox_nano"
    assert "--data" not in det and "--out" not in yolox and "--resume" not in det
    # the same schedule: everything but the variant and det_small's training aids is equal
    aids = {"--variant", "small", "yolox_nano", "--dense-o2m", "--cls-loss", "mal"}
    assert [t for t in det if t not in aids] == [t for t in yolox if t not in aids]
    assert det[det.index("--iters") + 1] == "30000" and "--threads" in det


def test_at_iteration_interpolates_between_validated_rows():
    rows = {1000: {"map": "0.2"}, 2000: {"map": "0.4"}}
    assert dvd.at_iteration(rows, 500, "map") == pytest.approx(0.1)  # from 0 at iteration 0
    assert dvd.at_iteration(rows, 1500, "map") == pytest.approx(0.3)
    assert dvd.at_iteration(rows, 2000, "map") == pytest.approx(0.4)
    assert dvd.at_iteration(rows, 2001, "map") is None
