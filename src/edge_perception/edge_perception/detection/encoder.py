"""Hybrid encoder: AIFI (intra-scale attention on S5) + CCFM (CNN cross-scale fusion).

- AIFI: one post-norm transformer encoder layer over the S5 tokens with a fixed 2D sin-cos position
  embedding (computed from the feature size, so any input size works; it folds to a constant in an
  exported fixed-size graph). Attention only on S5 keeps the quadratic cost on the fewest tokens.
- CCFM: top-down (upsample + concat + fusion block) then bottom-up (stride-2 conv + concat + fusion
  block) paths over S3-S5 -- or S2-S5 with ``use_s2=True`` (an extra stride-4 level for small
  objects). A fusion block is a 1x1 conv (2C -> C) followed by ``depth`` residual
  depthwise-separable blocks.

``forward(feats)`` takes the backbone's ``[S2, S3, S4, S5]`` and returns the fused maps, highest
resolution first, each with ``hidden_dim`` channels.
"""

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge_perception.detection.backbone import ConvBNAct, DWSeparable


def sincos_pos_embed_2d(h: int, w: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """Fixed 2D sin-cos embedding [h*w, dim] (row-major tokens); ``dim`` divisible by 4.

    The first half of the channels encodes x, the second y, each as sin/cos over ``dim/4``
    geometrically spaced frequencies.
    """
    if dim % 4:
        raise ValueError(f"sin-cos embedding needs dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    ox = xs.reshape(-1, 1) * omega[None]
    oy = ys.reshape(-1, 1) * omega[None]
    return torch.cat([ox.sin(), ox.cos(), oy.sin(), oy.cos()], dim=1)


class AIFILayer(nn.Module):
    """Transformer encoder layer (MHSA + FFN, post-norm) with position added to queries/keys."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.norm2 = nn.LayerNorm(dim)
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [B, C, H, W] -> same shape."""
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        pos = sincos_pos_embed_2d(h, w, c).to(x.dtype).to(x.device)[None]
        qk = tokens + pos
        attn, _ = self.attn(qk, qk, tokens, need_weights=False)
        tokens = self.norm1(tokens + attn)
        tokens = self.norm2(tokens + self.ffn(tokens))
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class FusionBlock(nn.Module):
    """1x1 conv reducing ``in_ch`` to ``out_ch``, then ``depth`` residual DW-separable blocks."""

    def __init__(self, in_ch: int, out_ch: int, depth: int = 1) -> None:
        super().__init__()
        self.reduce = ConvBNAct(in_ch, out_ch, 1)
        self.blocks = nn.Sequential(*[DWSeparable(out_ch, out_ch) for _ in range(depth)])

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.reduce(x))


class HybridEncoder(nn.Module):
    """AIFI on the coarsest level + CCFM over the selected levels (see the module docstring)."""

    def __init__(
        self,
        in_channels: Sequence[int],
        hidden_dim: int,
        heads: int,
        ffn_dim: int,
        fusion_depth: int = 1,
        use_s2: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.use_s2 = use_s2
        self.levels = list(in_channels[0:] if use_s2 else in_channels[1:])  # S2|S3 .. S5
        n = len(self.levels)
        self.hidden_dim = hidden_dim
        self.input_proj = nn.ModuleList(
            [ConvBNAct(c, hidden_dim, 1, act=False) for c in self.levels]
        )
        self.aifi = AIFILayer(hidden_dim, heads, ffn_dim, dropout)
        self.lateral = nn.ModuleList([ConvBNAct(hidden_dim, hidden_dim, 1) for _ in range(n - 1)])
        self.td_fuse = nn.ModuleList(
            [FusionBlock(2 * hidden_dim, hidden_dim, fusion_depth) for _ in range(n - 1)]
        )
        self.down = nn.ModuleList(
            [
                nn.Sequential(
                    ConvBNAct(hidden_dim, hidden_dim, 3, 2, groups=hidden_dim),
                    ConvBNAct(hidden_dim, hidden_dim, 1),
                )
                for _ in range(n - 1)
            ]
        )
        self.bu_fuse = nn.ModuleList(
            [FusionBlock(2 * hidden_dim, hidden_dim, fusion_depth) for _ in range(n - 1)]
        )
        self.num_levels = n

    def forward(self, feats: List[Tensor]) -> List[Tensor]:
        if len(feats) != 4:
            raise ValueError(f"expected the backbone's 4 maps S2..S5, got {len(feats)}")
        xs = feats if self.use_s2 else feats[1:]
        proj = [p(x) for p, x in zip(self.input_proj, xs)]
        proj[-1] = self.aifi(proj[-1])
        # top-down: from the coarsest level to the finest
        inner = [proj[-1]]
        for i in range(self.num_levels - 1, 0, -1):
            k = self.num_levels - 1 - i
            top = self.lateral[k](inner[0])
            inner[0] = top
            up = F.interpolate(top, size=proj[i - 1].shape[-2:], mode="nearest")
            inner.insert(0, self.td_fuse[k](torch.cat([up, proj[i - 1]], dim=1)))
        # bottom-up: from the finest back to the coarsest
        outs = [inner[0]]
        for i in range(self.num_levels - 1):
            down = self.down[i](outs[-1])
            outs.append(self.bu_fuse[i](torch.cat([down, inner[i + 1]], dim=1)))
        return outs
