"""Fixtures of the system tests: tiny seeded models with the project's ONNX I/O contracts.

The demo itself insists on the bundled models in models/; these stand-ins (a few KB, exported in
a second) let the system tests exercise the whole ROS pipeline whether or not the trained models
have been bundled yet.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CLASSES = ["car", "truck", "bus", "motorcycle", "bicycle", "pedestrian", "traffic_sign"]
LANE_CLASSES = ["background", "drivable", "lane_solid", "lane_dashed"]
INPUT_HW = (64, 96)


def export_tiny_models(folder: Path) -> dict:
    """Write ``lane_tiny.onnx`` and ``det_tiny.onnx`` (+ manifests) into ``folder``."""
    import torch
    from torch import nn

    class TinyLane(nn.Module):
        """``images`` -> ``logits`` [N,4,H,W] (a seeded 1x1 conv) and ``mask`` (arg-max, uint8)."""

        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.head = nn.Conv2d(3, len(LANE_CLASSES), 1)

        def forward(self, images):
            logits = self.head(images)
            return logits, logits.argmax(1).to(torch.uint8)

    class TinyDet(nn.Module):
        """Three fixed boxes; scores scale with the image brightness; labels car/truck/bus."""

        def __init__(self) -> None:
            super().__init__()
            boxes = [[8.0, 30.0, 40.0, 60.0], [50.0, 28.0, 90.0, 62.0], [2.0, 2.0, 12.0, 12.0]]
            self.register_buffer("boxes", torch.tensor(boxes))
            self.register_buffer("base", torch.tensor([2.0, 1.5, 0.5]))
            self.register_buffer("labels", torch.tensor([0, 1, 2], dtype=torch.int64))

        def forward(self, images):
            n = images.shape[0]
            scores = torch.clamp(
                self.base.unsqueeze(0) * images.mean(dim=(1, 2, 3)).unsqueeze(1), 0, 1
            )
            return self.boxes.expand(n, 3, 4), scores, self.labels.expand(n, 3)

    out = {}
    example = torch.zeros(1, 3, *INPUT_HW)
    for name, model, outputs, manifest in (
        (
            "lane_tiny",
            TinyLane(),
            ["logits", "mask"],
            {"task": "lane", "class_names": LANE_CLASSES},
        ),
        (
            "det_tiny",
            TinyDet(),
            ["boxes", "scores", "labels"],
            {"task": "detection", "class_names": CLASSES, "decoder_layers": 3},
        ),
    ):
        path = folder / (name + ".onnx")
        torch.onnx.export(
            model.eval(),
            (example,),
            str(path),
            input_names=["images"],
            output_names=outputs,
            opset_version=17,
            dynamo=False,
        )
        path.with_suffix(".json").write_text(json.dumps(manifest))
        out[name] = path
    return out


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict:
    """``{"lane_tiny": Path, "det_tiny": Path}`` exported once per test session."""
    return export_tiny_models(tmp_path_factory.mktemp("tiny_models"))
