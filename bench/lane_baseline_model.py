"""A TwinLiteNet-class baseline for the throughput benchmark, built here from the paper's figures.

TwinLiteNet (Che et al., 2023) reports ~0.44 M parameters and ~4 GFLOP-scale cost at 360x640 for an
ESPNet-style encoder (stride 8, dilated-branch blocks with hierarchical feature fusion) plus
light transposed-conv decoders. This module is an independent re-implementation *of that class of
network* (not of its code): same stride, block type and budget, so its cost lands near the
published figures (``python bench/lane_baseline_model.py`` prints them). Untrained: it is a speed
and cost reference only.
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn


def cbr(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.PReLU(cout),
    )


class DilatedBranchBlock(nn.Module):
    """1x1 reduce, K parallel dilated 3x3 branches summed hierarchically, concat, residual."""

    def __init__(self, cin: int, cout: int, stride: int = 1, branches: int = 5) -> None:
        super().__init__()
        n = cout // branches
        first = cout - n * (branches - 1)
        self.reduce = nn.Conv2d(
            cin, n, 3 if stride == 2 else 1, stride, 1 if stride == 2 else 0, bias=False
        )
        self.branches = nn.ModuleList(
            nn.Conv2d(n, first if i == 0 else n, 3, 1, 2**i, dilation=2**i, bias=False)
            for i in range(branches)
        )
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.PReLU(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.reduce(x)
        outs: List[torch.Tensor] = [b(r) for b in self.branches]
        acc = outs[1]
        fused = [outs[0], acc]
        for o in outs[2:]:
            acc = acc + o
            fused.append(acc)
        y = torch.cat(fused, 1)
        if self.residual:
            y = y + x
        return self.act(self.bn(y))


class Decoder(nn.Module):
    """1x1 fuse, two x2 transposed convs, a 3x3 refinement and a last x2 transposed conv."""

    def __init__(self, cin: int, dec: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            cbr(cin, dec, 1),
            nn.ConvTranspose2d(dec, dec, 2, 2, bias=False),
            nn.BatchNorm2d(dec),
            nn.PReLU(dec),
            nn.ConvTranspose2d(dec, dec // 2, 2, 2, bias=False),
            nn.BatchNorm2d(dec // 2),
            nn.PReLU(dec // 2),
            cbr(dec // 2, dec // 2, 3),
            nn.ConvTranspose2d(dec // 2, num_classes, 2, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class TwinLiteClassNet(nn.Module):
    """ESPNet-style encoder (stride 8) + two transposed-conv decoders (2 + 2 = 4 logits)."""

    def __init__(
        self,
        num_classes: int = 4,
        c1: int = 16,
        c2: int = 64,
        c3: int = 128,
        p: int = 2,
        q: int = 6,
        dec: int = 88,
    ) -> None:
        super().__init__()
        self.level1 = cbr(3, c1, 3, 2)
        self.down2 = DilatedBranchBlock(c1 + 3, c2, stride=2)
        self.level2 = nn.Sequential(*[DilatedBranchBlock(c2, c2) for _ in range(p)])
        self.down3 = DilatedBranchBlock(c2 * 2 + 3, c3, stride=2)
        self.level3 = nn.Sequential(*[DilatedBranchBlock(c3, c3) for _ in range(q)])
        # twin decoders (drivable area, lane lines), as in the TwinLiteNet design
        self.decoders = nn.ModuleList(Decoder(c3 * 2, dec, 2) for _ in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x2 = nn.functional.avg_pool2d(x, 2, ceil_mode=True)
        x4 = nn.functional.avg_pool2d(x2, 2, ceil_mode=True)
        l1 = self.level1(x)
        d2 = self.down2(torch.cat([l1, x2[..., : l1.shape[2], : l1.shape[3]]], 1))
        l2 = torch.cat([self.level2(d2), d2], 1)
        x4 = nn.functional.interpolate(x4, size=l2.shape[-2:])
        d3 = self.down3(torch.cat([l2, x4], 1))
        l3 = torch.cat([self.level3(d3), d3], 1)
        y = torch.cat([d(l3) for d in self.decoders], 1)
        return nn.functional.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, "src/edge_perception")
    from edge_perception.flops import count_cost

    m = TwinLiteClassNet()
    print(count_cost(m, torch.zeros(1, 3, 360, 640)).summary())
