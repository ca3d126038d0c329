"""ROS-free result records produced by the pipelines and read back from messages.

:mod:`edge_perception.ros.convert` turns these into messages (``*_to_msg``) and back
(``msg_to_*``). Python 3.8 compatible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np


@dataclass
class Detections:
    """Boxes in camera pixels (x1, y1, x2, y2), scores, 0-based labels, string ids.

    ``ids`` are ``Detection2D.id``: the track id as a string, or ``""`` without tracking;
    ``track_ids`` the same as integers (-1 = none), or None when the source has no tracker.
    """

    boxes_xyxy: np.ndarray  # (N, 4) float32
    scores: np.ndarray  # (N,) float32
    labels: np.ndarray  # (N,) int64
    ids: List[str] = field(default_factory=list)
    class_names: List[str] = field(default_factory=list)
    track_ids: Optional[np.ndarray] = None  # (N,) int64

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@dataclass
class Instances:
    """Instance masks (COCO RLE, optionally decoded) with boxes, scores, labels, tracks."""

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    track_ids: np.ndarray
    ids: List[str]
    rles: List[dict]
    masks: Optional[np.ndarray] = None  # (N, H, W) bool when decoded
    visible_fraction: Optional[np.ndarray] = None
    keyframe: bool = True

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@dataclass
class LaneLineResult:
    """One lane line: Kx2 (x, y) pixel points ordered near (image bottom) to far."""

    points: np.ndarray
    type: str = "unknown"  # unknown / solid / dashed / double
    color: str = "unknown"  # unknown / white / yellow
    confidence: float = 1.0
    id: int = 0


@dataclass
class LaneResult:
    """Lane segmentation of one image: HxW uint8 class mask (camera pixels) and lines."""

    class_mask: Optional[np.ndarray]
    class_names: List[str]
    lines: List[LaneLineResult] = field(default_factory=list)
    class_mask_topic: str = ""
    extra: Dict[str, np.ndarray] = field(default_factory=dict)
