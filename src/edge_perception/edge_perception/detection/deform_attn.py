"""Multi-scale deformable attention written with ``torch.nn.functional.grid_sample``.

Each query looks at ``points`` sampling locations per head and per feature level, placed around its
reference box: ``location = centre + offset / points * size / 2`` (offsets predicted from the
query, so ``|offset| = points`` reaches the box edge). The sampled values (bilinear, zero outside
the map, ``align_corners=False`` pixel-centre convention) are summed with softmax weights over
levels x points. Only standard ops are used (``GridSample`` is ONNX opset >= 16; ONNX Runtime and
TensorRT 8.5+ run it), no custom CUDA kernel.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def deformable_sample(
    value: Tensor, shapes: Sequence[Tuple[int, int]], locations: Tensor, weights: Tensor
) -> Tensor:
    """Core of the attention (no projections).

    value [B, S, heads, dh] (S = sum of H*W over levels, row-major per level);
    locations [B, Q, heads, L, P, 2] in [0, 1] (x, y); weights [B, Q, heads, L, P].
    Returns [B, Q, heads * dh].
    """
    b, _, heads, dh = value.shape
    q = locations.shape[1]
    levels = locations.shape[3]
    if levels != len(shapes):
        raise ValueError(f"locations have {levels} levels but {len(shapes)} shapes were given")
    grids = 2.0 * locations - 1.0
    sampled = []
    start = 0
    for lvl, (h, w) in enumerate(shapes):
        v = value[:, start : start + h * w]  # [B, HW, heads, dh]
        start += h * w
        v = v.permute(0, 2, 3, 1).reshape(b * heads, dh, h, w)
        g = grids[:, :, :, lvl].permute(0, 2, 1, 3, 4).reshape(b * heads, q, -1, 2)
        sampled.append(
            F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)
        )  # [B*heads, dh, Q, P]
    stacked = torch.stack(sampled, dim=3)  # [B*heads, dh, Q, L, P]
    w = weights.permute(0, 2, 1, 3, 4).reshape(b * heads, 1, q, levels, -1)
    out = (stacked * w).sum(dim=(3, 4))  # [B*heads, dh, Q]
    return out.reshape(b, heads * dh, q).transpose(1, 2)


class MSDeformableAttention(nn.Module):
    """Deformable cross-attention of queries over a flattened multi-level memory."""

    def __init__(self, dim: int, heads: int, levels: int, points: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.dim, self.heads, self.levels, self.points = dim, heads, levels, points
        self.sampling_offsets = nn.Linear(dim, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dim, heads * levels * points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Offsets start at zero weight with a bias spreading the points on a ring per head."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.heads, dtype=torch.float32) * (2 * torch.pi / self.heads)
        ring = torch.stack([angles.cos(), angles.sin()], -1)
        ring = ring / ring.abs().max(-1, keepdim=True).values
        bias = ring[:, None, None, :].repeat(1, self.levels, self.points, 1)
        bias = bias * torch.arange(1, self.points + 1, dtype=torch.float32)[None, None, :, None]
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(bias.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self, query: Tensor, ref_boxes: Tensor, memory: Tensor, shapes: List[Tuple[int, int]]
    ) -> Tensor:
        """query [B, Q, C]; ref_boxes [B, Q, 4] (cx, cy, w, h in [0, 1]); memory [B, S, C]."""
        b, q, _ = query.shape
        value = self.value_proj(memory).reshape(b, memory.shape[1], self.heads, -1)
        offsets = self.sampling_offsets(query).reshape(
            b, q, self.heads, self.levels, self.points, 2
        )
        weights = self.attention_weights(query).reshape(
            b, q, self.heads, self.levels * self.points
        )
        weights = weights.softmax(-1).reshape(b, q, self.heads, self.levels, self.points)
        centre = ref_boxes[:, :, None, None, None, :2]
        half = ref_boxes[:, :, None, None, None, 2:] * 0.5
        locations = centre + offsets / self.points * half
        return self.output_proj(deformable_sample(value, shapes, locations, weights))
