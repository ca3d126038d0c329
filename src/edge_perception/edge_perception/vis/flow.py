"""Feature flow for non-keyframes (YolactEdge's FeatFlowNet idea, made small and stride-8 based).

- :class:`FeatFlowNet`: both frames' stride-8 backbone maps (S3) are reduced by a shared 1x1 conv
  to ``reduce`` channels (the keyframe's reduction is computed once, on the keyframe, and kept);
  their concatenation and difference go through a stride-2 dense 3x3 conv (stride 16), one more
  3x3 conv, and a stride-2 conv (stride 32). Each of the two levels predicts a backward flow
  (current frame -> keyframe, in input-image pixels; the stride-32 flow, upsampled, is the base of
  the stride-16 one) and a per-channel scale and bias of the warped features
  (``warped * (1 + scale) + bias``, YolactEdge's feature "scale"). Flow and scale/bias heads start
  at zero, so an untrained net copies the keyframe's features. With ``corr_radius`` > 0 the
  stride-16 level also sees a local cost volume (:func:`local_correlation` of both frames'
  reduced maps, average-pooled to stride 16: cosine similarity at every displacement within
  ``radius`` cells, i.e. +-16 * radius input pixels), added through a zero-initialised 1x1 conv
  (so it can be added to a trained net without changing it). Measured motivation
  (bench/results/vis_gap.md): the concatenation-only net's flow error stays ~12 px against the
  15-25 px inter-frame motion at 10 Hz; explicit matching is what optical-flow networks rely on.
- :func:`warp`: bilinear sampling of a keyframe feature map at ``p + flow(p)``, exactly
  ``grid_sample(bilinear, border padding, align_corners=False)``, computed as zero-padded
  GridSample on coordinates clamped to the map (the same values): ONNX Runtime's GridSample is
  several times slower in border mode than in zeros mode, and zeros mode also beat the four row
  gathers + weighted sum this function used before.
- :class:`WarpFuse`: the light stride-8 fuse that rebuilds the stride-8 map of the current frame
  from its own S3 (the encoder's S3 input projection, shared with the keyframe path) plus the
  warped stride-16 map (1x1 lateral at stride 16, nearest 2x upsample), then one depthwise 3x3
  conv (a pointwise conv there would cost ~35 MMAC at 288x480 for ``small``, 11 % of the non-key
  path).
"""

from __future__ import annotations

import functools
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge_perception.detection.backbone import ConvBNAct


def warp(feat: Tensor, flow: Tensor, image_hw: Tuple[int, int]) -> Tensor:
    """Sample ``feat`` [B, C, h, w] at ``p + flow(p)``; ``flow`` [B, 2, h, w] in image pixels
    (x, y) of an ``image_hw`` input. Bilinear, coordinates clamped to the map (border padding):
    the same values as ``F.grid_sample(..., align_corners=False, padding_mode="border")``."""
    _, _, h, w = feat.shape
    # sample position in cell units (cell i + flow * cells per image pixel), clamped to the map
    xs = torch.arange(w, dtype=feat.dtype, device=feat.device)
    ys = torch.arange(h, dtype=feat.dtype, device=feat.device)
    x = (xs[None, None, :] + flow[:, 0] * (w / float(image_hw[1]))).clamp(0, w - 1)
    y = (ys[None, :, None] + flow[:, 1] * (h / float(image_hw[0]))).clamp(0, h - 1)
    # on clamped coordinates zero padding only meets corners of zero weight, so "zeros" gives
    # the border-padded values; ONNX Runtime's GridSample is much slower in border mode
    grid = torch.stack([(2.0 * x + 1.0) / w - 1.0, (2.0 * y + 1.0) / h - 1.0], dim=-1)
    return F.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@functools.lru_cache(maxsize=8)
