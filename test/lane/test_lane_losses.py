"""Loss values on hand-made masks, computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from edge_perception.lane.losses import (
    SegLoss,
    bce_loss,
    class_balanced_weights,
    dice_loss,
)


def _logits_from_probs(p: np.ndarray) -> torch.Tensor:
    # log-probabilities are valid logits for softmax: softmax(log p) = p
    return torch.tensor(np.log(p), dtype=torch.float64)


def test_dice_by_hand():
    # 1 image, 2 classes, 1x2 pixels: target [0, 1]; probabilities class0 = [0.8, 0.4]
    p = np.array([[[[0.8, 0.4]], [[0.2, 0.6]]]])
    target = torch.tensor([[[0, 1]]])
    # class 0: I = 0.8, P = 1.2, G = 1 -> 1.6/2.2 ; class 1: I = 0.6, P = 0.8, G = 1 -> 1.2/1.8
    expected = 1 - (1.6 / 2.2 + 1.2 / 1.8) / 2
    got = dice_loss(_logits_from_probs(p), target, smooth=0.0)
    assert float(got) == pytest.approx(expected, rel=1e-9)
    w = torch.tensor([1.0, 3.0])
    got_w = dice_loss(_logits_from_probs(p), target, class_weights=w, smooth=0.0)
    assert float(got_w) == pytest.approx(1 - (1.6 / 2.2 + 3 * 1.2 / 1.8) / 4, rel=1e-9)


def test_dice_perfect_and_absent_class():
    p = np.array([[[[1 - 1e-12, 1e-12]], [[1e-12, 1 - 1e-12]], [[1e-12, 1e-12]]]])
    target = torch.tensor([[[0, 1]]])
    # class 2 absent from both: (0 + 1) / (0 + 1) = 1 with smoothing -> loss ~ 0
    got = dice_loss(_logits_from_probs(p), target, smooth=1.0)
    assert float(got) == pytest.approx(0, abs=1e-9)


def test_bce_by_hand():
    logits = torch.tensor([[[[0.0, 2.0]], [[1.0, -1.0]]]])  # 2 classes, 1x2
    target = torch.tensor([[[1, 0]]])

    def sp(x: float) -> float:  # softplus = -log(sigmoid(-x))
        return math.log1p(math.exp(x))

    # class0 channel targets [0, 1]; class1 channel targets [1, 0]
    terms = [sp(0.0), sp(-2.0), sp(-1.0), sp(-1.0)]
    assert float(bce_loss(logits, target)) == pytest.approx(sum(terms) / 4, rel=1e-6)
    w = torch.tensor([2.0, 0.5])
    weighted = (2 * (terms[0] + terms[1]) + 0.5 * (terms[2] + terms[3])) / 4
    assert float(bce_loss(logits, target, w)) == pytest.approx(weighted, rel=1e-6)
    combo = SegLoss("bce_dice")(logits, target)
    assert float(combo) == pytest.approx(
        float(bce_loss(logits, target)) + float(dice_loss(logits, target)), rel=1e-6
    )


def test_class_balanced_weights_by_hand():
    beta = 0.9
    counts = [1, 2, 0]
    e1 = (1 - beta) / (1 - beta**1)  # = 1
    e2 = (1 - beta) / (1 - beta**2)  # = 0.1/0.19
    s = e1 + e2
    np.testing.assert_allclose(
        class_balanced_weights(counts, beta), [3 * e1 / s, 3 * e2 / s, 0.0], rtol=1e-12
    )
    w = class_balanced_weights([30000, 25000, 1500, 500], beta=0.9999)
    assert w[3] > w[2] > w[1] > w[0]  # rarer class -> larger weight


def test_bad_inputs_name_the_fix():
    with pytest.raises(ValueError, match="unknown loss"):
        SegLoss("focal")
    with pytest.raises(ValueError, match="outside"):
        bce_loss(torch.zeros(1, 2, 1, 1), torch.tensor([[[5]]]))
    with pytest.raises(ValueError, match="beta"):
        class_balanced_weights([1, 2], beta=1.0)
