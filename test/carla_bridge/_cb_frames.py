"""Tiny hand-made Frames for the carla_bridge ROS / bag tests (seeded, a few pixels)."""

from __future__ import annotations

from typing import List

import numpy as np
from carla_bridge.frame import CameraModel, Frame, LaneLineLabel, ObjectLabel

H, W = 24, 32


def tiny_frames(n: int = 3, seed: int = 0, fps: float = 10.0) -> List[Frame]:
    """``n`` frames: random image, a road in the lower half, one solid line, one moving car."""
    rng = np.random.default_rng(seed)
    cam = CameraModel(W, H, 20.0, 20.0, W / 2, H / 2)
    out = []
    for i in range(n):
        drivable = np.zeros((H, W), bool)
        drivable[H // 2 :] = True
        lane = np.zeros((H, W), np.uint16)
        lane[H // 2 :, 8:10] = 1
        mask = np.zeros((H, W), bool)
        mask[14:20, 12 + i : 20 + i] = True
        car = ObjectLabel(7, "car", (12.0 + i, 14.0, 8.0, 6.0), mask, 0.9, 0.0)
        line = LaneLineLabel(1, "solid", "white", np.array([[9.0, 23.0], [9.0, 12.0]], np.float32))
        out.append(
            Frame(
                "seq_tiny",
                i,
                i / fps,
                rng.integers(0, 255, (H, W, 3), dtype=np.uint8),
                cam,
                np.eye(4),
                lane,
                [line],
                drivable,
                [car],
            )  # fmt: skip
        )
    return out
