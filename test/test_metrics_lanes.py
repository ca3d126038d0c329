"""Polyline lane-line metric on hand-made lines with known outcomes."""

from __future__ import annotations

import numpy as np
import pytest
from edge_perception.metrics.lanes import LaneLineMeter, match_lines, pair_accuracy


def _line(x0: float, slope: float, y0: float = 100.0, y1: float = 200.0, n: int = 11):
    ys = np.linspace(y0, y1, n)
    return np.stack([x0 + slope * (ys - y0), ys], axis=1)


def test_pair_accuracy_counts_rows_within_tolerance_and_misses_outside_the_extent():
    gt = _line(50, 0.5)
    assert pair_accuracy(gt, gt, x_tol=1.0) == 1.0
    assert pair_accuracy(gt + [5.0, 0.0], gt, x_tol=8.0) == 1.0
    assert pair_accuracy(gt + [9.0, 0.0], gt, x_tol=8.0) == 0.0
    lower = gt[gt[:, 1] >= 150.0]  # covers rows 150..200 of the 100..200 ground truth
    assert pair_accuracy(lower, gt, x_tol=1.0, row_step=4.0) == pytest.approx(13 / 26)
    # order of the predicted points does not matter (published lines run bottom to top)
    assert pair_accuracy(gt[::-1], gt, x_tol=1.0) == 1.0


def test_matching_is_one_to_one_and_scores_types():
    a, b = _line(40, 0.2), _line(120, -0.3)
    gt = [(a, "solid"), (b, "dashed")]
    pred = [(b + [2.0, 0.0], "dashed"), (a, "dashed"), (a + [1.0, 0.0], "solid")]
    matches = match_lines(pred, gt, x_tol=4.0)
    assert sorted((p, g) for p, g, _ in matches) in ([(0, 1), (1, 0)], [(0, 1), (2, 0)])
    meter = LaneLineMeter(x_tol=4.0)
    meter.update(pred, gt)
    meter.update([], [(a, "solid")])  # a missed line
    meter.update([(b, "solid")], [])  # a line where there is none
    r = meter.compute()
    assert (r["tp"], r["fp"], r["fn"], r["frames"]) == (2, 2, 1, 3)
    assert r["precision"] == pytest.approx(0.5) and r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert r["type_accuracy"] in (0.5, 1.0)


def test_stubs_are_ignored_and_empty_meter_has_no_scores():
    meter = LaneLineMeter(min_points=3)
    stub = np.array([[10.0, 100.0], [11.0, 104.0]])
    meter.update([], [(stub, "solid")])
    r = meter.compute()
    assert r["fn"] == 0 and r["precision"] is None and r["f1"] is None
