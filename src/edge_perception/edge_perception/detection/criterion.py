"""RT-DETR training loss: IoU-aware classification + L1 + GIoU boxes, deeply supervised.

Terms (``num_boxes`` = objects in the batch, averaged over DDP processes):

- varifocal loss (VFL): BCE-with-logits of every (query, class) against an IoU-aware target --
  the IoU of the matched prediction with its object at the object's class, 0 elsewhere -- weighted
  by ``alpha * p^gamma`` on negatives and by the target itself on positives; summed over classes,
  averaged over queries, times ``Q / num_boxes``;
- L1 on matched normalised cxcywh boxes and ``1 - GIoU``, each summed over matches / ``num_boxes``.

They are applied to the last decoder layer, every earlier layer (``_aux{i}``), the selected encoder
proposals (``_enc``; trains the IoU-aware query selection) and, when denoising queries exist, to
every layer's denoising outputs (``_dn{i}``) with the known one-to-one assignment of positive
queries to their objects (negative and padding queries only see the "no object" target).

Options (switches of ``det-train``):

- ``cls_loss="mal"``: DEIM's Matchability-Aware Loss instead of VFL -- the positive's target is
  ``IoU^gamma`` (gamma 1.5) with weight 1 (VFL weights a positive by its IoU, so a poorly
  localised match, frequent early in training, gets almost no gradient); negatives as in VFL;
- ignore regions (``target["ignore_boxes"]``): unmatched queries whose box centre lies in an
  ignore region get no classification loss (neither positive nor negative);
- ``dense_weight > 0``: the training-only dense one-to-many head (``dense_outputs``, see
  :mod:`edge_perception.detection.dense_head`) with the same classification loss.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge_perception.detection.box_ops import cxcywh_to_xyxy, generalized_box_iou, paired_iou
from edge_perception.detection.dense_head import dense_loss, points_in_boxes
from edge_perception.detection.matcher import HungarianMatcher

Indices = List[Tuple[Tensor, Tensor]]


def varifocal_loss(
    logits: Tensor, target_score: Tensor, alpha: float = 0.75, gamma: float = 2.0
) -> Tensor:
    """Element-wise VFL [..., C]: weight ``alpha p^gamma`` where the target is 0, else the
    target."""
    p = logits.sigmoid().detach()
    weight = torch.where(target_score > 0, target_score, alpha * p.pow(gamma))
    return F.binary_cross_entropy_with_logits(
        logits, target_score, weight=weight, reduction="none"
    )


def matchability_aware_loss(
    logits: Tensor, target_score: Tensor, alpha: float = 0.75, gamma: float = 1.5
) -> Tensor:
    """Element-wise MAL [..., C]: BCE against ``IoU^gamma`` (weight 1) where the target is
    positive, against 0 with weight ``alpha p^gamma`` elsewhere."""
    p = logits.sigmoid().detach()
    pos = target_score > 0
    target = torch.where(pos, target_score.clamp(min=0).pow(gamma), target_score)
    weight = torch.where(pos, torch.ones_like(p), alpha * p.pow(gamma))
    return F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="none")


def ignored_queries(boxes: Tensor, targets: List[Dict[str, Tensor]]) -> Optional[Tensor]:
    """[B, Q] bool: the query's box centre lies inside one of its image's ignore regions."""
    if not any(t.get("ignore_boxes") is not None and t["ignore_boxes"].numel() for t in targets):
        return None
    out = torch.zeros(boxes.shape[:2], dtype=torch.bool, device=boxes.device)
    for i, t in enumerate(targets):
        ign = t.get("ignore_boxes")
        if ign is None or not ign.numel():
            continue
        out[i] = points_in_boxes(boxes[i, :, :2].detach(), cxcywh_to_xyxy(ign)).any(0)
    return out


class SetCriterion(nn.Module):
    """Callable ``criterion(outputs, targets) -> dict`` of named, already weighted loss terms.

    ``targets`` per image: ``labels`` [n] long (0-based), ``boxes`` [n, 4] cxcywh in [0, 1].
    The sum of the returned values is the training loss.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: Optional[HungarianMatcher] = None,
        weight_vfl: float = 1.0,
        weight_bbox: float = 5.0,
        weight_giou: float = 2.0,
        alpha: float = 0.75,
        gamma: float = 2.0,
        cls_loss: str = "vfl",
        dense_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if cls_loss not in ("vfl", "mal"):
            raise ValueError(f"cls_loss must be 'vfl' or 'mal', got {cls_loss!r}")
        self.num_classes = num_classes
        self.matcher = matcher or HungarianMatcher()
        self.weights = {"vfl": weight_vfl, "bbox": weight_bbox, "giou": weight_giou}
        self.alpha, self.gamma = alpha, gamma
        self.cls_loss = cls_loss
        self.dense_weight = dense_weight

    def classification(self, logits: Tensor, target_score: Tensor) -> Tensor:
        """Element-wise classification loss (VFL or MAL) against IoU-aware targets."""
        if self.cls_loss == "mal":
            return matchability_aware_loss(logits, target_score, self.alpha)
        return varifocal_loss(logits, target_score, self.alpha, self.gamma)

    def loss_terms(
        self,
        logits: Tensor,
        boxes: Tensor,
        targets: List[Dict[str, Tensor]],
        indices: Indices,
        num_boxes: float,
        ignore: Optional[Tensor] = None,
    ) -> Dict[str, Tensor]:
        """Unweighted ``vfl`` (the classification term, VFL or MAL), ``bbox`` (L1) and ``giou``
        for one set of outputs and matches; ``ignore`` [B, Q] drops unmatched queries' class
        loss."""
        b_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
        q_idx = torch.cat([src for src, _ in indices])
        src_boxes = boxes[b_idx, q_idx]
        tgt_boxes = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)])
        tgt_labels = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)])

        target_score = torch.zeros_like(logits)
        if q_idx.numel():
            iou = paired_iou(cxcywh_to_xyxy(src_boxes.detach()), cxcywh_to_xyxy(tgt_boxes))
            target_score[b_idx, q_idx, tgt_labels] = iou.to(logits.dtype)
        vfl = self.classification(logits, target_score)
        if ignore is not None:
            keep = ~ignore
            keep[b_idx, q_idx] = True  # matched queries are always supervised
            vfl = vfl * keep[..., None].to(vfl.dtype)
        vfl = vfl.mean(1).sum() * logits.shape[1] / num_boxes
        if q_idx.numel():
            l1 = F.l1_loss(src_boxes, tgt_boxes, reduction="sum") / num_boxes
            giou = torch.diag(
                generalized_box_iou(cxcywh_to_xyxy(src_boxes), cxcywh_to_xyxy(tgt_boxes))
            )
            giou = (1 - giou).sum() / num_boxes
        else:
            l1 = giou = boxes.sum() * 0.0
        return {"vfl": vfl, "bbox": l1, "giou": giou}

    def _weighted(self, terms: Dict[str, Tensor], suffix: str) -> Dict[str, Tensor]:
        return {f"loss_{k}{suffix}": v * self.weights[k] for k, v in terms.items()}

    def forward(
        self, outputs: Dict[str, Any], targets: List[Dict[str, Tensor]], num_boxes: float = 0.0
    ) -> Dict[str, Tensor]:
        """``num_boxes`` > 0 overrides the local object count (e.g. the DDP average)."""
        if num_boxes <= 0:
            num_boxes = max(1.0, float(sum(int(t["labels"].numel()) for t in targets)))
        losses: Dict[str, Tensor] = {}

        def supervise(out: Dict[str, Tensor], suffix: str, indices: Optional[Indices] = None):
            lg, bx = out["pred_logits"], out["pred_boxes"]
            if indices is None:
                indices = self.matcher(lg.detach(), bx.detach(), targets)
            ign = ignored_queries(bx, targets)
            terms = self.loss_terms(lg, bx, targets, indices, num_boxes, ign)
            losses.update(self._weighted(terms, suffix))

        supervise(outputs, "")
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            supervise(aux, f"_aux{i}")
        if "enc_outputs" in outputs:
            supervise(outputs["enc_outputs"], "_enc")
        if "dense_outputs" in outputs and self.dense_weight > 0:
            w = {k: v * self.dense_weight for k, v in (("cls", 1.0), ("bbox", 5.0), ("giou", 2.0))}
            losses.update(dense_loss(outputs["dense_outputs"], targets, self.classification, w))
        if "dn_outputs" in outputs:
            dn = outputs["dn_meta"]
            dn_indices = list(zip(dn.positive_idx, dn.gt_idx))
            dn_norm = num_boxes * dn.groups
            for i, out in enumerate(outputs["dn_outputs"]):
                terms = self.loss_terms(
                    out["pred_logits"], out["pred_boxes"], targets, dn_indices, dn_norm
                )
                losses.update(self._weighted(terms, f"_dn{i}"))
        return losses
