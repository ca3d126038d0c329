"""A YolactEdge-MobileNetV2-class model, built from the papers' description, for timing only.

YOLACT (Bolya et al., ICCV 2019) and YolactEdge (Liu et al., ICRA 2021), MobileNetV2 variant, at
the 550x550 default, random weights (weights do not change the work of the graph):

- **backbone** MobileNetV2 (width 1.0; inverted residual blocks, ReLU6): C3 (stride 8, 32 ch),
  C4 (stride 16, 96 ch), C5 (stride 32, 320 ch);
- **FPN** 256 channels: 1x1 laterals, top-down nearest/bilinear upsample + add, 3x3 output convs
  on P3..P5; P6 and P7 by stride-2 3x3 convs (YOLACT's extra levels);
- **protonet** on P3: three 3x3 256 convs, 2x upsample, one 3x3 256 conv, 1x1 to k = 32
  prototypes (ReLU): 138x138 at 550;
- **prediction head** shared over P3..P7: a 3x3 256 "upfeature" conv, then 3x3 convs for the
  class scores (3 anchors x 81 COCO classes incl. background), boxes (3 x 4) and mask
  coefficients (3 x 32, tanh);
- **mask assembly** for the 100 highest-scoring anchors (an NMS-free stand-in for Fast NMS, so the
  graph, like this project's, ends in masks): ``sigmoid(coeffs . protos)``.

Not included: the training-only semantic segmentation head, box decoding and Fast NMS, crop.
YolactEdge's video mode (partial backbone + FeatFlowNet on non-keyframes) is not modelled: its
image-mode (keyframe) cost is what is timed.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _cbr(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (t), 3x3 depthwise (stride s), 1x1 linear project."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: List[nn.Module] = [] if expand == 1 else [_cbr(cin, hidden, 1)]
        layers += [
            _cbr(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(nn.Module):
    """``forward(x) -> [C3, C4, C5]`` (strides 8 / 16 / 32; 32 / 96 / 320 channels)."""

    # (expansion t, channels c, repeats n, stride s) of Sandler et al. 2018, Table 2
    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self.stem = _cbr(3, 32, 3, 2)
        stages: List[nn.Module] = []
        cin = 32
        for t, c, n, s in self.SETTINGS:
            blocks = [InvertedResidual(cin if i == 0 else c, c, s if i == 0 else 1, t)
                      for i in range(n)]  # fmt: skip
            stages.append(nn.Sequential(*blocks))
            cin = c
        self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> List[Tensor]:
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in (2, 4, 6):  # 32 ch @ /8, 96 ch @ /16, 320 ch @ /32
                outs.append(x)
        return outs


class FPN(nn.Module):
    """YOLACT's FPN: P3..P5 top-down, P6 / P7 by stride-2 convs; 256 channels."""

    def __init__(self, in_ch: Tuple[int, int, int] = (32, 96, 320), ch: int = 256) -> None:
        super().__init__()
        self.lat = nn.ModuleList(nn.Conv2d(c, ch, 1) for c in in_ch)
        self.out = nn.ModuleList(nn.Conv2d(ch, ch, 3, padding=1) for _ in in_ch)
        self.down = nn.ModuleList(nn.Conv2d(ch, ch, 3, 2, 1) for _ in range(2))

    def forward(self, feats: List[Tensor]) -> List[Tensor]:
        x = self.lat[2](feats[2])
        tops = [x]
        for i in (1, 0):
            x = F.interpolate(x, size=feats[i].shape[-2:], mode="bilinear", align_corners=False)
            x = x + self.lat[i](feats[i])
            tops.insert(0, x)
        outs = [F.relu(conv(t)) for conv, t in zip(self.out, tops)]
        p = outs[-1]
        for conv in self.down:
            p = conv(p)
            outs.append(p)
        return outs


class ProtoNet(nn.Module):
    """Three 3x3 convs on P3, 2x upsample, one 3x3 conv, 1x1 to ``k`` prototypes (ReLU)."""

    def __init__(self, ch: int = 256, k: int = 32) -> None:
        super().__init__()
        self.pre = nn.Sequential(*[nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU())
                                   for _ in range(3)])  # fmt: skip
        self.post = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(), nn.Conv2d(ch, k, 1))

    def forward(self, p3: Tensor) -> Tensor:
        x = F.interpolate(self.pre(p3), scale_factor=2.0, mode="bilinear", align_corners=False)
        return F.relu(self.post(x))


class PredictionHead(nn.Module):
    """Shared over levels: upfeature conv, then class / box / coefficient 3x3 convs."""

    def __init__(self, ch: int = 256, anchors: int = 3, classes: int = 81, k: int = 32) -> None:
        super().__init__()
        self.up = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU())
        self.cls = nn.Conv2d(ch, anchors * classes, 3, padding=1)
        self.box = nn.Conv2d(ch, anchors * 4, 3, padding=1)
        self.coef = nn.Conv2d(ch, anchors * k, 3, padding=1)
        self.classes, self.k = classes, k

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        x = self.up(x)
        b = x.shape[0]

        def flat(t: Tensor, d: int) -> Tensor:
            return t.permute(0, 2, 3, 1).reshape(b, -1, d)

        return (flat(self.cls(x), self.classes), flat(self.box(x), 4),
                torch.tanh(flat(self.coef(x), self.k)))  # fmt: skip


class YolactEdgeMBV2(nn.Module):
    """``forward(images [N,3,550,550]) -> boxes, scores, labels, masks`` (top ``top_k``)."""

    def __init__(self, classes: int = 81, k: int = 32, top_k: int = 100) -> None:
        super().__init__()
        self.backbone = MobileNetV2()
        self.fpn = FPN()
        self.protonet = ProtoNet(256, k)
        self.head = PredictionHead(256, 3, classes, k)
        self.top_k = top_k

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        levels = self.fpn(self.backbone(images))
        protos = self.protonet(levels[0])  # [N, k, 138, 138]
        outs = [self.head(p) for p in levels]
        cls = torch.cat([o[0] for o in outs], 1)
        box = torch.cat([o[1] for o in outs], 1)
        coef = torch.cat([o[2] for o in outs], 1)
        scores, labels = cls.softmax(-1)[..., 1:].max(-1)
        top, idx = torch.topk(scores, self.top_k, dim=1)
        c = torch.gather(coef, 1, idx[..., None].expand(-1, -1, coef.shape[-1]))
        b = torch.gather(box, 1, idx[..., None].expand(-1, -1, 4))
        n, k, h, w = protos.shape
        masks = torch.bmm(c, protos.reshape(n, k, h * w)).sigmoid().reshape(n, -1, h, w)
        return b, top, torch.gather(labels, 1, idx), masks
