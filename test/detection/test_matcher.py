"""Hungarian matcher: hand-made cases with a known optimum and a hand-computed cost entry."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from edge_perception.detection.matcher import HungarianMatcher


def test_exact_boxes_and_classes_are_matched():
    # prediction 2 is object 0 exactly, prediction 0 is object 1; prediction 1 is garbage.
    logits = torch.full((1, 3, 4), -6.0)
    logits[0, 2, 1] = 6.0
    logits[0, 0, 3] = 6.0
    boxes = torch.tensor([[[0.7, 0.7, 0.2, 0.2], [0.1, 0.9, 0.05, 0.05], [0.3, 0.3, 0.2, 0.4]]])
    targets = [
        {
            "labels": torch.tensor([1, 3]),
            "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.4], [0.7, 0.7, 0.2, 0.2]]),
        }
    ]
    ((rows, cols),) = HungarianMatcher()(logits, boxes, targets)
    assert rows.tolist() == [0, 2]
    assert cols.tolist() == [1, 0]


def test_cost_entry_by_hand():
    # p = sigmoid(0) = 0.5: focal pos = .25 * .25 * ln 2, neg = .75 * .25 * ln 2 -> -0.125 ln 2
    # L1 of (0.5,0.5,0.2,0.2) vs (0.5,0.5,0.4,0.2) = 0.2; IoU 0.5 and the enclosing box is the
    # union -> GIoU 0.5. Weights 2 / 5 / 2.
    m = HungarianMatcher(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0)
    c = m.cost_matrices(
        torch.zeros(1, 1, 7),
        torch.tensor([[[0.5, 0.5, 0.2, 0.2]]]),
        [{"labels": torch.tensor([4]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.2]])}],
    )[0]
    expected = 2 * (-0.125 * math.log(2)) + 5 * 0.2 + 2 * (-0.5)
    assert c.shape == (1, 1)
    assert float(c[0, 0]) == pytest.approx(expected, abs=1e-5)


def test_optimum_equals_brute_force_where_greedy_fails():
    # Pred 0 is the best for both objects; greedy (take the global minimum first) assigns it to
    # object 0 and is left with a bad pair; the optimum gives it to object 1.
    m = HungarianMatcher(cost_class=0.0, cost_bbox=1.0, cost_giou=0.0)
    boxes = torch.tensor([[[0.50, 0.5, 0.1, 0.1], [0.45, 0.5, 0.1, 0.1], [0.9, 0.9, 0.1, 0.1]]])
    targets = [
        {
            "labels": torch.tensor([0, 0]),
            "boxes": torch.tensor([[0.49, 0.5, 0.1, 0.1], [0.52, 0.5, 0.1, 0.1]]),
        }
    ]
    ((rows, cols),) = m(torch.zeros(1, 3, 2), boxes, targets)
    # costs: p0-o0 .01, p0-o1 .02, p1-o0 .04, p1-o1 .07 -> optimum p1-o0 + p0-o1 = .06 < .08
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0}


def test_random_costs_match_brute_force():
    g = torch.Generator().manual_seed(0)
    m = HungarianMatcher()
    for _ in range(5):
        logits = torch.randn(1, 5, 3, generator=g)
        boxes = torch.rand(1, 5, 4, generator=g) * 0.5 + 0.25
        tgt = [
            {
                "labels": torch.randint(0, 3, (3,), generator=g),
                "boxes": torch.rand(3, 4, generator=g) * 0.5 + 0.25,
            }
        ]
        c = m.cost_matrices(logits, boxes, tgt)[0].numpy()
        best = min(sum(c[p[j], j] for j in range(3)) for p in itertools.permutations(range(5), 3))
        ((rows, cols),) = m(logits, boxes, tgt)
        assert c[rows.numpy(), cols.numpy()].sum() == pytest.approx(best, rel=1e-6)


def test_image_without_objects_and_bad_batch():
    m = HungarianMatcher()
    ((rows, cols),) = m(
        torch.zeros(1, 4, 2),
        torch.rand(1, 4, 4),
        [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}],
    )
    assert rows.numel() == 0 and cols.numel() == 0
    with pytest.raises(ValueError, match="targets"):
        m(torch.zeros(2, 4, 2), torch.rand(2, 4, 4), [])
    assert np.isfinite(1.0)
