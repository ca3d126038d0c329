"""Training-only dense one-to-many head on the encoder maps (RT-DETRv3's idea, own code).

A DETR trained from scratch gets gradient into its backbone and encoder only through the ~100
tokens that query selection picks and the one-to-one matched queries: the dense maps are barely
supervised. This head adds a dense, one-to-many target on every encoder level (strides 8/16/32):

- head: two shared depthwise-separable blocks, then per cell ``C`` class logits and 4 distances
  (left, top, right, bottom, in units of the level's stride, ``softplus``) from the cell centre;
- assignment: task-aligned (TOOD) -- for each object, the candidate cells are those whose centre
  lies inside its box or within ``radius`` strides of its centre (so a 6 px object still gets
  cells on the stride-8 map); among them the ``topk`` with the highest alignment
  ``score^alpha * IoU^beta`` become positives; a cell claimed by several objects keeps the one
  with the highest IoU;
- loss: the classification target of a positive is its alignment normalised per object to that
  object's best IoU (IoU-aware, as the decoder's), with the same classification loss as the
  decoder (varifocal or MAL), summed over cells and divided by the sum of targets; GIoU + L1 on
  positives weighted by their target (at least 0.2, so a positive whose box does not overlap
  its object yet still learns to move it). Cells whose centre lies inside an ignore region and
  that are not positive get no classification loss.

The head runs only in training (``RTDETR.forward`` skips it otherwise) and is not part of the
exported graph: it costs nothing at inference.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge_perception.detection.backbone import DWSeparable
from edge_perception.detection.box_ops import box_iou, cxcywh_to_xyxy, generalized_box_iou

ClsLoss = Callable[[Tensor, Tensor], Tensor]


class DenseHead(nn.Module):
    """``forward(feats)`` -> ``{"logits": [B, A, C], "boxes": [B, A, 4] cxcywh in [0, 1],
    "points": [A, 2] cell centres (x, y) normalised, "strides": [A] in normalised widths}``.

    ``feats`` are the encoder's maps, finest first, all with ``dim`` channels.
    """

    def __init__(self, dim: int, num_classes: int, depth: int = 2) -> None:
        super().__init__()
        self.tower = nn.Sequential(*[DWSeparable(dim, dim) for _ in range(depth)])
        self.cls = nn.Conv2d(dim, num_classes, 1)
        self.reg = nn.Conv2d(dim, 4, 1)
        nn.init.constant_(self.cls.bias, -4.6)  # prior probability 0.01
        nn.init.zeros_(self.reg.weight)
        nn.init.constant_(self.reg.bias, 0.5)

    def forward(self, feats: List[Tensor]) -> Dict[str, Tensor]:
        logits, boxes, points, strides = [], [], [], []
        for f in feats:
            b, _, h, w = f.shape
            t = self.tower(f)
            lg = self.cls(t).flatten(2).transpose(1, 2)  # [B, hw, C]
            d = F.softplus(self.reg(t)).flatten(2).transpose(1, 2)  # [B, hw, 4] in strides
            ys, xs = torch.meshgrid(
                torch.arange(h, dtype=f.dtype, device=f.device),
                torch.arange(w, dtype=f.dtype, device=f.device),
                indexing="ij",
            )
            px = (xs.reshape(-1) + 0.5) / w
            py = (ys.reshape(-1) + 0.5) / h
            sx, sy = 1.0 / w, 1.0 / h
            x0 = px[None] - d[..., 0] * sx
            y0 = py[None] - d[..., 1] * sy
            x1 = px[None] + d[..., 2] * sx
            y1 = py[None] + d[..., 3] * sy
            boxes.append(torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], -1))
            logits.append(lg)
            points.append(torch.stack([px, py], -1))
            strides.append(torch.stack([torch.full_like(px, sx), torch.full_like(py, sy)], -1))
        return {
            "logits": torch.cat(logits, 1),
            "boxes": torch.cat(boxes, 1),
            "points": torch.cat(points, 0),
            "strides": torch.cat(strides, 0),
        }


def points_in_boxes(points: Tensor, boxes_xyxy: Tensor) -> Tensor:
    """[n, A] whether each point (x, y) [A, 2] lies strictly inside each box [n, 4]."""
    x, y = points[:, 0][None], points[:, 1][None]
    b = boxes_xyxy[:, :, None]
    return (x > b[:, 0]) & (x < b[:, 2]) & (y > b[:, 1]) & (y < b[:, 3])


@torch.no_grad()
def task_aligned_assign(
    logits: Tensor,
    boxes: Tensor,
    points: Tensor,
    strides: Tensor,
    labels: Tensor,
    gt_boxes: Tensor,
    topk: int = 13,
    alpha: float = 1.0,
    beta: float = 6.0,
    radius: float = 2.5,
) -> Tuple[Tensor, Tensor, Tensor]:
    """One image: ``(gt_index [A] long, -1 = background; target score [A]; iou [A])``.

    ``logits`` [A, C], ``boxes`` [A, 4] cxcywh, ``points`` [A, 2], ``strides`` [A, 2],
    ``labels`` [n], ``gt_boxes`` [n, 4] cxcywh (all normalised).
    """
    a = logits.shape[0]
    gt_index = torch.full((a,), -1, dtype=torch.long, device=logits.device)
    score = logits.new_zeros(a)
    best_iou = logits.new_zeros(a)
    n = labels.numel()
    if n == 0:
        return gt_index, score, best_iou
    gt_xyxy = cxcywh_to_xyxy(gt_boxes)
    inside = points_in_boxes(points, gt_xyxy)
    near = ((points[None, :, 0] - gt_boxes[:, None, 0]).abs() < radius * strides[None, :, 0]) & (
        (points[None, :, 1] - gt_boxes[:, None, 1]).abs() < radius * strides[None, :, 1]
    )
    cand = inside | near  # [n, A]
    iou = box_iou(gt_xyxy, cxcywh_to_xyxy(boxes))[0]  # [n, A]
    p = logits.sigmoid()[:, labels].t()  # [n, A]
    align = p.pow(alpha) * iou.pow(beta) * cand
    k = min(topk, a)
    # ties (all alignments 0, e.g. early in training for a tiny object) are broken towards the
    # cells nearest the object's centre
    dx = (points[None, :, 0] - gt_boxes[:, None, 0]) / strides[None, :, 0]
    dy = (points[None, :, 1] - gt_boxes[:, None, 1]) / strides[None, :, 1]
    prior = torch.exp(-(dx * dx + dy * dy) / 8.0) * cand
    top = torch.topk(align + 1e-6 * prior, k, dim=1).indices
    pos = torch.zeros_like(cand)
    pos.scatter_(1, top, True)
    pos &= cand
    # a cell claimed by several objects keeps the one it overlaps most
    masked_iou = torch.where(pos, iou, iou.new_full((), -1.0))
    best, which = masked_iou.max(0)
    is_pos = best >= 0
    gt_index[is_pos] = which[is_pos]
    # normalised alignment: per object, scaled so its best cell's target is its best IoU
    al = align * pos
    max_al = al.max(1, keepdim=True).values.clamp(min=1e-9)
    max_iou = (iou * pos).max(1, keepdim=True).values
    norm = al / max_al * max_iou  # [n, A]
    idx = gt_index.clamp(min=0)
    score = torch.where(is_pos, norm[idx, torch.arange(a, device=idx.device)], score)
    best_iou = torch.where(is_pos, iou[idx, torch.arange(a, device=idx.device)], best_iou)
    return gt_index, score, best_iou


def dense_loss(
    out: Dict[str, Tensor],
    targets: List[Dict[str, Tensor]],
    cls_loss: ClsLoss,
    weights: Dict[str, float],
) -> Dict[str, Tensor]:
    """Weighted ``loss_{cls,bbox,giou}_dense`` of a :class:`DenseHead` output (module docstring).

    ``cls_loss(logits, target_score) -> element-wise loss`` is the decoder's classification loss.
    """
    logits, boxes = out["logits"], out["boxes"]
    points, strides = out["points"].detach(), out["strides"].detach()
    b, a, c = logits.shape
    target = torch.zeros_like(logits)
    weight = torch.ones_like(logits)
    pos_src, pos_tgt, pos_w = [], [], []
    for i, t in enumerate(targets):
        gi, score, _ = task_aligned_assign(
            logits[i].detach().float(),
            boxes[i].detach().float(),
            points,
            strides,
            t["labels"],
            t["boxes"],
        )
        pos = gi >= 0
        if pos.any():
            target[i, pos, t["labels"][gi[pos]]] = score[pos].to(target.dtype)
            pos_src.append(boxes[i, pos])
            pos_tgt.append(t["boxes"][gi[pos]])
            pos_w.append(score[pos])
        ign = t.get("ignore_boxes")
        if ign is not None and ign.numel():
            in_ign = points_in_boxes(points, cxcywh_to_xyxy(ign)).any(0) & ~pos
            weight[i, in_ign] = 0.0
    norm = target.sum().clamp(min=1.0)
    lc = (cls_loss(logits, target) * weight).sum() / norm
    if pos_src:
        src = torch.cat(pos_src)
        tgt = torch.cat(pos_tgt)
        # every positive regresses its box, also while its alignment (target) is still ~0
        w = torch.cat(pos_w).detach().clamp(min=0.2)
        giou = torch.diag(generalized_box_iou(cxcywh_to_xyxy(src), cxcywh_to_xyxy(tgt)))
        lg = ((1 - giou) * w).sum() / norm
        l1 = (F.l1_loss(src, tgt, reduction="none").sum(-1) * w).sum() / norm
    else:
        lg = l1 = boxes.sum() * 0.0
    return {
        "loss_cls_dense": lc * weights.get("cls", 1.0),
        "loss_bbox_dense": l1 * weights.get("bbox", 5.0),
        "loss_giou_dense": lg * weights.get("giou", 2.0),
    }
