"""A tiny VIS data set on disk (carla_bridge layout): moving rectangles with exact masks, track
ids and backward flow, so flow chaining and warping have known answers."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

H, W = 64, 96
# (class, colour, x, y, w, h, vx, vy) per track; positions at frame 0, pixels per frame
TRACKS = [
    (0, (220, 40, 40), 8, 10, 24, 16, 3, 0),
    (1, (40, 200, 60), 60, 30, 20, 22, -2, 1),
]


def write_vis_dataset(root: Path, sequences: int = 2, frames: int = 4) -> Path:
    cats = [
        {"id": i + 1, "name": n}
        for i, n in enumerate(
            ["car", "truck", "bus", "motorcycle", "bicycle", "pedestrian", "traffic_sign"]
        )
    ]
    for split in ("train", "val"):
        images, anns = [], []
        for s in range(sequences):
            seq = f"{s:05d}"
            for f in range(frames):
                img = np.full((H, W, 3), 100, np.uint8)
                flow = np.zeros((H, W, 2), np.float32)
                iid = len(images) + 1
                for k, (c, col, x, y, w, h, vx, vy) in enumerate(TRACKS):
                    x0, y0 = x + vx * f + 4 * s, y + vy * f
                    img[y0 : y0 + h, x0 : x0 + w] = col
                    img[y0 + 2 : y0 + 6, x0 + 2 : x0 + 6] = 255  # texture for the flow
                    if f > 0:
                        flow[y0 : y0 + h, x0 : x0 + w] = (-vx, -vy)
                    m = np.zeros((H, W), np.uint8)
                    m[y0 : y0 + h, x0 : x0 + w] = 1
                    rle = mask_utils.encode(np.asfortranarray(m))
                    rle["counts"] = rle["counts"].decode("ascii")
                    anns.append(
                        {
                            "id": len(anns) + 1,
                            "image_id": iid,
                            "category_id": c + 1,
                            "bbox": [x0, y0, w, h],
                            "area": w * h,
                            "iscrowd": 0,
                            "ignore": False,
                            "segmentation": rle,
                            "track_id": 1 + k + 10 * s,
                        }
                    )
                rel = f"{seq}/{f:06d}.jpg"
                p = root / split / "images" / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
                fp = root / split / "flow" / seq / f"{f:06d}.npz"
                fp.parent.mkdir(parents=True, exist_ok=True)
                np.savez(fp, flow=flow.astype(np.float16), valid=np.ones((H, W), bool))
                images.append(
                    {
                        "id": iid,
                        "file_name": rel,
                        "width": W,
                        "height": H,
                        "video_id": s + 1,
                        "sequence": seq,
                        "frame_index": f,
                    }
                )
        d = root / split / "annotations"
        d.mkdir(parents=True, exist_ok=True)
        (d / "coco.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": cats})
        )
    (root / "manifest.json").write_text(json.dumps({"data_version": "vis-test"}))
    return root


@pytest.fixture
def vis_data(tmp_path):
    return write_vis_dataset(tmp_path / "data")


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(n)
