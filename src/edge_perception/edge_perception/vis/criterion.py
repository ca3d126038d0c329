"""Losses of the video instance segmentation model.

- :class:`MaskCostMatcher`: the detector's Hungarian matcher (focal class + L1 + GIoU costs) plus
  BCE and Dice mask costs computed *inside the ground-truth box* (YOLACT crops to the box), for
  the output sets whose mask predictions were registered with :meth:`MaskCostMatcher.provide`.
  The mask costs use the stride-8 grid (prototypes average-pooled 2x; the logits are linear in
  them), as matmuls over cells: ``BCE = (softplus(-l) . (R t) + softplus(l) . (R (1-t))) / |R|``,
  ``Dice = 1 - (2 s.(R t) + 1) / (s.R + |R t| + 1)`` (``R`` the box region, ``t`` the mask).
- :class:`VISCriterion`: the detector's :class:`~edge_perception.detection.criterion.SetCriterion`
  (classification, boxes, denoising, encoder, dense head; ignore regions) with that matcher, plus
  per matched query of the last and every auxiliary layer a mask BCE + Dice inside the GT box at
  stride 4 (the same indices as the box loss), and the training-only semantic loss (BCE of the
  stride-8 class maps against the union of each class's masks).
- :func:`embedding_loss`: supervised contrastive loss (temperature ``tau``) on the L2-normalised
  query embeddings of the matched queries of all frames of a clip: same track id = positive.
- :func:`flow_losses`: end-point error of the predicted flows against the data set's flow
  (average-pooled over valid pixels to each stride) and feature matching (MSE) of the warped /
  fused maps against the full keyframe path run on the same frame.

Targets per image: the detector's keys (``labels``, ``boxes`` cxcywh normalised,
``ignore_boxes``) plus ``masks`` [n, H, W] (0/1 at the network input size) and ``track_ids`` [n].
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from edge_perception.detection.criterion import SetCriterion
from edge_perception.detection.matcher import HungarianMatcher
from edge_perception.vis.heads import box_mask, expand_boxes, mask_logits

Indices = List[Tuple[Tensor, Tensor]]


def target_masks(masks: Tensor, size: Tuple[int, int]) -> Tensor:
    """[n, H, W] 0/1 masks -> [n, h, w] float fractions (area pooling) at ``size``."""
    if masks.numel() == 0:
        return masks.new_zeros((0, *size), dtype=torch.float32)
    return F.adaptive_avg_pool2d(masks[None].float(), size)[0]


def mask_cost(logits: Tensor, tmask: Tensor, region: Tensor) -> Tuple[Tensor, Tensor]:
    """BCE and Dice costs [Q, n] of ``logits`` [Q, P] against masks ``tmask`` [n, P] inside
    ``region`` [n, P] (0/1)."""
    rt = region * tmask
    rn = region * (1 - tmask)
    area = region.sum(1).clamp(min=1.0)
    bce = (F.softplus(-logits) @ rt.T + F.softplus(logits) @ rn.T) / area[None]
    s = logits.sigmoid()
    dice = 1 - (2 * (s @ rt.T) + 1) / (s @ region.T + rt.sum(1)[None] + 1)
    return bce, dice


class MaskCostMatcher(HungarianMatcher):
    """Hungarian matcher with in-box mask costs for registered outputs (module docstring).

    ``provide(logits, coeffs, protos)`` registers the mask predictions of the output set whose
    class logits are ``logits`` (found again by storage address, also after ``detach``); the
    indices found for it are kept in :attr:`last` under the same key.
    """

    def __init__(
        self, cost_mask: float = 2.0, cost_dice: float = 2.0, mask_margin: float = 0.0, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.cost_mask, self.cost_dice = cost_mask, cost_dice
        self.mask_margin = float(mask_margin)
        self.pending: Dict[int, Tuple[Tensor, Tensor]] = {}
        self.last: Dict[int, Indices] = {}

    def provide(self, logits: Tensor, coeffs: Tensor, protos: Tensor) -> None:
        self.pending[logits.data_ptr()] = (coeffs, protos)

    def reset(self) -> None:
        self.pending.clear()
        self.last.clear()

    @torch.no_grad()
    def __call__(
        self, logits: Tensor, boxes: Tensor, targets: List[Dict[str, Tensor]]
    ) -> List[Tuple[Tensor, Tensor]]:
        key = logits.data_ptr()
        costs = self.cost_matrices(logits.float(), boxes.float(), targets)
        extra = self.pending.get(key)
        if extra is not None:
            coeffs, protos = extra
            pooled = F.avg_pool2d(protos.detach().float(), 2)
            h, w = int(pooled.shape[2]), int(pooled.shape[3])
            lg = mask_logits(coeffs.detach().float(), pooled).flatten(2)  # [B, Q, P]
            for i, t in enumerate(targets):
                if t["labels"].numel() == 0:
                    continue
                tm = target_masks(t["masks"], (h, w)).flatten(1)
                boxes = expand_boxes(t["boxes"][None].float(), self.mask_margin)
                reg = box_mask(boxes, (h, w))[0].flatten(1)
                bce, dice = mask_cost(lg[i], tm, reg)
                costs[i] = costs[i] + self.cost_mask * bce + self.cost_dice * dice
        indices = []
        for c in costs:
            rows, cols = linear_sum_assignment(c.cpu().numpy())
            indices.append(
                (torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long))
            )
        if extra is not None:
            self.last[key] = indices
        return indices


def mask_loss(
    coeffs: Tensor,
    protos: Tensor,
    targets: List[Dict[str, Tensor]],
    indices: Indices,
    num_boxes: float,
    margin: float = 0.0,
) -> Tuple[Tensor, Tensor]:
    """Summed per-object (BCE, Dice) inside the GT box (grown by ``margin`` of its size per side:
    :func:`~edge_perception.vis.heads.expand_boxes`) at the prototypes' resolution, divided by
    ``num_boxes``."""
    h, w = int(protos.shape[2]), int(protos.shape[3])
    bce_sum = dice_sum = protos.sum() * 0.0 + coeffs.sum() * 0.0
    for i, (t, (src, tgt)) in enumerate(zip(targets, indices)):
        if src.numel() == 0:
            continue
        lg = (coeffs[i, src] @ protos[i].flatten(1)).float()  # [M, P]
        tm = target_masks(t["masks"][tgt], (h, w)).flatten(1)
        reg = box_mask(expand_boxes(t["boxes"][tgt][None].float(), margin), (h, w))[0].flatten(1)
        area = reg.sum(1).clamp(min=1.0)
        bce = F.binary_cross_entropy_with_logits(lg, tm, reduction="none")
        bce_sum = bce_sum + ((bce * reg).sum(1) / area).sum()
        s = lg.sigmoid() * reg
        dice = 1 - (2 * (s * tm).sum(1) + 1) / (s.sum(1) + (tm * reg).sum(1) + 1)
        dice_sum = dice_sum + dice.sum()
    return bce_sum / num_boxes, dice_sum / num_boxes


def semantic_loss(logits: Tensor, targets: List[Dict[str, Tensor]]) -> Tensor:
    """Mean BCE of [B, C, h, w] class maps against the union of each class's masks."""
    b, c, h, w = logits.shape
    tgt = logits.new_zeros(b, c, h, w)
    for i, t in enumerate(targets):
        if t["labels"].numel():
            tm = target_masks(t["masks"], (h, w))
            for j, c in enumerate(t["labels"].tolist()):
                tgt[i, c] = torch.maximum(tgt[i, c], tm[j])
    return F.binary_cross_entropy_with_logits(logits, tgt)


