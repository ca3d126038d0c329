"""A tiny VIS model (random weights, seeded) exported to the three ONNX graphs, for the runtime
and node tests (imported with ``sys.path`` pointing here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Tuple

CLASSES = ["car", "truck", "bus", "motorcycle", "bicycle", "pedestrian", "traffic_sign"]


def export_tiny_vis(folder: Path, size: Tuple[int, int] = (64, 96), seed: int = 0) -> Path:
    """``<folder>/vis_tiny_{key,nonkey,head}.onnx`` (+ manifest); returns the key graph's path.

    Random weights except the class biases (every query scores about 0.9 as a car, so there is
    something to track), the box sizes (larger) and the mask layers (probability ~1 inside each
    box: a filled box)."""
    import torch
    from edge_perception.vis.export import export_vis
    from edge_perception.vis.model import build_vis

    torch.manual_seed(seed)
    model = build_vis("tiny").eval()
    with torch.no_grad():
        for head in model.det.decoder.modules():
            if isinstance(head, torch.nn.Linear) and head.out_features == len(CLASSES):
                head.bias.fill_(-4.0)
                head.bias[0] = 2.0  # every query a fairly confident "car"
        for name, lin in model.det.decoder.named_modules():
            if name.startswith("bbox_heads") and getattr(lin, "out_features", 0) == 4:
                lin.bias[2:] += 2.0  # larger boxes (several mask cells each)
        if model.propagator is not None:  # the non-key decoder starts as the last layer
            model.propagator.init_from(model.det.decoder)
        # masks = the boxes: constant prototypes, coefficients all ~1 (sigmoid(8) inside the box)
        model.protonet.out.weight.zero_()
        model.protonet.out.bias.fill_(1.0)
        model.query_heads.coeff[-1].weight.zero_()
        model.query_heads.coeff[-1].bias.fill_(3.0)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = folder / "vis_tiny"
    export_vis(model, str(prefix), size, parity=False, seed=seed)
    manifest = {"task": "vis", "class_names": CLASSES, "input_size": list(size)}
    (folder / "vis_tiny_key.json").write_text(json.dumps(manifest))
    return folder / "vis_tiny_key.onnx"
