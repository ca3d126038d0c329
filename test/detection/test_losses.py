"""Loss terms on inputs whose values are worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from edge_perception.detection.box_ops import generalized_box_iou
from edge_perception.detection.criterion import SetCriterion, varifocal_loss
from edge_perception.detection.model import build_rtdetr

LN2 = math.log(2)


def test_varifocal_elements():
    logits = torch.zeros(1, 1, 2)  # p = 0.5 everywhere
    target = torch.tensor([[[0.0, 0.8]]])
    v = varifocal_loss(logits, target, alpha=0.75, gamma=2.0)
    # negative: weight .75 * .5^2, BCE ln 2; positive: weight .8, BCE -(.8 ln .5 + .2 ln .5)
    assert v[0, 0, 0].item() == pytest.approx(0.1875 * LN2, rel=1e-5)
    assert v[0, 0, 1].item() == pytest.approx(0.8 * LN2, rel=1e-5)


def test_giou_of_disjoint_and_nested_boxes():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0, 3.0, 1.0], [0.0, 0.0, 0.5, 1.0]])
    g = generalized_box_iou(a, b)
    assert g[0, 0].item() == pytest.approx(-1 / 3)  # IoU 0, enclosing 3, union 2
    assert g[0, 1].item() == pytest.approx(0.5)


def test_loss_terms_by_hand():
    crit = SetCriterion(num_classes=2)
    logits = torch.zeros(1, 2, 2)
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]]])
    targets = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.2]])}]
    indices = [(torch.tensor([0]), torch.tensor([0]))]
    t = crit.loss_terms(logits, boxes, targets, indices, num_boxes=1.0)
    assert t["bbox"].item() == pytest.approx(0.2, rel=1e-5)  # |0.2 - 0.4|
    assert t["giou"].item() == pytest.approx(0.5, rel=1e-5)  # IoU .5, enclosing = union
    # VFL: matched (q0, class 1) has target IoU 0.5 -> 0.5 ln 2; three negatives 0.1875 ln 2 each
    assert t["vfl"].item() == pytest.approx((0.5 + 3 * 0.1875) * LN2, rel=1e-5)
    # normaliser: twice the objects -> half the loss
    t2 = crit.loss_terms(logits, boxes, targets, indices, num_boxes=2.0)
    assert t2["bbox"].item() == pytest.approx(0.1, rel=1e-5)


def test_no_match_gives_zero_box_losses():
    crit = SetCriterion(num_classes=2)
    t = crit.loss_terms(
        torch.zeros(1, 2, 2),
        torch.rand(1, 2, 4),
        [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}],
        [(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))],
        1.0,
    )
    assert t["bbox"].item() == 0.0 and t["giou"].item() == 0.0
    assert t["vfl"].item() == pytest.approx(4 * 0.1875 * LN2, rel=1e-5)


def test_full_criterion_supervises_every_output_and_trains():
    torch.manual_seed(0)
    model = build_rtdetr("tiny").train()
    crit = SetCriterion(7)
    images = torch.rand(2, 3, 64, 64)
    targets = [
        {
            "labels": torch.tensor([0, 2]),
            "boxes": torch.tensor([[0.3, 0.3, 0.3, 0.3], [0.7, 0.6, 0.2, 0.4]]),
        },
        {"labels": torch.tensor([5]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.5]])},
    ]
    losses = crit(model(images, targets), targets)
    n_layers = model.cfg.decoder_layers
    suffixes = [""] + [f"_aux{i}" for i in range(n_layers - 1)] + ["_enc"]
    suffixes += [f"_dn{i}" for i in range(n_layers)]
    assert set(losses) == {f"loss_{k}{s}" for s in suffixes for k in ("vfl", "bbox", "giou")}
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(20):
        loss = sum(crit(model(images, targets), targets).values())
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.8 * first  # overfits two images