def correlation_index(h: int, w: int, radius: int) -> Tuple[Tensor, Tensor]:
    """For each cell (row-major) and displacement (dy, dx), dy and dx in -r..r (dy outer): the
    flat index [h * w, (2r+1)^2] int64 of the displaced cell (0 where it falls off the map) and
    a float mask of the same shape, 1 where it is on the map. Cached per map size (built once,
    not every forward pass); callers must not modify the tensors."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.reshape(-1, 1), xs.reshape(-1, 1)
    d = torch.arange(-radius, radius + 1)
    dy = d.repeat_interleave(2 * radius + 1)[None]
    dx = d.repeat(2 * radius + 1)[None]
    ty, tx = ys + dy, xs + dx
    inside = (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)
    return torch.where(inside, ty * w + tx, torch.zeros_like(ty)), inside.float()


def local_correlation(cur: Tensor, key: Tensor, radius: int) -> Tensor:
    """Cost volume [B, (2r+1)^2, h, w]: the dot product ``<cur(p), key(p + d)>`` (the cosine for
    unit vectors, as the flow net feeds it) for every displacement
    ``d = (dy, dx)`` in ``-radius..radius`` (dy outer, dx inner), zero where ``p + d`` is off the
    map. One MatMul of all cell pairs, one Gather of the local ones and a constant mask (a
    handful of ONNX ops, where a loop over displacements would export 3 ops per displacement);
    the all-pairs matrix is [h*w, h*w], so this is meant for a coarse level (stride 16: 540
    cells at 288x480)."""
    b, _, h, w = cur.shape
    cost = torch.bmm(cur.flatten(2).transpose(1, 2), key.flatten(2))  # [B, N, N]
    index, inside = correlation_index(h, w, radius)
    d = int(index.shape[1])
    out = torch.gather(cost, 2, index.to(cur.device)[None].expand(b, -1, -1))  # [B, N, D]
    out = out * inside.to(cost)
    return out.transpose(1, 2).reshape(b, d, h, w)


class _LevelHead(nn.Module):
    """Flow (2 channels, image pixels) and per-channel scale / bias (2 x ``channels``)."""

    def __init__(self, in_ch: int, channels: int, stride: int) -> None:
        super().__init__()
        self.flow = nn.Conv2d(in_ch, 2, 3, padding=1)
        self.scale_bias = nn.Conv2d(in_ch, 2 * channels, 1)
        self.stride = stride
        for conv in (self.flow, self.scale_bias):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        scale, bias = self.scale_bias(x).chunk(2, dim=1)
        return self.flow(x) * float(self.stride), scale, bias


class FeatFlowNet(nn.Module):
    """Flow between two frames' reduced S3 maps at strides 16 and 32; see the module docstring.

    ``reduce(s3)`` gives the per-frame input [B, reduce, H/8, W/8]; ``forward(cur, key)`` returns
    ``{"flow16", "flow32"}`` [B, 2, ...] (image pixels) and ``{"scale16", "bias16", "scale32",
    "bias32"}`` [B, channels, ...].
    """

    def __init__(
        self, s3_ch: int, channels: int, reduce: int = 32, hidden: int = 32, corr_radius: int = 0
    ) -> None:
        super().__init__()
        if corr_radius < 0:
            raise ValueError(f"corr_radius must be >= 0, got {corr_radius}")
        self.corr_radius = int(corr_radius)
        self.corr_proj = None
        if corr_radius:
            self.corr_proj = nn.Conv2d((2 * corr_radius + 1) ** 2, hidden, 1)
            nn.init.zeros_(self.corr_proj.weight)
            nn.init.zeros_(self.corr_proj.bias)
        self.reduce_conv = ConvBNAct(s3_ch, reduce, 1)
        self.down16 = ConvBNAct(3 * reduce, hidden, 3, 2)
        self.conv16 = ConvBNAct(hidden, hidden, 3)
        self.down32 = ConvBNAct(hidden, 2 * hidden, 3, 2)
        self.head32 = _LevelHead(2 * hidden, channels, 32)
        self.lat32 = ConvBNAct(2 * hidden, hidden, 1)
        self.head16 = _LevelHead(hidden, channels, 16)

    def reduce(self, s3: Tensor) -> Tensor:
        return self.reduce_conv(s3)

    def forward(self, cur: Tensor, key: Tensor) -> Dict[str, Tensor]:
        x16 = self.down16(torch.cat([cur, key, cur - key], dim=1))
        if self.corr_proj is not None:
            a = F.normalize(F.avg_pool2d(cur, 2, ceil_mode=True), dim=1, eps=1e-6)
            b = F.normalize(F.avg_pool2d(key, 2, ceil_mode=True), dim=1, eps=1e-6)
            x16 = x16 + self.corr_proj(local_correlation(a, b, self.corr_radius))  # cosines
        x16 = self.conv16(x16)
        x32 = self.down32(x16)
        flow32, scale32, bias32 = self.head32(x32)
        up = F.interpolate(self.lat32(x32), size=x16.shape[-2:], mode="nearest")
        delta16, scale16, bias16 = self.head16(x16 + up)
        flow16 = F.interpolate(flow32, size=x16.shape[-2:], mode="bilinear") + delta16
        return {
            "flow16": flow16,
            "flow32": flow32,
            "scale16": scale16,
            "bias16": bias16,
            "scale32": scale32,
            "bias32": bias32,
        }


class WarpFuse(nn.Module):
    """``forward(s3, p4_warped) -> p3`` [B, C, H/8, W/8] (see the module docstring).

    ``s3_proj`` is the encoder's own S3 input projection (shared module, shared weights).
    """

    def __init__(self, s3_proj: nn.Module, channels: int) -> None:
        super().__init__()
        self.s3_proj = s3_proj
        self.lateral = ConvBNAct(channels, channels, 1, act=False)
        self.block = ConvBNAct(channels, channels, 3, groups=channels)

    def forward(self, s3: Tensor, p4: Tensor) -> Tensor:
        top = F.interpolate(self.lateral(p4), size=s3.shape[-2:], mode="nearest")
        return self.block(torch.relu(self.s3_proj(s3) + top))
