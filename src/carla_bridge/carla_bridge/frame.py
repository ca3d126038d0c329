"""The one frame model both backends (CARLA and the procedural generator) produce.

Conventions (all image quantities in pixels of the RGB image):
- image: ``uint8`` H x W x 3, **RGB** order.
- boxes: ``(x, y, w, h)`` float, COCO convention (top-left corner, width, height), the tight box of
  the *visible* instance mask.
- masks: ``bool`` H x W, the visible pixels of the instance after depth-ordered occlusion.
- flow: ``float32`` H x W x 2, **backward** flow: for a pixel ``p`` of this frame, ``p + flow[p]``
  is where the same surface point was in the previous frame (zeros for a sequence's first frame);
  ``flow_valid`` is False where that point was not visible in the previous frame.
- pose: 4 x 4 camera-to-world transform (x right, y down, z forward camera axes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import cv2
import numpy as np

from carla_bridge.classes import LANE_CLASSES

LANE_TYPES = ("solid", "dashed", "double")
LANE_COLORS = ("white", "yellow")


@dataclass(frozen=True)
class CameraModel:
    """Pinhole intrinsics of the RGB camera."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - conventional name
        return np.array(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=np.float64
        )


@dataclass
class ObjectLabel:
    """One object instance in one frame."""

    track_id: int  # persistent across the frames of a sequence
    category: str  # name from carla_bridge.classes.OBJECT_CLASSES
    bbox: Tuple[float, float, float, float]  # (x, y, w, h), tight box of ``mask``
    mask: np.ndarray  # bool H x W, visible pixels
    visible_fraction: float  # visible pixels / pixels of the unoccluded, untruncated object
    truncated: float  # fraction of the object outside the image, in [0, 1]


@dataclass
class LaneLineLabel:
    """One painted lane line (a double line is one label of type ``double``)."""

    line_id: int  # value of this line in ``Frame.lane_instance_mask``
    type: str  # one of LANE_TYPES
    color: str  # one of LANE_COLORS
    points: np.ndarray  # float N x 2 polyline (x, y), ordered from image bottom to top


@dataclass
class Frame:
    """RGB image, camera, time and every label of one rendered or simulated frame."""

    sequence: str
    index: int  # frame number inside the sequence, from 0
    timestamp: float  # seconds since the sequence start
    image: np.ndarray
    camera: CameraModel
    pose: np.ndarray
    lane_instance_mask: np.ndarray  # uint16 H x W: 0 = no line, k = LaneLineLabel.line_id
    lane_lines: List[LaneLineLabel]
    drivable_mask: np.ndarray  # bool H x W
    objects: List[ObjectLabel] = field(default_factory=list)
    flow: Optional[np.ndarray] = None
    flow_valid: Optional[np.ndarray] = None
    meta: dict = field(default_factory=dict)  # weather, time of day, seed, ...

    def class_mask(self) -> np.ndarray:
        """uint8 H x W lane-segmentation target with indices into ``LANE_CLASSES``.

        Lines are painted over the drivable area; ``double`` lines count as solid (a double line
        forbids crossing exactly like a solid one).
        """
        out = self.drivable_mask.astype(np.uint8)
        out *= np.uint8(LANE_CLASSES.index("drivable"))
        if not self.lane_lines:
            return out
        ids = self.lane_instance_mask
        top = max(int(ids.max()), max(ln.line_id for ln in self.lane_lines))
        lut = np.zeros(max(top + 1, 256), np.uint8)
        for line in self.lane_lines:
            name = "lane_dashed" if line.type == "dashed" else "lane_solid"
            lut[line.line_id] = LANE_CLASSES.index(name)
        if top < 256:  # the usual case: one 8-bit table lookup instead of take on 16-bit ids
            cls = cv2.LUT(ids.astype(np.uint8), lut)
            cv2.copyTo(cls, cls, out)  # out = cls where cls > 0
            return out
        cls = np.take(lut, ids)
        np.copyto(out, cls, where=cls > 0)
        return out