class VISCriterion(nn.Module):
    """``criterion(outputs, targets) -> dict`` of weighted loss terms (module docstring)."""

    def __init__(
        self,
        num_classes: int,
        weight_mask: float = 2.0,
        weight_dice: float = 2.0,
        weight_semantic: float = 1.0,
        cls_loss: str = "vfl",
        dense_weight: float = 1.0,
        mask_margin: float = 0.0,
    ) -> None:
        super().__init__()
        self.matcher = MaskCostMatcher(mask_margin=mask_margin)
        self.det = SetCriterion(
            num_classes, matcher=self.matcher, cls_loss=cls_loss, dense_weight=dense_weight
        )
        self.weight_mask, self.weight_dice = weight_mask, weight_dice
        self.weight_semantic = weight_semantic

    def match(self, outputs: Dict[str, Any], targets: List[Dict[str, Tensor]]) -> Indices:
        """The final output set's matching as the loss makes it (class, box and in-box mask
        costs) without computing a loss; also kept in ``outputs["indices"]``."""
        self.matcher.reset()
        self.matcher.provide(outputs["pred_logits"], outputs["pred_coeffs"], outputs["protos"])
        try:
            idx = self.matcher(outputs["pred_logits"], outputs["pred_boxes"], targets)
        finally:
            self.matcher.reset()
        outputs["indices"] = idx
        return idx

    def forward(
        self, outputs: Dict[str, Any], targets: List[Dict[str, Tensor]], num_boxes: float = 0.0
    ) -> Dict[str, Tensor]:
        if num_boxes <= 0:
            num_boxes = max(1.0, float(sum(int(t["labels"].numel()) for t in targets)))
        sets = [("", outputs)] + [
            (f"_aux{i}", o) for i, o in enumerate(outputs.get("aux_outputs", []))
        ]
        self.matcher.reset()
        for _, o in sets:
            self.matcher.provide(o["pred_logits"], o["pred_coeffs"], outputs["protos"])
        try:
            losses = self.det(outputs, targets, num_boxes=num_boxes)
            for suffix, o in sets:
                idx = self.matcher.last[o["pred_logits"].data_ptr()]
                bce, dice = mask_loss(
                    o["pred_coeffs"],
                    outputs["protos"],
                    targets,
                    idx,
                    num_boxes,
                    self.matcher.mask_margin,
                )
                losses[f"loss_mask{suffix}"] = bce * self.weight_mask
                losses[f"loss_dice{suffix}"] = dice * self.weight_dice
            outputs["indices"] = self.matcher.last[outputs["pred_logits"].data_ptr()]
        finally:
            self.matcher.reset()
        if "semantic" in outputs and self.weight_semantic > 0:
            losses["loss_semantic"] = semantic_loss(outputs["semantic"], targets) * (
                self.weight_semantic
            )
        return losses


