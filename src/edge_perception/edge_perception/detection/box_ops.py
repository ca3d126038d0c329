"""Box conversions and (generalised) IoU on torch tensors.

Boxes are ``cxcywh`` (centre, size) or ``xyxy`` (corners); normalised or pixel units alike.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor


def cxcywh_to_xyxy(b: Tensor) -> Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def xyxy_to_cxcywh(b: Tensor) -> Tensor:
    x1, y1, x2, y2 = b.unbind(-1)
    return torch.stack([(x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1], dim=-1)


def box_area(b: Tensor) -> Tensor:
    """Area of ``xyxy`` boxes (negative sizes clamp to 0)."""
    return (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)


def box_iou(a: Tensor, b: Tensor) -> Tuple[Tensor, Tensor]:
    """Pairwise IoU [N, M] and union [N, M] of ``xyxy`` boxes ``a`` [N, 4] and ``b`` [M, 4]."""
    area_a, area_b = box_area(a), box_area(b)
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / union.clamp(min=1e-9), union


def generalized_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise GIoU [N, M] of ``xyxy`` boxes: IoU minus the enclosing box's empty fraction."""
    iou, union = box_iou(a, b)
    lt = torch.min(a[:, None, :2], b[None, :, :2])
    rb = torch.max(a[:, None, 2:], b[None, :, 2:])
    enclose = (rb - lt).clamp(min=0).prod(-1)
    return iou - (enclose - union) / enclose.clamp(min=1e-9)


def paired_iou(a: Tensor, b: Tensor) -> Tensor:
    """Element-wise IoU of two ``xyxy`` box sets of the same shape [..., 4]."""
    lt = torch.max(a[..., :2], b[..., :2])
    rb = torch.min(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = box_area(a) + box_area(b) - inter
    return inter / union.clamp(min=1e-9)


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    x = x.clamp(min=eps, max=1 - eps)
    return torch.log(x / (1 - x))
