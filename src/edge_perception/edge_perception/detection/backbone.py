"""Light CNN backbone returning the S2-S5 feature maps (strides 4, 8, 16, 32).

Design choice (``block="dw"``, the default for the edge variants): stages of residual
*depthwise-separable* blocks (3x3 depthwise + 1x1 pointwise, BN, ReLU), each stage opened by a
stride-2 depthwise-separable downsample. Reasons:

- depthwise-separable 3x3 convs cost ~1/8 of a dense 3x3 at the widths used here, which is what
  keeps the ``small`` detector under ~6 GFLOPs at 640x640 while the high-resolution S2/S3 stages
  still get several blocks of receptive field;
- plain Conv-BN-ReLU (no SiLU/hard-swish, no squeeze-excitation) fuses into single convolutions in
  ONNX Runtime and TensorRT and quantises well to INT8 (ReLU outputs are non-negative, BN folds);
- residual connections make training from scratch (no pretrained weights here) stable.

``block="basic"`` swaps in ResNet basic blocks (two dense 3x3 convs); with ResNet-18 widths it
gives the RT-DETRv2-S-sized reference model used only by ``bench/det_throughput.py``.
"""

from __future__ import annotations

from typing import List, Sequence

import torch
from torch import Tensor, nn


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) + BatchNorm + optional ReLU; ``groups=in_ch`` gives a depthwise conv."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        k: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True) if act else nn.Identity(),
        )


class DWSeparable(nn.Module):
    """Depthwise 3x3 (stride ``stride``) + pointwise 1x1; residual when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.dw = ConvBNAct(in_ch, in_ch, 3, stride, groups=in_ch)
        self.pw = ConvBNAct(in_ch, out_ch, 1, act=False)
        self.residual = stride == 1 and in_ch == out_ch
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        y = self.pw(self.dw(x))
        return self.act(y + x if self.residual else y)


class BasicBlock(nn.Module):
    """ResNet basic block (two dense 3x3 convs) with a 1x1 projection shortcut when needed."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(in_ch, out_ch, 3, stride)
        self.conv2 = ConvBNAct(out_ch, out_ch, 3, act=False)
        self.short = (
            ConvBNAct(in_ch, out_ch, 1, stride, act=False)
            if stride != 1 or in_ch != out_ch
            else nn.Identity()
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.short(x))


class Backbone(nn.Module):
    """Stem (two convs, stride 2 then stride 2 -> S2) then stages to S3, S4, S5.

    ``channels`` are the S2..S5 widths and ``depths`` the number of blocks per stage (the first
    block of S3..S5 downsamples). ``forward`` returns ``[S2, S3, S4, S5]``; ``out_channels`` lists
    their widths.
    """

    def __init__(
        self, channels: Sequence[int], depths: Sequence[int], block: str = "dw", stem: int = 16
    ) -> None:
        super().__init__()
        if len(channels) != 4 or len(depths) != 4:
            raise ValueError("channels and depths need 4 entries (S2..S5)")
        if block not in ("dw", "basic"):
            raise ValueError(f"block must be 'dw' or 'basic', got {block!r}")
        blk = DWSeparable if block == "dw" else BasicBlock
        self.stem = nn.Sequential(
            ConvBNAct(3, stem, 3, 2),  # /2
            ConvBNAct(stem, channels[0], 3, 2)  # /4 (dense: 3 -> few channels is cheap)
            if block == "basic"
            else nn.Sequential(
                ConvBNAct(stem, stem, 3, 2, groups=stem), ConvBNAct(stem, channels[0], 1)
            ),
        )
        stages: List[nn.Module] = []
        in_ch = channels[0]
        for i, (ch, d) in enumerate(zip(channels, depths)):
            layers: List[nn.Module] = []
            for j in range(d):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(blk(in_ch, ch, stride))
                in_ch = ch
            if not layers:  # depth 0 still needs the downsample
                layers.append(blk(in_ch, ch, 2 if i > 0 else 1))
                in_ch = ch
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.out_channels = list(channels)

    def forward(self, x: Tensor) -> List[Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


def _self_check() -> None:  # pragma: no cover - manual use
    m = Backbone((16, 32, 64, 128), (1, 2, 2, 1))
    print([f.shape for f in m(torch.zeros(1, 3, 64, 64))])
