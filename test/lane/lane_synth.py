"""A tiny lane data set written in the carla_bridge layout (docs/CONTRACTS.md) for the lane tests.

Each frame: sky, grass, a road trapezoid (drivable) and three painted lines - a solid white left
edge, a dashed white centre line and a solid yellow right edge - with per-frame jitter of the
vanishing point, road width, colours and noise. Written as real JPEG + palette PNG files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Tuple

import cv2
import numpy as np
from PIL import Image

CLASSES = ("background", "drivable", "lane_solid", "lane_dashed")
PALETTE = [0, 0, 0, 128, 64, 128, 255, 255, 255, 255, 200, 0]


def draw_frame(rng: np.random.Generator, h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    """RGB uint8 image and uint8 class mask of one synthetic road frame."""
    img = np.zeros((h, w, 3), np.uint8)
    cls = np.zeros((h, w), np.uint8)
    horizon = int(h * rng.uniform(0.35, 0.5))
    img[:horizon] = rng.integers(150, 230, 3)
    img[horizon:] = rng.integers(40, 110, 3) * np.array([0.6, 1.0, 0.5])
    vx = w / 2 + rng.uniform(-0.15, 0.15) * w
    half = w * rng.uniform(0.55, 0.8)
    road = np.array([[vx - 2, horizon], [vx + 2, horizon], [vx + half, h], [vx - half, h]])
    road_mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(road_mask, [road.astype(np.int32)], 1)
    grey = int(rng.integers(60, 110))
    img[road_mask > 0] = grey
    cls[road_mask > 0] = 1
    thick = max(2, w // 48)
    for frac, kind, colour in (
        (-0.8, 2, (240, 240, 240)),
        (0.0, 3, (235, 235, 235)),
        (0.8, 2, (230, 190, 30)),
    ):
        x0, y0, x1, y1 = vx, horizon, vx + frac * half, h
        n = 12
        for k in range(n):
            if kind == 3 and k % 2:
                continue  # dashes
            t0, t1 = k / n, (k + 1) / n
            p0 = (int(x0 + (x1 - x0) * t0), int(y0 + (y1 - y0) * t0))
            p1 = (int(x0 + (x1 - x0) * t1), int(y0 + (y1 - y0) * t1))
            tk = max(1, int(thick * (0.3 + t1)))
            cv2.line(img, p0, p1, colour, tk)
            cv2.line(cls, p0, p1, kind, tk)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8), cls


def write_dataset(
    root: Path, frames: Tuple[int, int] = (8, 4), size: Tuple[int, int] = (96, 160), seed: int = 0
) -> Path:
    """Write train/val splits (``frames`` each) of ``size`` (H, W) frames under ``root``."""
    rng = np.random.default_rng(seed)
    splits = {}
    for split, n in zip(("train", "val"), frames):
        for i in range(n):
            seq = f"seq{i // 4:03d}"
            img, cls = draw_frame(rng, *size)
            ip = root / split / "images" / seq / f"{i % 4:06d}.jpg"
            lp = root / split / "lane_class" / seq / f"{i % 4:06d}.png"
            ip.parent.mkdir(parents=True, exist_ok=True)
            lp.parent.mkdir(parents=True, exist_ok=True)
            bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(ip), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
            png = Image.fromarray(cls, mode="P")
            png.putpalette(PALETTE)
            png.save(lp)
        splits[split] = {"sequences": (n + 3) // 4, "frames": n}
    manifest = {
        "seed": seed,
        "data_version": "test-tiny",
        "classes": {"lane": CLASSES},
        "splits": splits,
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root
