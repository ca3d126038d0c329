"""``edge-perception det-track-eval`` end to end on a tiny video data set and a blob detector."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("trackeval")

CLASSES = ["car", "truck", "bus", "motorcycle", "bicycle", "pedestrian", "traffic_sign"]


def _blob_detector(path: Path) -> Path:
    """One box: the red light's centroid +- 6 px, score 0.9 x its mass / a 12x12 square; car."""
    import torch
    from torch import nn

    class Blob(nn.Module):
        def forward(self, images: torch.Tensor):
            h, w = images.shape[2:]
            red = images[:, 0] * (images[:, 1] < 0.3)
            mass = red.sum(dim=(1, 2)).unsqueeze(1)
            xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
            ys = torch.arange(h, dtype=torch.float32).view(1, h, 1)
            cx = (red * xs).sum(dim=(1, 2)).unsqueeze(1) / (mass + 1e-6)
            cy = (red * ys).sum(dim=(1, 2)).unsqueeze(1) / (mass + 1e-6)
            boxes = torch.stack([cx - 6, cy - 6, cx + 6, cy + 6], dim=-1)
            scores = torch.clamp(0.9 * mass / 144.0, 0.0, 1.0)
            return boxes, scores, torch.zeros_like(scores, dtype=torch.int64)

    torch.onnx.export(Blob().eval(), (torch.zeros(1, 3, 48, 96),), str(path),
                      input_names=["images"], output_names=["boxes", "scores", "labels"],
                      opset_version=17, dynamo=False)  # fmt: skip
    return path


def _video_dataset(root: Path) -> Path:
    """Two sequences x 6 frames, one red 12x12 car moving 4 px/frame (track id 5, then 9)."""
    images, anns = [], []
    for s, track in ((0, 5), (1, 9)):
        for t in range(6):
            img = np.zeros((48, 96, 3), np.uint8)
            x, y = 10 + 4 * t + 20 * s, 18
            img[y : y + 12, x : x + 12] = (255, 0, 0)
            rel = "%05d/%06d.jpg" % (s, t)
            path = root / "val" / "images" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(
                str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100]
            )
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": rel, "width": 96, "height": 48,
                           "sequence": "%05d" % s, "frame_index": t})  # fmt: skip
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 1,
                         "bbox": [x, y, 12, 12], "area": 144, "iscrowd": 0, "track_id": track,
                         "ignore": False})  # fmt: skip
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]
    (root / "val" / "annotations").mkdir(parents=True)
    (root / "val" / "annotations" / "coco.json").write_text(
        json.dumps({"images": images[::-1], "annotations": anns, "categories": cats})
    )
    (root / "manifest.json").write_text(json.dumps({"data_version": "t", "standard_val": False}))
    return root


def test_det_track_eval_reports_mota_idf1_hota(tmp_path):
    from edge_perception.cli import main
    from edge_perception.detection.track_eval import load_sequences

    data = _video_dataset(tmp_path / "data")
    seqs, names = load_sequences(str(data), "val")
    assert list(seqs) == ["00000", "00001"] and names == CLASSES
    assert [f[0].endswith("%06d.jpg" % t) for t, f in enumerate(seqs["00000"])] == [True] * 6
    model = _blob_detector(tmp_path / "blob.onnx")
    out_json, out_md = tmp_path / "trk.json", tmp_path / "trk.md"
    argv = ["det-track-eval", "--onnx", str(model), "--data", str(data), "--json", str(out_json),
            "--md", str(out_md), "--note", "a note"]  # fmt: skip
    assert main(argv) == 0
    res = json.loads(out_json.read_text())
    assert (res["sequences"], res["frames"]) == (2, 12)
    gt = res["ground_truth_tracker"]
    assert (gt["hota"], gt["mota"], gt["idf1"]) == (1.0, 1.0, 1.0)
    det = res["detector_tracker"]
    assert det["mota"] == 1.0 and det["idf1"] == 1.0 and det["id_switches"] == 0
    assert 0.5 < det["hota"] < 1.0  # boxes off by half a pixel: lower localisation
    md = out_md.read_text()
    assert "det-track-eval --onnx" in md and "a note" in md and "| car |" in md
    assert "--note" not in md.split("Command:")[1].splitlines()[0]