def embedding_loss(
    embeds: List[Tensor],
    indices: List[Indices],
    targets: List[List[Dict[str, Tensor]]],
    tau: float = 0.1,
) -> Tensor:
    """Supervised contrastive loss over a batch of clips.

    ``embeds[t]`` [B, Q, E] (L2-normalised) of frame ``t``, ``indices[t]`` its matches and
    ``targets[t]`` its targets (``track_ids``). For clip ``b``, every matched query of every frame
    is an anchor; positives are the other frames' queries matched to the same track.
    """
    total = embeds[0].sum() * 0.0
    count = 0
    for b in range(embeds[0].shape[0]):
        vecs, ids, frame = [], [], []
        for t, (emb, idx, tg) in enumerate(zip(embeds, indices, targets)):
            src, tgt = idx[b]
            vecs.append(emb[b, src])
            ids.append(tg[b]["track_ids"][tgt])
            frame.append(torch.full_like(tgt, t))
        v, tid, fr = torch.cat(vecs), torch.cat(ids), torch.cat(frame)
        if v.shape[0] < 2:
            continue
        sim = v @ v.T / tau
        eye = torch.eye(len(v), dtype=torch.bool, device=v.device)
        pos = (tid[:, None] == tid[None]) & (fr[:, None] != fr[None])
        has = pos.any(1)
        if not bool(has.any()):
            continue
        logp = sim.masked_fill(eye, float("-inf")).log_softmax(1)
        per = -(logp.masked_fill(~pos, 0.0).sum(1) / pos.sum(1).clamp(min=1))
        total = total + per[has].sum()
        count += int(has.sum())
    return total / max(count, 1)


def pooled_flow(flow: Tensor, valid: Tensor, size: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
    """Average of ``flow`` [B, 2, H, W] over ``valid`` [B, H, W] pixels per cell of ``size``;
    returns (flow [B, 2, h, w], cell has a valid pixel [B, h, w])."""
    v = valid[:, None].float()
    num = F.adaptive_avg_pool2d(flow * v, size)
    den = F.adaptive_avg_pool2d(v, size)
    return num / den.clamp(min=1e-6), den[:, 0] > 0


def flow_losses(
    nonkey: Dict[str, Tensor],
    full: Optional[Dict[str, Tensor]],
    flow: Optional[Tensor],
    valid: Optional[Tensor],
) -> Dict[str, Tensor]:
    """``loss_flow`` (EPE, pixels / 16 so it is O(1)) and ``loss_feat`` (MSE of p3/p4/p5 to the
    full path's maps ``full``, detached); either is skipped when its input is missing."""
    out: Dict[str, Tensor] = {}
    if flow is not None and valid is not None:
        epe = []
        for key in ("flow16", "flow32"):
            pred = nonkey[key]
            gt, ok = pooled_flow(flow, valid, (int(pred.shape[2]), int(pred.shape[3])))
            err = (pred - gt).norm(dim=1)
            epe.append((err * ok).sum() / ok.sum().clamp(min=1))
        out["loss_flow"] = sum(epe) / 16.0
    if full is not None:
        out["loss_feat"] = sum(F.mse_loss(nonkey[k], full[k].detach()) for k in ("p3", "p4", "p5"))
    return out
