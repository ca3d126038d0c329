"""Pure conversions from raw CARLA sensor buffers and map data to the project's Frame labels.

No server and no ``carla`` import at module level: every function takes NumPy buffers (as
``np.frombuffer(image.raw_data, ...)`` yields them) or plain names, so they run and are tested
without a simulator. The CARLA conventions they implement (0.9.16):

- Cameras deliver **BGRA** bytes, ``H x W x 4``.
- Semantic segmentation: the R channel (byte 2) holds the ``carla.CityObjectLabel`` value
  (Cityscapes-like ids since 0.9.14: Roads 1, RoadLines 24, Car 14, Pedestrians 12, ...).
- Instance segmentation: R = semantic tag, and the object id is ``G + 256 * B`` (G = low byte).
- Optical flow: ``float32`` ``H x W x 2`` per pixel, the image-plane velocity of the surface from
  the previous frame to this one in normalised device units: ``[-2, 2]`` spans twice the image,
  so one unit is half the width (x) or half the height (y), and NDC y points *up*. The forward
  displacement in pixels is therefore ``(vx * W / 2, -vy * H / 2)``; the project stores the
  backward flow (``frame.py``), its negation: ``(-vx * W / 2, vy * H / 2)``.
- Lane markings: ``carla.LaneMarkingType`` names -> solid / dashed / double (``double`` counts as
  solid in the class mask, so only types that forbid crossing on one side become ``double``).
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from carla_bridge.classes import LANE_CLASSES, OBJECT_CLASSES
from carla_bridge.frame import CameraModel, LaneLineLabel, ObjectLabel

# carla.CityObjectLabel name -> value, as in carla 0.9.16 (checked against the client in tests).
CITY_OBJECT_LABELS: Dict[str, int] = {
    "NONE": 0, "Roads": 1, "Sidewalks": 2, "Buildings": 3, "Walls": 4, "Fences": 5, "Poles": 6,
    "TrafficLight": 7, "TrafficSigns": 8, "Vegetation": 9, "Terrain": 10, "Sky": 11,
    "Pedestrians": 12, "Rider": 13, "Car": 14, "Truck": 15, "Bus": 16, "Train": 17,
    "Motorcycle": 18, "Bicycle": 19, "Static": 20, "Dynamic": 21, "Other": 22, "Water": 23,
    "RoadLines": 24, "Ground": 25, "Bridge": 26, "RailTrack": 27, "GuardRail": 28,
}  # fmt: skip

# Semantic tag -> project object class. Riders are left out: their pixels belong to no box (a
# cyclist's box is the bicycle's).
DEFAULT_OBJECT_MAP: Dict[str, str] = {
    "Car": "car",
    "Truck": "truck",
    "Bus": "bus",
    "Motorcycle": "motorcycle",
    "Bicycle": "bicycle",
    "Pedestrians": "pedestrian",
    "TrafficSigns": "traffic_sign",
}

# Semantic tag -> lane class (only background/drivable: line pixels come from the map lines).
DEFAULT_LANE_MAP: Dict[str, str] = {"Roads": "drivable", "RoadLines": "drivable"}

# carla.LaneMarkingType name -> project lane type; None = not a painted line (no label).
LANE_MARKING_TYPES: Dict[str, Optional[str]] = {
    "Solid": "solid",
    "Broken": "dashed",
    "BottsDots": "dashed",
    "SolidSolid": "double",
    "SolidBroken": "double",
    "BrokenSolid": "double",
    "BrokenBroken": "dashed",  # both sides may cross
    "NONE": None,
    "Other": None,
    "Grass": None,
    "Curb": None,
}

# carla.LaneMarkingColor name -> project colour ("Standard" is white in CARLA).
LANE_MARKING_COLORS: Dict[str, str] = {
    "Standard": "white",
    "White": "white",
    "Yellow": "yellow",
}


def _name(value: object) -> str:
    """The enum name of a carla enum value, or the string itself."""
    if isinstance(value, str):
        return value
    name = getattr(value, "name", None)
    if name is None:
        raise TypeError("expected a carla enum value or its name, got %r" % (value,))
    return str(name)


def semantic_lut(
    mapping: Mapping[str, str], classes: Sequence[str], default: int = 0
) -> np.ndarray:
    """256-entry lookup table: CityObjectLabel value -> index into ``classes``.

    ``mapping`` maps CityObjectLabel names (e.g. ``"Roads"``) to names in ``classes``; unmapped
    tags get ``default``. Unknown names on either side raise ValueError listing the valid ones.
    """
    lut = np.full(256, default, dtype=np.int32)
    for tag, cls in mapping.items():
        if tag not in CITY_OBJECT_LABELS:
            raise ValueError(
                "unknown carla.CityObjectLabel %r in the class mapping; valid: %s"
                % (tag, ", ".join(sorted(CITY_OBJECT_LABELS)))
            )
        if cls not in classes:
            raise ValueError(
                "unknown project class %r for CityObjectLabel %r; valid: %s"
                % (cls, tag, ", ".join(classes))
            )
        lut[CITY_OBJECT_LABELS[tag]] = classes.index(cls)
    return lut


def bgra(raw: object, height: int, width: int) -> np.ndarray:
    """View a camera's raw BGRA bytes (``carla.Image.raw_data``) as ``uint8 H x W x 4``."""
    arr = np.frombuffer(raw, dtype=np.uint8)  # type: ignore[call-overload]
    if arr.size != height * width * 4:
        raise ValueError(
            "raw image has %d bytes, expected %d x %d x 4 = %d"
            % (arr.size, height, width, height * width * 4)
        )
    return arr.reshape(height, width, 4)


