"""Lightweight U-Net for lane segmentation on edge CPUs/GPUs.

Classes (``LANE_CLASSES``): background, drivable, lane_solid, lane_dashed. Why these four: the
planner needs the drivable surface and the lines bounding it, and the legal meaning of a line
(may I cross it?) is what differs between solid and dashed; double lines are trained as solid since
they forbid crossing the same way. Colour (white/yellow) is left out: it changes no decision for
lane keeping and would split the thin-line pixels over more classes. Left/right ego-line classes
are left out too, so a horizontal flip is a label-safe augmentation; the ego lines are picked in
post-processing from their positions at the image bottom.

Architecture
------------
- Normalisation of ``[0, 1]`` RGB (ImageNet mean/std) is inside the model, so deployed graphs take
  the contract input directly.
- Stem: 3x3 conv, stride 2. Encoder: 4 stages, each a stride-2 depthwise-separable (DS) conv then
  ``depth`` residual DS blocks. A DS block is a ``k x k`` depthwise conv (k = 5 or 7: a large
  receptive field for thin, long lines at the price of few MACs, since depthwise cost grows with
  k^2 but not with channels^2) + BN + ReLU + 1x1 pointwise conv + BN (+ ReLU).
- Decoder: bilinear x2 up-sampling, concatenation with the encoder skip, 1x1 fuse + DS block.
- Head: 1x1 conv to class logits at 1/2 resolution, bilinear up-sampling to the input size.
- ReLU everywhere (not SiLU/GELU): Conv+BN+ReLU fuse into one quantised op in ONNX Runtime QDQ and
  TensorRT INT8.

``width`` scales every channel count, ``depth`` the number of blocks per stage.
:func:`build_model` knows the variants ``tiny`` (tests), ``small`` (bundled default) and ``base``.
``model.deploy()`` switches ``forward`` to the export contract: ``(logits, mask)`` with ``mask``
the uint8 arg-max (ONNX output names ``logits`` and ``mask``, input ``images``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from edge_perception.lane import LANE_CLASSES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of :class:`LaneUNet` (stored in checkpoints and manifests)."""

    base_channels: Tuple[int, ...] = (16, 32, 64, 96, 128)  # stem, stage 1..4
    base_depths: Tuple[int, ...] = (1, 2, 2, 2)
    width: float = 1.0
    depth: float = 1.0
    kernel: int = 5
    num_classes: int = len(LANE_CLASSES)

    @property
    def channels(self) -> List[int]:
        """Channel counts after the width multiplier, rounded to multiples of 8 (SIMD friendly)."""
        return [max(8, int(math.ceil(c * self.width / 8.0)) * 8) for c in self.base_channels]

    @property
    def depths(self) -> List[int]:
        return [max(1, int(round(d * self.depth))) for d in self.base_depths]


VARIANTS: Dict[str, UNetConfig] = {
    "tiny": UNetConfig(width=0.25, depth=0.5, kernel=3),
    "small": UNetConfig(width=0.75, depth=1.0, kernel=5),
    "base": UNetConfig(width=1.0, depth=1.5, kernel=7),
}


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)
    )


class DSBlock(nn.Module):
    """Depthwise ``k x k`` + pointwise 1x1 conv, each with BN; residual when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.dw = _conv_bn(cin, cin, kernel, stride, groups=cin)
        self.pw = _conv_bn(cin, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(F.relu(self.dw(x)))
        if self.residual:
            y = y + x
        return F.relu(y)


class LaneUNet(nn.Module):
    """U-Net with depthwise-separable blocks; see the module docstring.

    ``forward(images)`` takes float RGB in ``[0, 1]``, ``N x 3 x H x W`` with H and W multiples of
    32, and returns logits ``N x C x H x W`` (training mode) or ``(logits, mask)`` after
    :meth:`deploy`.
    """

    def __init__(self, config: UNetConfig = UNetConfig()) -> None:  # noqa: B008 - frozen
        super().__init__()
        self.config = config
        ch, dp, k = config.channels, config.depths, config.kernel
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.stem = nn.Sequential(_conv_bn(3, ch[0], 3, 2), nn.ReLU(inplace=True))
        self.stages = nn.ModuleList()
        for i in range(4):
            blocks: List[nn.Module] = [DSBlock(ch[i], ch[i + 1], k, stride=2)]
            blocks += [DSBlock(ch[i + 1], ch[i + 1], k) for _ in range(dp[i])]
            self.stages.append(nn.Sequential(*blocks))
        self.decoders = nn.ModuleList()
        for i in range(4, 0, -1):  # fuse level i (deep) into level i-1
            self.decoders.append(
                nn.Sequential(
                    _conv_bn(ch[i] + ch[i - 1], ch[i - 1], 1),
                    nn.ReLU(inplace=True),
                    DSBlock(ch[i - 1], ch[i - 1], k),
                )
            )
        self.head = nn.Conv2d(ch[0], config.num_classes, 1)
        self._deploy = False

    def deploy(self, enabled: bool = True) -> LaneUNet:
        """Switch to the export contract (``(logits, mask uint8)``) and eval mode; returns self."""
        self._deploy = enabled
        if enabled:
            self.eval()
        return self

    def forward(
        self, images: torch.Tensor
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        h, w = images.shape[-2:]
        x = (images - self.mean) / self.std
        feats = [self.stem(x)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        y = feats[-1]
        for j, dec in enumerate(self.decoders):
            skip = feats[3 - j]
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = dec(torch.cat([y, skip], dim=1))
        logits = F.interpolate(self.head(y), size=(h, w), mode="bilinear", align_corners=False)
        if self._deploy:
            return logits, logits.argmax(dim=1).to(torch.uint8)
        return logits


def build_model(variant: str = "small", **overrides: object) -> LaneUNet:
    """Model of a named variant; ``overrides`` replace :class:`UNetConfig` fields (e.g. width)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown lane model variant {variant!r}; choose one of {list(VARIANTS)}")
    cfg = asdict(VARIANTS[variant])
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise ValueError(f"unknown UNetConfig field(s) {sorted(unknown)}; known: {sorted(cfg)}")
    cfg.update(overrides)
    cfg["base_channels"] = tuple(cfg["base_channels"])
    cfg["base_depths"] = tuple(cfg["base_depths"])
    return LaneUNet(UNetConfig(**cfg))


def config_from_dict(d: Dict[str, object]) -> UNetConfig:
    """Inverse of ``dataclasses.asdict`` for a checkpoint's stored config."""
    d = dict(d)
    d["base_channels"] = tuple(d["base_channels"])  # type: ignore[arg-type]
    d["base_depths"] = tuple(d["base_depths"])  # type: ignore[arg-type]
    return UNetConfig(**d)  # type: ignore[arg-type]


def load_checkpoint(path: str) -> Tuple[LaneUNet, Dict[str, object]]:
    """Model (eval mode, weights loaded) and the raw checkpoint dict of a ``lane-train`` file."""
    from edge_perception.datafiles import DataError, load_torch

    ckpt = load_torch(path, "lane-train checkpoint", hint="train one with lane-train")
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise DataError(path, "is not a lane-train checkpoint (needs 'model' and 'config')")
    try:
        model = LaneUNet(config_from_dict(ckpt["config"]))
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise DataError(path, f"weights do not fit a lane model: {first}") from exc
    return model.eval(), ckpt
