"""Tracking metrics (MOTA / IDF1 / HOTA through trackeval) on hand-made cases with known values.

The cases use boxes that either coincide (IoU 1) or are far apart, so every value follows from the
definitions by hand (CLEAR MOT: Bernardin & Stiefelhagen 2008; IDF1: Ristani et al. 2016; HOTA:
Luiten et al. 2021, whose Fig. 1 motivates the A / B pair below).
"""

from __future__ import annotations

import math
from typing import List, Optional

import numpy as np
import pytest

pytest.importorskip("trackeval")

from edge_perception.metrics.tracking import (  # noqa: E402
    FrameTracks,
    evaluate_tracking,
    format_tracking,
)

BOXES = {k: [100.0 * k, 0.0, 100.0 * k + 10.0, 10.0] for k in range(10)}  # far apart


def frame(*objs, labels: Optional[List[int]] = None, ignore=None) -> FrameTracks:
    """``objs`` = (track id, box slot) pairs."""
    ids = [o[0] for o in objs]
    boxes = np.array([BOXES[o[1]] for o in objs]).reshape(-1, 4)
    return FrameTracks(ids, boxes, labels, ignore)


def test_hota_paper_example_a_vs_b():
    gt = [frame((1, 0)) for _ in range(10)]
    # A: right id, but only the first half of the frames.  B: every frame, id switch halfway.
    a = [frame((7, 0)) if t < 5 else frame() for t in range(10)]
    b = [frame((7, 0) if t < 5 else (8, 0)) for t in range(10)]
    ma = evaluate_tracking({"s": (gt, a)})
    mb = evaluate_tracking({"s": (gt, b)})
    assert (ma.mota, ma.idf1, ma.deta, ma.assa, ma.hota) == pytest.approx(
        (0.5, 2 / 3, 0.5, 0.5, 0.5)
    )
    assert (mb.mota, mb.idf1, mb.deta, mb.assa) == pytest.approx((0.9, 0.5, 1.0, 0.5))
    assert mb.hota == pytest.approx(math.sqrt(0.5))
    assert (ma.id_switches, mb.id_switches) == (0, 1)
    assert ma.false_negatives == 5 and mb.false_negatives == 0


def test_clear_mot_identity_and_hota_counts():
    # gt 1 at slot 0, gt 2 at slot 1, four frames. Tracker: id 1 perfect; gt 2 as id 2, then id 3
    # (a switch), then missed; a false positive (id 9) in frame 0.
    gt = [frame((1, 0), (2, 1)) for _ in range(4)]
    pr = [
        frame((1, 0), (2, 1), (9, 5)),
        frame((1, 0), (2, 1)),
        frame((1, 0), (3, 1)),
        frame((1, 0)),
    ]
    m = evaluate_tracking({"s": (gt, pr)})
    assert (m.true_positives, m.false_positives, m.false_negatives, m.id_switches) == (7, 1, 1, 1)
    assert m.mota == pytest.approx(1 - 3 / 8)
    assert m.idf1 == pytest.approx(2 * 6 / (8 + 8))  # IDTP 4 (1<->1) + 2 (2<->2)
    assert m.deta == pytest.approx(7 / 9)
    assert m.assa == pytest.approx((4 * 1.0 + 2 * 0.5 + 1 * 0.25) / 7)
    assert m.hota == pytest.approx(math.sqrt(7 / 9 * 5.25 / 7))
    assert (m.gt_dets, m.pred_dets, m.gt_ids, m.pred_ids) == (8, 8, 2, 4)
    assert m.mostly_tracked == 1 and m.mostly_lost == 0  # gt 2 is tracked 3/4 < 80 %


def test_localisation_enters_hota_through_alpha_but_not_mota():
    gt = [FrameTracks([1], [[0, 0, 10, 10]])]
    pr = [FrameTracks([5], [[0, 0, 10, 7.2]])]  # IoU 0.72: matched for alpha 0.05 ... 0.70
    m = evaluate_tracking({"s": (gt, pr)})
    assert m.mota == 1.0 and m.motp == pytest.approx(0.72)
    assert m.hota == pytest.approx(14 / 19)
    # trackeval counts LocA as 1 at the alphas with no match: (14 x 0.72 + 5 x 1) / 19.
    assert m.loca == pytest.approx((14 * 0.72 + 5) / 19)


def test_ignored_ground_truth_neither_misses_nor_false_positives():
    gt = [frame((1, 0), (2, 1), ignore=[False, True]) for _ in range(3)]
    pr = [frame((1, 0), (4, 1)) for _ in range(3)]  # id 4 sits on the ignored object
    m = evaluate_tracking({"s": (gt, pr)})
    assert (m.mota, m.idf1, m.hota) == (1.0, 1.0, 1.0)
    assert (m.false_positives, m.false_negatives, m.gt_dets, m.pred_dets) == (0, 0, 3, 3)


def test_classes_evaluated_separately_and_combined():
    names = ["car", "truck", "bus"]
    gt = [frame((1, 0), (2, 1), labels=[0, 1]) for _ in range(2)]
    pr = [frame((1, 0), (2, 1), labels=[0, 0]) for _ in range(2)]  # the truck called a car
    m = evaluate_tracking({"s": (gt, pr)}, names)
    assert set(m.classes) == {"car", "truck"}  # bus: no gt, no predictions
    assert m.classes["car"]["mota"] == 0.0  # 2 TP, 2 FP over 2 gt
    assert m.classes["truck"]["mota"] == 0.0 and m.classes["truck"]["false_negatives"] == 2
    assert m.mota == pytest.approx(1 - 4 / 4)  # pooled: 2 FP + 2 FN over 4 gt
    assert m.class_averaged["idf1"] == pytest.approx((2 * 2 / (2 + 4) + 0.0) / 2)
    table = format_tracking(m)
    assert "| car |" in table and "all (pooled)" in table


def test_several_sequences_pool_and_negative_mota():
    gt = [frame((1, 0))]
    noisy = [frame((1, 0), (2, 3), (3, 4))]
    m = evaluate_tracking({"a": (gt, noisy), "b": (gt, [frame((1, 2))])})
    assert m.gt_dets == 2 and m.false_positives == 3 and m.false_negatives == 1
    assert m.mota == pytest.approx(1 - 4 / 2)
    with pytest.raises(ValueError, match="frames"):
        evaluate_tracking({"s": (gt, [])})