def bgra_to_rgb(image: np.ndarray) -> np.ndarray:
    """``uint8 H x W x 3`` RGB copy of a BGRA camera image."""
    return np.ascontiguousarray(image[:, :, 2::-1])


def semantic_tags(image: np.ndarray) -> np.ndarray:
    """``uint8 H x W`` CityObjectLabel values of a semantic/instance segmentation BGRA image."""
    return np.ascontiguousarray(image[:, :, 2])


def instance_ids(image: np.ndarray) -> np.ndarray:
    """``int32 H x W`` object ids (``G + 256 * B``) of an instance segmentation BGRA image."""
    return image[:, :, 1].astype(np.int32) + 256 * image[:, :, 0].astype(np.int32)


def drivable_mask(tags: np.ndarray, mapping: Mapping[str, str] = DEFAULT_LANE_MAP) -> np.ndarray:
    """``bool H x W``: pixels whose semantic tag maps to the ``drivable`` lane class."""
    lut = semantic_lut(mapping, LANE_CLASSES)
    return lut[tags] == LANE_CLASSES.index("drivable")


def objects_from_instances(
    image: np.ndarray,
    mapping: Mapping[str, str] = DEFAULT_OBJECT_MAP,
    min_pixels: int = 1,
    full_boxes: Optional[Mapping[int, Tuple[float, float, float, float]]] = None,
) -> List[ObjectLabel]:
    """Per-object labels from an instance segmentation BGRA image.

    One label per (semantic tag, instance id) pair whose tag is in ``mapping`` and that covers at
    least ``min_pixels`` pixels; ``track_id`` is the instance id (the actor id for actors in
    0.9.16, stable over a sequence). ``bbox`` is the tight box of the visible mask.
    ``full_boxes`` (instance id -> unclipped projected box ``x, y, w, h``, e.g. from
    ``project_box``) gives ``truncated`` and an estimate of ``visible_fraction`` (visible pixels
    over the in-image part of that box, capped at 1); without it both are ``1.0`` / ``0.0``.
    Labels are sorted by ``track_id``.
    """
    lut = semantic_lut(mapping, OBJECT_CLASSES, default=-1)
    tags = semantic_tags(image)
    ids = instance_ids(image)
    cls = lut[tags]
    keep = cls >= 0
    if not keep.any():
        return []
    h, w = tags.shape
    key = ids.astype(np.int64) * 256 + tags.astype(np.int64)
    out: List[ObjectLabel] = []
    for k in np.unique(key[keep]):
        mask = key == k
        n = int(mask.sum())
        if n < min_pixels:
            continue
        tid, tag = int(k // 256), int(k % 256)
        ys, xs = np.nonzero(mask)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        visible, truncated = 1.0, 0.0
        if full_boxes is not None and tid in full_boxes:
            fx, fy, fw, fh = full_boxes[tid]
            cw = max(0.0, min(fx + fw, w) - max(fx, 0.0))
            ch = max(0.0, min(fy + fh, h) - max(fy, 0.0))
            full = max(fw * fh, 1e-9)
            truncated = float(min(1.0, max(0.0, 1.0 - cw * ch / full)))
            visible = float(min(1.0, n / max(cw * ch, 1.0)))
        out.append(
            ObjectLabel(
                track_id=tid,
                category=OBJECT_CLASSES[int(lut[tag])],
                bbox=(float(x0), float(y0), float(x1 - x0), float(y1 - y0)),
                mask=mask,
                visible_fraction=visible,
                truncated=truncated,
            )
        )
    out.sort(key=lambda o: o.track_id)
    return out


def backward_flow(raw: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Backward flow in pixels and its validity from a CARLA optical-flow buffer.

    ``raw`` is ``float32 H x W x 2`` (``np.frombuffer(image.raw_data, np.float32)`` reshaped).
    Returns ``flow`` (``float32 H x W x 2``, see the module docstring for the convention) and
    ``valid`` (``bool H x W``): CARLA has no occlusion information, so a pixel is valid when its
    previous position lies inside the image and the value is finite.
    """
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim != 3 or raw.shape[2] != 2:
        raise ValueError("optical flow must be H x W x 2, got shape %s" % (raw.shape,))
    h, w = raw.shape[:2]
    flow = np.empty_like(raw)
    flow[..., 0] = -raw[..., 0] * (w / 2.0)
    flow[..., 1] = raw[..., 1] * (h / 2.0)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    px, py = xs + flow[..., 0], ys + flow[..., 1]
    valid = np.isfinite(flow).all(axis=2) & (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    flow[~np.isfinite(flow)] = 0.0
    return flow, valid


def lane_type(marking_type: object) -> Optional[str]:
    """Project lane type of a ``carla.LaneMarkingType`` (or its name); None for no painted line."""
    name = _name(marking_type)
    if name not in LANE_MARKING_TYPES:
        raise ValueError(
            "unknown carla.LaneMarkingType %r; known: %s" % (name, ", ".join(LANE_MARKING_TYPES))
        )
    return LANE_MARKING_TYPES[name]


def lane_color(marking_color: object) -> str:
    """Project lane colour of a ``carla.LaneMarkingColor``; colours other than yellow -> white."""
    return LANE_MARKING_COLORS.get(_name(marking_color), "white")


def camera_model(width: int, height: int, fov_deg: float) -> CameraModel:
    """Pinhole intrinsics of a CARLA camera (square pixels, principal point at the centre)."""
    f = width / (2.0 * math.tan(math.radians(fov_deg) / 2.0))
    return CameraModel(width=width, height=height, fx=f, fy=f, cx=width / 2.0, cy=height / 2.0)


# Camera axes (x right, y down, z forward) expressed in UE's (x forward, y right, z up).
_CAM_TO_UE = np.array(
    [[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


def camera_pose(ue_matrix: Sequence[Sequence[float]]) -> np.ndarray:
    """4x4 camera-to-world pose (camera axes x right, y down, z forward) of a CARLA sensor.

    ``ue_matrix`` is ``carla.Transform.get_matrix()`` of the sensor (UE local -> world).
    """
    m = np.asarray(ue_matrix, dtype=np.float64)
    if m.shape != (4, 4):
        raise ValueError("expected a 4x4 transform matrix, got shape %s" % (m.shape,))
    return m @ _CAM_TO_UE


def project(points: np.ndarray, pose: np.ndarray, camera: CameraModel) -> Tuple[np.ndarray, ...]:
    """Project world points ``N x 3`` through a camera pose; returns ``(uv N x 2, depth N)``."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    world_to_cam = np.linalg.inv(pose)
    pc = pts @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
    z = pc[:, 2]
    safe = np.where(np.abs(z) < 1e-9, 1e-9, z)
    u = camera.fx * pc[:, 0] / safe + camera.cx
    v = camera.fy * pc[:, 1] / safe + camera.cy
    return np.stack([u, v], axis=1), z


def project_box(
    corners: np.ndarray, pose: np.ndarray, camera: CameraModel
) -> Optional[Tuple[float, float, float, float]]:
    """Unclipped image box ``(x, y, w, h)`` of 3-D corners (``N x 3`` world); None if behind."""
    uv, z = project(corners, pose, camera)
    if (z <= 0.1).any():
        return None
    x0, y0 = uv.min(axis=0)
    x1, y1 = uv.max(axis=0)
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


def lane_lines_in_image(
    lines: Iterable[Tuple[str, str, np.ndarray]],
    pose: np.ndarray,
    camera: CameraModel,
    min_depth: float = 1.0,
) -> List[LaneLineLabel]:
    """Project world lane-marking polylines into the image as LaneLineLabels.

    ``lines`` yields ``(type, color, points N x 3 world)``, points ordered near to far. Points
    closer than ``min_depth`` metres or behind the camera are dropped; lines left with fewer than
    two points, or entirely outside the image, are dropped. Ids are 1, 2, ... in input order
    of the kept lines; points are ordered from the image bottom upwards.
    """
    out: List[LaneLineLabel] = []
    for ltype, color, pts in lines:
        uv, z = project(pts, pose, camera)
        uv = uv[z > min_depth]
        if len(uv) < 2:
            continue
        inside = (
            (uv[:, 0] >= 0) & (uv[:, 0] < camera.width) & (uv[:, 1] >= 0)
            & (uv[:, 1] < camera.height)
        )  # fmt: skip
        if not inside.any():
            continue
        if uv[0, 1] < uv[-1, 1]:
            uv = uv[::-1]
        out.append(LaneLineLabel(len(out) + 1, ltype, color, uv.astype(np.float32)))
    return out


def lane_instance_mask(
    tags: np.ndarray, lines: Sequence[LaneLineLabel], tolerance_px: int = 6
) -> np.ndarray:
    """``uint16 H x W`` line ids: RoadLines pixels within ``tolerance_px`` of a projected line.

    Where lines overlap, the later line wins; painted pixels far from every map line stay 0.
    """
    h, w = tags.shape
    drawn = np.zeros((h, w), dtype=np.uint16)
    for line in lines:
        pts = np.round(line.points).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(drawn, [pts], False, int(line.line_id), thickness=2 * tolerance_px + 1)
    drawn[tags != CITY_OBJECT_LABELS["RoadLines"]] = 0
    return drawn
