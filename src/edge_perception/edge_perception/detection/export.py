"""Export a trained detector to ONNX with a parity check (``edge-perception det-export``).

    edge-perception det-export --checkpoint runs/det/best.pt --out models/det_small.onnx \\
        [--input-size 320 320] [--eval-layers 2] [--opset 17]

The graph follows docs/CONTRACTS.md: input ``images`` float32 [N, 3, H, W] RGB in [0, 1] (dynamic
N, fixed H, W), outputs ``boxes`` [N, K, 4] (x1, y1, x2, y2 input pixels), ``scores`` [N, K],
``labels`` [N, K] int64, top-K inside the graph and no NMS. ``--eval-layers k`` bakes a shallower
decoder (the first ``k`` layers and their heads) into the graph. After export the ONNX Runtime
outputs are compared with PyTorch (:func:`edge_perception.export.check_parity`); a failed check
exits non-zero. The sidecar manifest ``<model>.json`` records class names, input size, command,
seed, data version and the checkpoint's validation metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, Optional, Tuple

import torch

from edge_perception.config import OBJECT_CLASS_NAMES
from edge_perception.datafiles import load_torch
from edge_perception.detection.model import RTDETR, count_parameters, model_from_checkpoint
from edge_perception.export import check_parity, export_onnx, write_manifest

INPUT_NAMES = ["images"]
OUTPUT_NAMES = ["boxes", "scores", "labels"]


def export_detector(
    model: RTDETR,
    path: str,
    input_size: Tuple[int, int],
    eval_layers: Optional[int] = None,
    opset: int = 17,
    batch: int = 1,
    atol: Optional[float] = None,
    seed: int = 0,
    parity: bool = True,
) -> Dict[str, Any]:
    """Export ``model`` in deploy mode to ``path`` and check parity on random images.

    ``atol`` (default ``1e-3 * max(1, max(H, W) / 128)``) bounds the max abs difference of every
    float output; boxes are in pixels, so float32 rounding grows with the input size.
    Returns ``{"path", "parity": ParityReport.as_dict(), "params"}``; raises RuntimeError when the
    parity check fails (the file is left for inspection).
    """
    if opset < 16:
        raise ValueError(f"opset {opset} lacks GridSample; use >= 16")
    h, w = int(input_size[0]), int(input_size[1])
    if h % 32 or w % 32:
        raise ValueError(f"input size {input_size} must be multiples of 32")
    if eval_layers is not None:
        model.set_eval_layers(eval_layers)
    if atol is None:
        atol = 1e-3 * max(1.0, max(h, w) / 128)
    model.deploy()
    g = torch.Generator().manual_seed(seed)
    example = torch.rand(batch, 3, h, w, generator=g)
    export_onnx(model, (example,), path, INPUT_NAMES, OUTPUT_NAMES, opset=opset)
    if not parity:  # e.g. untrained weights: near-equal scores make the top-K order a tie-break
        return {"path": path, "parity": None, "params": count_parameters(model)}
    probe = torch.rand(2, 3, h, w, generator=g)
    if getattr(model.cfg, "model", "rtdetr") == "yolox":  # NMS-ed sets: near ties may swap
        from edge_perception.detection.yolox import check_set_parity

        report = check_set_parity(model, path, probe, atol)
    else:
        report = check_parity(model, path, {"images": probe}, atol=atol, int_mismatch=0.02)
    if not report.ok:
        raise RuntimeError(f"ONNX parity check failed for {path}: {report.as_dict()}")
    return {"path": path, "parity": report.as_dict(), "params": count_parameters(model)}


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edge-perception det-export``."""
    parser.add_argument("--checkpoint", required=True, help="det-train checkpoint (.pt)")
    parser.add_argument("--out", required=True, help="output .onnx path")
    parser.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="default: the training input size",
    )
    parser.add_argument(
        "--eval-layers",
        type=int,
        default=None,
        help="decoder layers baked into the graph (default: all)",
    )
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--no-ema", action="store_true", help="export raw weights, not the EMA")
    parser.add_argument(
        "--metrics",
        default=None,
        help="det-eval JSON to record in the manifest (default: checkpoint's)",
    )
    parser.add_argument(
        "--note",
        action="append",
        default=[],
        help="free-text provenance line for the manifest (repeatable)",
    )
    parser.set_defaults(run=main)


def _data_version(data_root: Optional[str]) -> Optional[str]:
    if not data_root:
        return None
    path = os.path.join(data_root, "manifest.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        m = json.load(f)
    return m.get("data_version")


def main(args: argparse.Namespace) -> int:
    """Export as described by ``args``; writes the model and its manifest."""
    torch.set_num_threads(1)
    ckpt = load_torch(args.checkpoint, "det-train checkpoint", keys=("config", "model"))
    model = model_from_checkpoint(ckpt, use_ema=not args.no_ema)
    train_args = ckpt.get("args", {})
    size = tuple(args.input_size or train_args.get("input_size", (320, 320)))
    info = export_detector(model, args.out, size, args.eval_layers, args.opset)
    metrics = ckpt.get("val_metrics")
    if args.metrics:
        with open(args.metrics, encoding="utf-8") as f:
            metrics = json.load(f)
    manifest = {
        "task": "detection",
        "model": getattr(model.cfg, "model", "rtdetr"),
        "variant": train_args.get("variant"),
        "class_names": OBJECT_CLASS_NAMES[: model.cfg.num_classes],
        "input_size": list(size),
        "input_names": INPUT_NAMES,
        "output_names": OUTPUT_NAMES,
        "decoder_layers": model.decoder.eval_layers if hasattr(model, "decoder") else None,
        "params": info["params"],
        "command": " ".join(["edge-perception", "det-export", *sys.argv[2:]]),
        "train_command": train_args.get("command"),
        "seed": train_args.get("seed"),
        "data_version": _data_version(train_args.get("data")),
        "epochs_trained": ckpt.get("epoch", -1) + 1,
        "metrics": metrics,
        "parity": info["parity"],
        "notes": list(args.note),
    }
    write_manifest(args.out, manifest)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB); parity {info['parity']}")
    return 0
