"""Contrastive denoising (CDN) query groups for training.

Every ground-truth box is copied into ``groups`` groups; each group holds ``M = max objects per
image`` *positive* queries (label flipped with probability ``label_noise_ratio / 2``, corners moved
by less than ``box_noise_scale`` x half the box size) followed by ``M`` *negative* queries (corners
moved by 1-2 x that amount: they must be rejected as "no object"). Slots of images with fewer than
``M`` objects are padding (label index ``num_classes``, never supervised).

Query layout (``N_dn = groups * 2M`` denoising queries first, then the ``K`` matching queries)::

    [g0 pos | g0 neg | g1 pos | g1 neg | ... | matching queries]

The self-attention mask (``True`` = may not attend) blocks (a) matching queries from seeing any
denoising query (they would read the ground truth) and (b) each denoising group from seeing the
other groups. Denoising queries may see the matching queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from torch import Tensor

from edge_perception.detection.box_ops import cxcywh_to_xyxy, inverse_sigmoid, xyxy_to_cxcywh


def corner_noise(
    boxes: Tensor, scale: float, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Noised corners (xyxy, unclipped) of ``boxes`` [B, G, 2, M, 4] cxcywh.

    Each corner moves by ``u * scale * size / 2`` with a random sign, ``u`` uniform in [0, 1) for
    the positive half (index 0 of dim 2) and in [1, 2) for the negative half.
    """
    xyxy = cxcywh_to_xyxy(boxes)
    half = torch.cat([boxes[..., 2:], boxes[..., 2:]], dim=-1) * 0.5 * scale
    sign = torch.randint(0, 2, boxes.shape, generator=generator, device=boxes.device) * 2.0 - 1.0
    part = torch.rand(boxes.shape, generator=generator, device=boxes.device)
    part[:, :, 1] += 1.0
    return xyxy + sign * part * half


@dataclass
class DenoisingBatch:
    """Denoising queries of one batch and what the criterion needs to supervise them."""

    labels: Tensor  # [B, N_dn] long, num_classes = padding
    ref_logits: Tensor  # [B, N_dn, 4] inverse-sigmoid of the noised cxcywh boxes
    attn_mask: Tensor  # [N_dn + K, N_dn + K] bool, True = blocked
    positive_idx: List[Tensor]  # per image: query indices of its positive queries (group-major)
    gt_idx: List[Tensor]  # per image: the ground-truth index each positive query reconstructs
    groups: int
    num_dn: int


def build_denoising(
    targets: List[Dict[str, Tensor]],
    num_classes: int,
    num_queries: int,
    num_denoising: int = 100,
    label_noise_ratio: float = 0.5,
    box_noise_scale: float = 1.0,
    generator: Optional[torch.Generator] = None,
) -> Optional[DenoisingBatch]:
    """Build the groups for ``targets`` (per image: ``labels`` [n] long, ``boxes`` [n, 4] cxcywh
    normalised). Returns ``None`` when the batch has no object or ``num_denoising`` is 0.

    ``groups = max(1, num_denoising // M)``.
    """
    if num_denoising <= 0:
        return None
    counts = [int(t["labels"].numel()) for t in targets]
    m = max(counts) if counts else 0
    if m == 0:
        return None
    groups = max(1, num_denoising // m)
    bsz = len(targets)
    device = targets[0]["boxes"].device
    labels = torch.full((bsz, m), num_classes, dtype=torch.long, device=device)
    boxes = torch.zeros(bsz, m, 4, device=device)
    valid = torch.zeros(bsz, m, dtype=torch.bool, device=device)
    for i, t in enumerate(targets):
        n = counts[i]
        if n:
            labels[i, :n] = t["labels"]
            boxes[i, :n] = t["boxes"]
            valid[i, :n] = True
    # [B, groups, 2, M]: index 0 positive, 1 negative
    labels = labels[:, None, None].repeat(1, groups, 2, 1)
    boxes = boxes[:, None, None].repeat(1, groups, 2, 1, 1)
    valid = valid[:, None, None].repeat(1, groups, 2, 1)

    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator, device=device)

    if label_noise_ratio > 0:
        flip = (rand(*labels.shape) < label_noise_ratio * 0.5) & valid
        random_labels = torch.randint(
            0, num_classes, labels.shape, generator=generator, device=device
        )
        labels = torch.where(flip, random_labels, labels)
    if box_noise_scale > 0:
        xyxy = corner_noise(boxes, box_noise_scale, generator)
        # a negative whose corners crossed is the box they span (keeps width/height >= 0)
        x1, x2 = (
            torch.minimum(xyxy[..., 0], xyxy[..., 2]),
            torch.maximum(xyxy[..., 0], xyxy[..., 2]),
        )
        y1, y2 = (
            torch.minimum(xyxy[..., 1], xyxy[..., 3]),
            torch.maximum(xyxy[..., 1], xyxy[..., 3]),
        )
        boxes = xyxy_to_cxcywh(torch.stack([x1, y1, x2, y2], -1).clamp(0.0, 1.0))
    num_dn = groups * 2 * m
    labels = labels.reshape(bsz, num_dn)
    ref_logits = inverse_sigmoid(boxes.reshape(bsz, num_dn, 4))

    total = num_dn + num_queries
    mask = torch.zeros(total, total, dtype=torch.bool, device=device)
    mask[num_dn:, :num_dn] = True
    for g in range(groups):
        lo, hi = g * 2 * m, (g + 1) * 2 * m
        mask[lo:hi, :lo] = True
        mask[lo:hi, hi:num_dn] = True

    positive_idx, gt_idx = [], []
    for n in counts:
        ar = torch.arange(n, device=device)
        positive_idx.append(
            torch.cat([g * 2 * m + ar for g in range(groups)])
            if n
            else torch.zeros(0, dtype=torch.long, device=device)
        )
        gt_idx.append(ar.repeat(groups))
    return DenoisingBatch(labels, ref_logits, mask, positive_idx, gt_idx, groups, num_dn)
