"""Contrastive denoising groups: layout, attention mask blocks, noise ranges."""

from __future__ import annotations

import torch
from edge_perception.detection.denoising import build_denoising, corner_noise


def _targets():
    return [
        {
            "labels": torch.tensor([1, 4]),
            "boxes": torch.tensor([[0.5, 0.5, 0.1, 0.1], [0.3, 0.4, 0.2, 0.1]]),
        },
        {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.6, 0.5, 0.1, 0.2]])},
    ]


def test_group_layout_and_mask():
    g = torch.Generator().manual_seed(0)
    dn = build_denoising(
        _targets(),
        num_classes=7,
        num_queries=5,
        num_denoising=10,
        label_noise_ratio=0.0,
        generator=g,
    )
    m = 2  # most objects in one image
    assert dn.groups == 5 and dn.num_dn == 5 * 2 * m == 20
    assert dn.labels.shape == (2, 20) and dn.ref_logits.shape == (2, 20, 4)
    # labels repeat per group, positive then negative halves; image 1's second slot is padding
    for grp in range(5):
        for half in range(2):
            lo = grp * 4 + half * 2
            assert dn.labels[0, lo : lo + 2].tolist() == [1, 4]
            assert dn.labels[1, lo : lo + 2].tolist() == [2, 7]
    mask = dn.attn_mask
    assert mask.shape == (25, 25) and mask.dtype == torch.bool
    assert mask[20:, :20].all()  # matching queries never see denoising queries
    assert not mask[20:, 20:].any()  # ... but see each other
    assert not mask[:20, 20:].any()  # denoising queries may see the matching ones
    for grp in range(5):
        lo, hi = grp * 4, grp * 4 + 4
        assert not mask[lo:hi, lo:hi].any()
        others = torch.ones(20, dtype=torch.bool)
        others[lo:hi] = False
        assert mask[lo:hi, :20][:, others].all()
    assert dn.positive_idx[0].tolist() == [0, 1, 4, 5, 8, 9, 12, 13, 16, 17]
    assert dn.positive_idx[1].tolist() == [0, 4, 8, 12, 16]
    assert dn.gt_idx[0].tolist() == [0, 1] * 5


def test_noise_ranges_positive_inside_negative_outside():
    g = torch.Generator().manual_seed(1)
    boxes = torch.tensor([0.5, 0.5, 0.1, 0.2]).expand(1, 50, 2, 1, 4).contiguous()
    xyxy = corner_noise(boxes, 1.0, generator=g)
    shift = (xyxy - torch.tensor([0.45, 0.4, 0.55, 0.6])).abs()
    half = torch.tensor([0.05, 0.1, 0.05, 0.1])  # half the box width / height per corner
    assert (shift[:, :, 0] <= half + 1e-6).all()  # positives move less than half the size
    assert (shift[:, :, 1] >= half - 1e-6).all()  # negatives between 1 and 2 halves
    assert (shift[:, :, 1] <= 2 * half + 1e-6).all()
    assert shift[:, :, 0].max() > 0.8 * 0.05  # the noise actually spans its range


def test_denoising_boxes_are_valid_and_noised():
    g = torch.Generator().manual_seed(3)
    targets = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.1, 0.1]])}]
    dn = build_denoising(targets, num_classes=3, num_queries=2, num_denoising=100, generator=g)
    boxes = dn.ref_logits.sigmoid()[0]
    assert (boxes[:, 2:] >= 0).all()
    pos, neg = boxes.reshape(dn.groups, 2, 4).unbind(1)
    centre_err = lambda b: (b[:, :2] - 0.5).abs().max(-1).values  # noqa: E731
    assert (centre_err(pos) <= 0.05 + 1e-4).all()
    assert centre_err(neg).mean() > centre_err(pos).mean()


def test_label_noise_flips_about_the_requested_share():
    g = torch.Generator().manual_seed(2)
    targets = [
        {"labels": torch.zeros(50, dtype=torch.long), "boxes": torch.rand(50, 4) * 0.2 + 0.4}
    ]
    dn = build_denoising(
        targets,
        num_classes=7,
        num_queries=2,
        num_denoising=2000,
        label_noise_ratio=0.5,
        generator=g,
    )
    changed = (dn.labels != 0).float().mean().item()
    # a flip happens with p = 0.25 and picks another class with p = 6/7
    assert abs(changed - 0.25 * 6 / 7) < 0.03


def test_empty_batch_has_no_denoising():
    empty = [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}]
    assert build_denoising(empty, 7, 5) is None
    assert build_denoising(_targets(), 7, 5, num_denoising=0) is None
