"""Label drawing for people: drivable overlay, lane lines by type, boxes with class + track id."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence

import cv2
import numpy as np

from carla_bridge.classes import LANE_CLASSES, OBJECT_CLASSES

LINE_COLORS = {"solid": (0, 230, 0), "dashed": (0, 200, 255), "double": (255, 60, 60)}  # RGB
CLASS_COLORS = (
    (255, 80, 80),
    (255, 160, 0),
    (255, 230, 0),
    (200, 0, 255),
    (0, 255, 200),
    (60, 140, 255),
    (255, 255, 255),
)


def draw_frame(
    image: np.ndarray,
    lane_class: np.ndarray,
    annotations: Sequence[Dict[str, Any]],
    lines: Sequence[Dict[str, Any]],
) -> np.ndarray:
    """RGB image with the labels drawn: drivable area tinted, lane polylines coloured by type
    (solid green, dashed cyan, double red; yellow paint drawn thicker), object boxes coloured by
    class and captioned ``class #track_id``."""
    out = image.astype(np.float32)
    drv = lane_class == LANE_CLASSES.index("drivable")
    out[drv] = out[drv] * 0.6 + np.array((160, 60, 200), np.float32) * 0.4
    out = np.clip(out, 0, 255).astype(np.uint8)
    scale = max(image.shape[1] / 640.0, 0.4)
    for ln in lines:
        pts = np.round(np.asarray(ln["points"], np.float64)).astype(np.int32)
        if len(pts) < 2:
            continue
        thick = max(1, int(round((3 if ln["color"] == "yellow" else 2) * scale)))
        cv2.polylines(out, [pts.reshape(-1, 1, 2)], False, LINE_COLORS[ln["type"]], thick)
    for ann in annotations:
        x, y, w, h = ann["bbox"]
        cid = int(ann["category_id"]) - 1
        col = CLASS_COLORS[cid % len(CLASS_COLORS)]
        p0 = (int(round(x)), int(round(y)))
        p1 = (int(round(x + w - 1)), int(round(y + h - 1)))
        cv2.rectangle(out, p0, p1, col, 1)
        text = f"{OBJECT_CLASSES[cid]} #{ann.get('track_id', '?')}"
        fs = 0.33 * scale
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
        ty = max(p0[1] - 2, th + 1)
        cv2.rectangle(out, (p0[0], ty - th - 1), (p0[0] + tw, ty + 1), (0, 0, 0), -1)
        cv2.putText(out, text, (p0[0], ty), cv2.FONT_HERSHEY_SIMPLEX, fs, col, 1, cv2.LINE_AA)
    return out


def sample_strip(root: str, out: str, split: str = "train", n: int = 8, cols: int = 2) -> str:
    """Draw ``n`` frames spread evenly over a split into one PNG grid at ``out`` (atomic write)."""
    from carla_bridge.dataset.io import atomic_write_bytes
    from carla_bridge.dataset.reader import iter_frames, load_coco

    if n < 1 or cols < 1:
        raise ValueError("--n and --cols must be >= 1")
    images = load_coco(root, split)["images"]
    if not images:
        raise ValueError(f"split {split!r} of {root} has no frames; generate more sequences")
    pick = set(np.linspace(0, len(images) - 1, min(n, len(images))).round().astype(int).tolist())
    wanted = {images[i]["file_name"] for i in pick}
    tiles: List[np.ndarray] = []
    for fr in iter_frames(root, split, sequences=sorted({f.split("/")[0] for f in wanted})):
        if fr.file_name not in wanted:
            continue
        tile = draw_frame(fr.image, fr.lane_class, fr.annotations, fr.lines)
        cv2.putText(
            tile,
            fr.file_name,
            (4, 14),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
        tiles.append(tile)
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + cols - 1) // cols
    grid = np.zeros((rows * h, cols * w, 3), np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[r * h : r * h + h, c * w : c * w + w] = cv2.resize(t, (w, h))
    ok, buf = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    atomic_write_bytes(out, buf.tobytes())
    return os.path.abspath(out)
