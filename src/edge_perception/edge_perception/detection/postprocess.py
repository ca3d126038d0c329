"""Detection postprocess inside the graph: top-K over (query, class) pairs, no NMS.

Sigmoid scores of every (query, class) pair are ranked jointly and the ``K`` best kept, so one
query may yield several labels (as in RT-DETR); boxes are converted from normalised cxcywh to x1,
y1, x2, y2 in pixels of the network input image. Outputs follow CONTRACTS.md: ``boxes`` [N, K, 4]
float32, ``scores`` [N, K] float32, ``labels`` [N, K] int64 (0-based class index).
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from edge_perception.detection.box_ops import cxcywh_to_xyxy


class DetectionPostprocessor(nn.Module):
    """``forward(logits [N, Q, C], boxes [N, Q, 4], image_hw) -> (boxes, scores, labels)``."""

    def __init__(self, num_classes: int, num_top: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_top = num_top

    def forward(
        self, logits: Tensor, boxes: Tensor, image_hw: Tuple[int, int]
    ) -> Tuple[Tensor, Tensor, Tensor]:
        n, q, c = logits.shape
        k = min(self.num_top, q * c)
        scores, index = torch.topk(logits.sigmoid().flatten(1), k, dim=1)
        labels = index % c
        query = torch.div(index, c, rounding_mode="floor")
        sel = torch.gather(boxes, 1, query[..., None].expand(-1, -1, 4))
        h, w = image_hw
        scale = torch.tensor([w, h, w, h], dtype=sel.dtype, device=sel.device)
        return cxcywh_to_xyxy(sel) * scale, scores, labels.to(torch.int64)
