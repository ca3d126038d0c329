"""Segmentation losses: cross-entropy, one-vs-rest BCE, soft Dice, BCE+Dice, class balancing.

All losses take ``logits`` ``N x C x H x W`` (float) and ``target`` ``N x H x W`` (int64 class
indices) and return a scalar. ``class_weights`` (length C) scale each class's contribution; use
:func:`class_balanced_weights` for the effective-number weighting of Cui et al. (CVPR 2019).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("ce", "bce", "dice", "bce_dice")


def class_balanced_weights(counts: Sequence[float], beta: float = 0.9999) -> np.ndarray:
    """Weights ``w_c = (1 - beta) / (1 - beta ** n_c)``, normalised so that they sum to C.

    ``n_c`` is the number of samples of class c. For segmentation pass the *mean number of pixels
    per image* of each class (the total pixel count of a data set saturates every class's effective
    number ``(1 - beta^n) / (1 - beta)`` at ``1 / (1 - beta)`` and gives uniform weights). A class
    with zero samples gets weight 0 (it cannot be learnt and must not dominate the sum).
    """
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or n.size == 0 or np.any(n < 0):
        raise ValueError(f"counts must be a non-empty 1-D list of non-negative numbers, got {n!r}")
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    w = np.zeros_like(n)
    present = n > 0
    w[present] = (1.0 - beta) / (1.0 - np.power(beta, n[present]))
    if not present.any():
        raise ValueError("every class count is zero; the data set holds no labelled pixels")
    return w * (n.size / w.sum())


def _one_hot(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    if target.dtype != torch.int64:
        target = target.long()
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(
            f"target holds class values outside [0, {num_classes}); check the label PNGs"
        )
    return F.one_hot(target, num_classes).permute(0, 3, 1, 2).to(torch.float32)


def bce_loss(
    logits: torch.Tensor, target: torch.Tensor, class_weights: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """One-vs-rest binary cross-entropy per class channel, mean over all N*C*H*W elements.

    With ``class_weights`` each channel's terms are multiplied by its weight before the mean.
    """
    onehot = _one_hot(target, logits.shape[1])
    loss = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
    if class_weights is not None:
        loss = loss * class_weights.view(1, -1, 1, 1).to(loss)
    return loss.mean()


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: Optional[torch.Tensor] = None,
    smooth: float = 1.0,
) -> torch.Tensor:
    """Soft multi-class Dice: ``1 - mean_c (2 I_c + s) / (P_c + G_c + s)`` over the whole batch.

    ``P`` are softmax probabilities, ``I_c = sum(P_c * G_c)``, sums over N, H, W. The smoothing
    ``s`` makes a class absent from target and prediction score ~1 instead of 0/0. With
    ``class_weights`` the mean over classes is weighted.
    """
    probs = logits.softmax(dim=1)
    onehot = _one_hot(target, logits.shape[1])
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2.0 * inter + smooth) / (denom + smooth)
    if class_weights is None:
        return 1.0 - dice.mean()
    w = class_weights.to(dice)
    return 1.0 - (dice * w).sum() / w.sum()


class SegLoss(nn.Module):
    """Loss selected by name: ``ce``, ``bce``, ``dice`` or ``bce_dice`` (sum of both terms).

    ``class_weights`` (e.g. from :func:`class_balanced_weights`) go to every term; ``ce`` is the
    softmax cross-entropy baseline.
    """

    def __init__(
        self,
        kind: str = "bce_dice",
        class_weights: Optional[Sequence[float]] = None,
        dice_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if kind not in LOSSES:
            raise ValueError(f"unknown loss {kind!r}; choose one of {LOSSES}")
        self.kind = kind
        self.dice_weight = dice_weight
        w = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", w)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        w = self.class_weights
        if self.kind == "ce":
            return F.cross_entropy(logits, target.long(), weight=w)
        if self.kind == "bce":
            return bce_loss(logits, target, w)
        if self.kind == "dice":
            return dice_loss(logits, target, w)
        return bce_loss(logits, target, w) + self.dice_weight * dice_loss(logits, target, w)
