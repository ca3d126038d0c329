"""Mask and tracking heads of the video instance segmentation model (YOLACT-style, NMS-free).

- :class:`ProtoNet`: ``k`` mask prototypes at stride 4 from the stride-8 encoder map (one
  depthwise-separable block, 2x upsample) plus a 1x1 projection of the stride-4 backbone skip
  (S2), one more depthwise-separable block and a 1x1 conv to ``k`` channels with ReLU (YOLACT's
  prototypes are non-negative). Depthwise-separable blocks keep the stride-4 work small: at
  288x480 the stride-4 map has 8640 cells, so every dense 3x3 64->64 conv there would cost
  ~0.32 GMAC, half the detector.
- :class:`QueryHeads`: per decoder query, ``k`` mask coefficients (``tanh``, as in YOLACT) and an
  L2-normalised embedding for association across frames (MinVIS-style).
- :class:`SemanticHead`: training-only per-class logits on the stride-8 map (YOLACT's semantic
  segmentation loss: extra dense gradient for the shared features); never exported.
- :func:`mask_probs`: ``sigmoid(coeff . protos)`` over the whole stride-4 grid, the exported
  head graph's masks. They are cropped to the box only at the consumer's resolution
  (``runtime.vis.paste_masks``, per camera pixel): cropping at stride 4 first (cells whose centre
  is inside the box) zeroed the cells just outside every box edge, so upsampling blended the
  mask's border with zeros and eroded it by up to 2 input pixels per side -- on the val split
  image-mode mask AP 0.444 with that crop, 0.506 without (same weights). Training supervises
  the masks inside the ground-truth box (:func:`box_mask`, ``vis.criterion``).
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge_perception.detection.backbone import ConvBNAct, DWSeparable


class ProtoNet(nn.Module):
    """``forward(p3 [B, C, H/8, W/8], s2 [B, C2, H/4, W/4]) -> protos [B, k, H/4, W/4]``."""

    def __init__(self, in_ch: int, skip_ch: int, dim: int, num_protos: int) -> None:
        super().__init__()
        self.top = DWSeparable(in_ch, dim)
        self.skip = ConvBNAct(skip_ch, dim, 1, act=False)
        self.fuse = DWSeparable(dim, dim)
        self.out = nn.Conv2d(dim, num_protos, 1)
        self.num_protos = num_protos

    def forward(self, p3: Tensor, s2: Tensor) -> Tensor:
        x = F.interpolate(self.top(p3), size=s2.shape[-2:], mode="nearest")
        x = self.fuse(torch.relu(x + self.skip(s2)))
        return torch.relu(self.out(x))


class QueryHeads(nn.Module):
    """``forward(queries [B, Q, C]) -> (coeffs [B, Q, k] in (-1, 1), embeddings [B, Q, E])``."""

    def __init__(self, hidden: int, num_protos: int, embed_dim: int) -> None:
        super().__init__()
        self.coeff = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_protos)
        )
        self.embed = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, embed_dim)
        )

    def forward(self, queries: Tensor) -> Tuple[Tensor, Tensor]:
        coeffs = torch.tanh(self.coeff(queries))
        emb = F.normalize(self.embed(queries), dim=-1, eps=1e-6)
        return coeffs, emb


class SemanticHead(nn.Module):
    """Training-only per-class logits [B, classes, H/8, W/8] on the stride-8 map."""

    def __init__(self, in_ch: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, num_classes, 1)
        nn.init.constant_(self.conv.bias, -4.6)  # prior 1 %: most cells are background

    def forward(self, p3: Tensor) -> Tensor:
        return self.conv(p3)


def mask_logits(coeffs: Tensor, protos: Tensor) -> Tensor:
    """``coeffs`` [B, Q, k] . ``protos`` [B, k, H, W] -> logits [B, Q, H, W]."""
    b, k, h, w = protos.shape
    return torch.bmm(coeffs, protos.reshape(b, k, h * w)).reshape(b, -1, h, w)


def expand_boxes(boxes: Tensor, margin: float) -> Tensor:
    """cxcywh ``boxes`` [..., 4] grown by ``margin`` of their width / height on every side (the
    mask loss's region and the runtime's mask crop, ``mask_margin``)."""
    if margin == 0:
        return boxes
    return torch.cat([boxes[..., :2], boxes[..., 2:] * (1.0 + 2.0 * margin)], dim=-1)


def box_mask(boxes: Tensor, size: Tuple[int, int]) -> Tensor:
    """[B, Q, H, W] float 0/1: cell centres inside normalised cxcywh ``boxes`` [B, Q, 4]."""
    h, w = size
    ys = (torch.arange(h, dtype=boxes.dtype, device=boxes.device) + 0.5) / h
    xs = (torch.arange(w, dtype=boxes.dtype, device=boxes.device) + 0.5) / w
    cx, cy, bw, bh = boxes.unbind(-1)
    x1, x2 = (cx - 0.5 * bw)[..., None], (cx + 0.5 * bw)[..., None]
    y1, y2 = (cy - 0.5 * bh)[..., None], (cy + 0.5 * bh)[..., None]
    inx = ((xs >= x1) & (xs <= x2)).to(boxes.dtype)  # [B, Q, W]
    iny = ((ys >= y1) & (ys <= y2)).to(boxes.dtype)  # [B, Q, H]
    return iny[..., :, None] * inx[..., None, :]


def mask_probs(coeffs: Tensor, protos: Tensor) -> Tensor:
    """Mask probabilities [B, Q, H, W] (stride 4): ``sigmoid(coeff . protos)``, not cropped
    (module docstring: crop at the output resolution)."""
    return mask_logits(coeffs, protos).sigmoid()
