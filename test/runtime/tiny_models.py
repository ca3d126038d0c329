"""Tiny seeded models with the project's I/O contracts, exported to ONNX inside tests.

Used by test/runtime and test/ros (which adds this folder to ``sys.path``).
"""

from __future__ import annotations

import os
import warnings
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class TinyLaneUNet(nn.Module):
    """Two-level U-Net-like net: ``images`` [N,3,H,W] -> ``logits`` [N,C,H,W], ``mask`` uint8."""

    input_names = ["images"]
    output_names = ["logits", "mask"]

    def __init__(self, num_classes: int = 4, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.enc = nn.Conv2d(3, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.fuse = nn.Conv2d(16, 8, 1)
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        e = F.relu(self.enc(images - 0.5))
        d = F.relu(self.down(e))
        u = F.interpolate(d, size=e.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.head(F.relu(self.fuse(torch.cat([e, u], 1))))
        return logits, logits.argmax(dim=1).to(torch.uint8)


class TinyDetector(nn.Module):
    """Fixed K=6 boxes (input pixels) whose scores shift with the image mean; RT-DETR I/O."""

    input_names = ["images"]
    output_names = ["boxes", "scores", "labels"]

    def __init__(self, input_hw: Tuple[int, int] = (32, 64)) -> None:
        super().__init__()
        h, w = input_hw
        boxes = torch.tensor(
            [
                [0, 0, w / 2, h / 2],
                [w / 4, h / 4, w, h],
                [1, 2, 5, 6],
                [w / 2, 0, w, h / 2],
                [0, h / 2, w / 2, h],
                [2, 2, 4, 4],
            ],
            dtype=torch.float32,
        )
        self.register_buffer("boxes", boxes)
        self.register_buffer("base", torch.tensor([0.9, 0.8, 0.3, 0.7, 0.6, 0.2]))
        self.register_buffer("cls", torch.tensor([0, 1, 2, 5, 0, 6], dtype=torch.int64))

    def forward(self, images: torch.Tensor):
        n = images.shape[0]
        shift = images.mean(dim=(1, 2, 3)).unsqueeze(1) * 0.0
        scores = self.base.unsqueeze(0).expand(n, -1) + shift
        return (
            self.boxes.unsqueeze(0).expand(n, -1, -1) + shift.unsqueeze(-1),
            scores,
            self.cls.unsqueeze(0).expand(n, -1),
        )


class PatternLane(nn.Module):
    """Lane-contract model whose mask is a fixed class pattern (e.g. painted lines), any input."""

    def __init__(self, pattern: torch.Tensor, num_classes: int = 4) -> None:
        super().__init__()
        onehot = F.one_hot(pattern.long(), num_classes).permute(2, 0, 1).float() * 10.0
        self.register_buffer("logits", onehot.unsqueeze(0))

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits + images.mean() * 0.0
        return logits, logits.argmax(dim=1).to(torch.uint8)


def two_lines_pattern(h: int = 64, w: int = 64) -> torch.Tensor:
    """Drivable road with a solid line at x = 14..17 and a dashed one at x = 46..49."""
    p = torch.zeros(h, w, dtype=torch.uint8)
    p[h // 3 :, :] = 1
    p[:, 14:18] = 2
    for y0 in range(0, h, 16):
        p[y0 : y0 + 10, 46:50] = 3
    return p


def export(
    model: nn.Module,
    path: str,
    input_hw: Tuple[int, int],
    output_names: Sequence[str],
    dynamic_hw: bool = False,
) -> str:
    """Export ``model`` with input ``images`` [1,3,H,W] (dynamic batch; H/W too if asked)."""
    model.eval()
    example = torch.rand(1, 3, *input_hw, generator=torch.Generator().manual_seed(0))
    axes = {"images": {0: "N"}}
    if dynamic_hw:
        axes["images"].update({2: "H", 3: "W"})
    for n in output_names:
        axes[n] = {0: "N"}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            path,
            input_names=["images"],
            output_names=list(output_names),
            opset_version=17,
            dynamic_axes=axes,
            dynamo=False,
        )
    return path


def lane_onnx(path: str, input_hw: Tuple[int, int] = (32, 64), dynamic_hw: bool = False) -> str:
    return export(TinyLaneUNet(), path, input_hw, ["logits", "mask"], dynamic_hw)


def pattern_lane_onnx(path: str, h: int = 64, w: int = 64) -> str:
    return export(PatternLane(two_lines_pattern(h, w)), path, (h, w), ["logits", "mask"])


def detector_onnx(path: str, input_hw: Tuple[int, int] = (32, 64)) -> str:
    return export(TinyDetector(input_hw), path, input_hw, ["boxes", "scores", "labels"])
