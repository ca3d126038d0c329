"""Fixtures for the detection tests: a tiny real on-disk data set in the carla_bridge layout."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 230)]  # class 0, 1, 2 (car, truck, bus)


def write_dataset(root: Path, n_train: int = 6, n_val: int = 4, size=(96, 128), seed: int = 0):
    """JPEG frames with 1-3 filled rectangles each (colour = class) + COCO json per split."""
    rng = np.random.default_rng(seed)
    h, w = size
    for split, n in (("train", n_train), ("val", n_val)):
        images, anns = [], []
        for i in range(n):
            img = np.full((h, w, 3), 90, dtype=np.uint8)
            rel = f"seq000/{i:06d}.jpg"
            for _ in range(int(rng.integers(1, 4))):
                c = int(rng.integers(0, 3))
                bw, bh = int(rng.integers(16, 48)), int(rng.integers(16, 40))
                x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                img[y : y + bh, x : x + bw] = COLOURS[c]
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": i + 1,
                        "category_id": c + 1,
                        "bbox": [x, y, bw, bh],
                        "area": bw * bh,
                        "iscrowd": 0,
                    }
                )
            path = root / split / "images" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(
                str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
            )
            images.append({"id": i + 1, "file_name": rel, "width": w, "height": h})
        cats = [
            {"id": k + 1, "name": n}
            for k, n in enumerate(
                ["car", "truck", "bus", "motorcycle", "bicycle", "pedestrian", "traffic_sign"]
            )
        ]
        ann_dir = root / split / "annotations"
        ann_dir.mkdir(parents=True, exist_ok=True)
        (ann_dir / "coco.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": cats})
        )
    (root / "manifest.json").write_text(json.dumps({"data_version": "test-0", "seed": seed}))
    return root


@pytest.fixture
def det_dataset(tmp_path):
    return write_dataset(tmp_path / "data")
