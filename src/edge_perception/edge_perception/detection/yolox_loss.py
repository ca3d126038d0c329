"""YOLOX training loss: SimOTA dynamic-k assignment, IoU + objectness + class (+ L1) terms.

Assignment per image (:func:`simota_assign`, from the paper's description of SimOTA):

1. candidate cells: centre inside an object's box or within ``center_radius`` strides of the
   object's centre; cells satisfying both are preferred (others get a large cost);
2. cost of (object, cell) = BCE of ``sqrt(sigmoid(cls) * sigmoid(obj))`` against the object's
   one-hot class (summed over classes) + ``iou_weight * -log(IoU)`` of the predicted box;
3. dynamic k per object: the sum of its ``topk_iou`` (10) largest candidate IoUs, at least 1; the
   k cheapest cells become positives of that object; a cell claimed by several objects keeps the
   cheapest one.

Loss terms (sums divided by the number of positives in the batch, as in the paper's recipe):

- ``loss_iou``: ``reg_weight`` (5) x ``1 - IoU^2`` of positive boxes with their objects;
- ``loss_obj``: BCE of the objectness logit, target 1 on positives and 0 elsewhere, except cells
  whose centre lies inside an ignore region (``target["ignore_boxes"]``) and that are not positive:
  they get no objectness loss (neither positive nor negative);
- ``loss_cls``: BCE of positive cells' class logits against one-hot x the IoU of the prediction;
- ``loss_l1`` (``use_l1``, the paper's last epochs): L1 of the raw box outputs against the
  object's encoding in the cell's grid units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge_perception.detection.box_ops import box_iou, cxcywh_to_xyxy, paired_iou


@dataclass
class Assignment:
    """SimOTA result of one image over its A cells."""

    fg: Tensor  # [A] bool, positive cells
    gt_index: Tensor  # [P] object index of each positive (in cell order)
    iou: Tensor  # [P] IoU of each positive's prediction with its object


@torch.no_grad()
def simota_assign(
    boxes: Tensor,
    obj: Tensor,
    cls: Tensor,
    centers: Tensor,
    strides: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    center_radius: float = 2.5,
    topk_iou: int = 10,
    iou_weight: float = 3.0,
) -> Assignment:
    """SimOTA for one image.

    ``boxes`` [A, 4] predicted cxcywh (pixels), ``obj`` [A] and ``cls`` [A, C] logits,
    ``centers`` [A, 2] cell centres and ``strides`` [A] (pixels), ``gt_boxes`` [G, 4] cxcywh
    pixels, ``gt_labels`` [G] (0-based).
    """
    a = boxes.shape[0]
    g = gt_boxes.shape[0]
    empty = Assignment(
        torch.zeros(a, dtype=torch.bool, device=boxes.device),
        torch.zeros(0, dtype=torch.long, device=boxes.device),
        torch.zeros(0, device=boxes.device),
    )
    if g == 0:
        return empty
    gxy = cxcywh_to_xyxy(gt_boxes)  # [G, 4]
    x, y = centers[:, 0][None], centers[:, 1][None]  # [1, A]
    in_box = (
        (x > gxy[:, 0:1]) & (x < gxy[:, 2:3]) & (y > gxy[:, 1:2]) & (y < gxy[:, 3:4])
    )  # [G, A]
    r = center_radius * strides[None]
    in_ctr = ((x - gt_boxes[:, 0:1]).abs() < r) & ((y - gt_boxes[:, 1:2]).abs() < r)
    cand = (in_box | in_ctr).any(0)  # [A]
    if not bool(cand.any()):
        return empty
    both = (in_box & in_ctr)[:, cand]  # [G, Ac]
    ious = box_iou(gxy, cxcywh_to_xyxy(boxes[cand]))[0]  # [G, Ac]
    p = (cls[cand].float().sigmoid() * obj[cand].float().sigmoid()[:, None]).sqrt()
    p = p.clamp(1e-6, 1 - 1e-6)  # [Ac, C]
    neg = -torch.log1p(-p)  # BCE against 0, per class
    # BCE summed over classes against the one-hot of the object's class
    cls_cost = neg.sum(1)[None] + (-torch.log(p) - neg).t()[gt_labels]  # [G, Ac]
    cost = cls_cost + iou_weight * -torch.log(ious + 1e-8) + 1e5 * (~both).float()
    n_cand = int(cand.sum())
    k_top = min(topk_iou, n_cand)
    dyn_k = ious.topk(k_top, dim=1).values.sum(1).int().clamp(min=1)  # [G]
    rank = cost.argsort(dim=1).argsort(dim=1)  # rank of each candidate within its object's row
    match = rank < dyn_k[:, None]  # [G, Ac]
    multi = match.sum(0) > 1
    if bool(multi.any()):
        best = cost[:, multi].argmin(0)
        match[:, multi] = False
        match[best, multi.nonzero().squeeze(1)] = True
    fg_c = match.any(0)  # [Ac]
    gt_index = match[:, fg_c].float().argmax(0)
    iou = ious[:, fg_c].gather(0, gt_index[None]).squeeze(0)
    fg = torch.zeros(a, dtype=torch.bool, device=boxes.device)
    fg[cand.nonzero().squeeze(1)[fg_c]] = True
    return Assignment(fg, gt_index, iou)


def in_regions(centers: Tensor, regions: Tensor) -> Tensor:
    """[A] bool: centre inside any of ``regions`` [m, 4] (cxcywh, same units)."""
    if regions.numel() == 0:
        return torch.zeros(centers.shape[0], dtype=torch.bool, device=centers.device)
    r = cxcywh_to_xyxy(regions)
    x, y = centers[:, 0:1], centers[:, 1:2]  # [A, 1]
    inside = (x >= r[:, 0]) & (x <= r[:, 2]) & (y >= r[:, 1]) & (y <= r[:, 3])
    return inside.any(1)


class YOLOXCriterion(nn.Module):
    """``criterion(outputs, targets, num_boxes) -> {loss_iou, loss_obj, loss_cls[, loss_l1]}``.

    ``outputs`` is the training-mode dict of :class:`~edge_perception.detection.yolox.YOLOX`;
    ``targets`` per image: ``labels`` [n] (0-based), ``boxes`` [n, 4] and ``ignore_boxes`` [m, 4]
    normalised cxcywh. The terms are already weighted; their sum is the loss. ``num_boxes`` (the
    RT-DETR normaliser) is accepted for the trainer's interface and not used: YOLOX normalises by
    the number of positive cells.
    """

    def __init__(
        self,
        num_classes: int,
        reg_weight: float = 5.0,
        use_l1: bool = False,
        center_radius: float = 2.5,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.reg_weight = reg_weight
        self.use_l1 = use_l1
        self.center_radius = center_radius

    def forward(
        self, outputs: Dict[str, Any], targets: List[Dict[str, Tensor]], num_boxes: float = 0.0
    ) -> Dict[str, Tensor]:
        boxes, obj, cls, reg = outputs["boxes"], outputs["obj"], outputs["cls"], outputs["reg"]
        centers, strides, grid = outputs["centers"], outputs["strides"], outputs["grid"]
        h, w = outputs["image_hw"]
        scale = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
        obj_target = torch.zeros_like(obj)
        obj_weight = torch.ones_like(obj)
        pos_boxes, pos_gt, pos_cls, cls_target, pos_reg, l1_target = [], [], [], [], [], []
        for b, t in enumerate(targets):
            gt = t["boxes"].to(boxes.dtype) * scale
            labels = t["labels"].long()
            asg = simota_assign(
                boxes[b].detach(),
                obj[b].detach(),
                cls[b].detach(),
                centers,
                strides,
                gt,
                labels,
                self.center_radius,
            )
            ign = t.get("ignore_boxes")
            if ign is not None and ign.numel():
                ignored = in_regions(centers, ign.to(boxes.dtype) * scale) & ~asg.fg
                obj_weight[b, ignored] = 0.0
            if not bool(asg.fg.any()):
                continue
            obj_target[b, asg.fg] = 1.0
            matched = gt[asg.gt_index]
            pos_boxes.append(boxes[b, asg.fg])
            pos_gt.append(matched)
            pos_cls.append(cls[b, asg.fg])
            cls_target.append(
                F.one_hot(labels[asg.gt_index], self.num_classes).to(cls.dtype) * asg.iou[:, None]
            )
            if self.use_l1:
                s = strides[asg.fg][:, None]
                enc = torch.cat(
                    [matched[:, :2] / s - grid[asg.fg], torch.log(matched[:, 2:] / s + 1e-8)], 1
                )
                pos_reg.append(reg[b, asg.fg])
                l1_target.append(enc)
        num_fg = max(1.0, float(sum(int(p.shape[0]) for p in pos_boxes)))
        loss_obj = (
            F.binary_cross_entropy_with_logits(obj, obj_target, reduction="none") * obj_weight
        ).sum() / num_fg
        zero = obj.sum() * 0.0  # keeps the graph (and DDP) connected without positives
        losses = {"loss_iou": zero, "loss_obj": loss_obj, "loss_cls": zero}
        if self.use_l1:
            losses["loss_l1"] = zero
        if pos_boxes:
            pb, pg = torch.cat(pos_boxes), torch.cat(pos_gt)
            iou = paired_iou(cxcywh_to_xyxy(pb), cxcywh_to_xyxy(pg))
            losses["loss_iou"] = self.reg_weight * (1.0 - iou.pow(2)).sum() / num_fg
            losses["loss_cls"] = (
                F.binary_cross_entropy_with_logits(
                    torch.cat(pos_cls), torch.cat(cls_target), reduction="sum"
                )
                / num_fg
            )
            if self.use_l1:
                losses["loss_l1"] = (
                    F.l1_loss(torch.cat(pos_reg), torch.cat(l1_target), reduction="sum") / num_fg
                )
        return losses
