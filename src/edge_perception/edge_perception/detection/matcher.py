"""Hungarian matching between predictions and ground truth (one-to-one, per image).

Cost of assigning prediction ``q`` to object ``j`` (class ``c_j``)::

    w_class * focal(q, c_j) + w_bbox * |box_q - box_j|_1 + w_giou * (-GIoU(box_q, box_j))

with the focal classification cost ``alpha (1-p)^gamma (-log p) - (1-alpha) p^gamma (-log(1-p))``
(``p`` = sigmoid probability of ``c_j``): the difference between the focal loss of calling the
query positive and negative for that class. The optimum is found by
``scipy.optimize.linear_sum_assignment``.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from edge_perception.detection.box_ops import cxcywh_to_xyxy, generalized_box_iou


class HungarianMatcher:
    """Callable: ``matcher(logits [B, Q, C], boxes [B, Q, 4] cxcywh, targets) -> indices``.

    ``indices`` is a list (one per image) of ``(pred_idx, gt_idx)`` long tensors, sorted by
    ``pred_idx``.
    """

    def __init__(
        self,
        cost_class: float = 2.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        alpha: float = 0.25,
        gamma: float = 2.0,
    ) -> None:
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou
        self.alpha, self.gamma = alpha, gamma

    def cost_matrices(
        self, logits: Tensor, boxes: Tensor, targets: List[Dict[str, Tensor]]
    ) -> List[Tensor]:
        """Per image the [Q, n_i] cost matrix (exposed for tests and diagnostics)."""
        out = []
        for lg, bx, t in zip(logits, boxes, targets):
            labels, tboxes = t["labels"], t["boxes"]
            if labels.numel() == 0:
                out.append(lg.new_zeros(lg.shape[0], 0))
                continue
            p = lg.sigmoid()[:, labels]
            pos = self.alpha * (1 - p) ** self.gamma * -(p + 1e-8).log()
            neg = (1 - self.alpha) * p**self.gamma * -(1 - p + 1e-8).log()
            c_cls = pos - neg
            c_l1 = torch.cdist(bx, tboxes, p=1)
            c_giou = -generalized_box_iou(cxcywh_to_xyxy(bx), cxcywh_to_xyxy(tboxes))
            out.append(self.cost_class * c_cls + self.cost_bbox * c_l1 + self.cost_giou * c_giou)
        return out

    @torch.no_grad()
    def __call__(
        self, logits: Tensor, boxes: Tensor, targets: List[Dict[str, Tensor]]
    ) -> List[Tuple[Tensor, Tensor]]:
        if logits.shape[0] != len(targets):
            raise ValueError(f"{logits.shape[0]} predictions for {len(targets)} targets")
        indices = []
        for c in self.cost_matrices(logits.float(), boxes.float(), targets):
            rows, cols = linear_sum_assignment(c.cpu().numpy())
            indices.append(
                (torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long))
            )
        return indices
