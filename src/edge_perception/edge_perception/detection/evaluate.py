"""COCO evaluation of a detector checkpoint or exported ONNX model (``edge-perception det-eval``).

Predictions come from the deploy contract (top-K boxes in input pixels, no NMS), are mapped back to
the original image through the letterbox scale, clipped to the image and scored with
:func:`edge_perception.metrics.coco.coco_map` (mAP50:95, mAP50, mAP75, S/M/L, per class).

    edge-perception det-eval --checkpoint runs/det/best.pt --data data/gen --split val
    edge-perception det-eval --onnx models/det_small.onnx --data data/gen --json eval.json
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from edge_perception.datafiles import load_torch
from edge_perception.detection.data import CocoDetection, collate
from edge_perception.metrics.coco import CocoMetrics, boxes_to_results, coco_map
from edge_perception.runtime.preprocess import add_interpolation_argument

Predictor = Callable[[np.ndarray], Tuple[np.ndarray, np.ndarray, np.ndarray]]


def torch_predictor(model: torch.nn.Module) -> Predictor:
    """Predictor running a PyTorch :class:`RTDETR` (eval mode) and its in-model postprocessor."""

    @torch.no_grad()
    def predict(images: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        was_training = model.training
        model.eval()
        x = torch.from_numpy(images)
        out = model(x)
        if isinstance(out, dict):
            h, w = images.shape[2:]
            out = model.postprocessor(out["pred_logits"], out["pred_boxes"], (h, w))
        model.train(was_training)
        return tuple(o.cpu().numpy() for o in out)  # type: ignore[return-value]

    return predict


def onnx_predictor(path: str, threads: int = 1) -> Predictor:
    """Predictor over a real ONNX Runtime CPU session (inputs/outputs by contract name)."""
    from edge_perception.export import ort_session

    sess = ort_session(path, threads=threads)
    names = [o.name for o in sess.get_outputs()]
    for n in ("boxes", "scores", "labels"):
        if n not in names:
            raise ValueError(f"{path}: output {n!r} missing (outputs {names}); not a detector?")

    def predict(images: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        b, s, lab = sess.run(["boxes", "scores", "labels"], {"images": images})
        return b, s, lab

    return predict


def predict_dataset(
    predictor: Predictor,
    dataset: CocoDetection,
    batch_size: int = 8,
    progress: bool = True,
) -> List[Dict[str, Any]]:
    """COCO result dicts (original-image coordinates) for every image of ``dataset``."""
    if dataset.augment:
        raise ValueError("evaluate on a dataset built with augment=False")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    results: List[Dict[str, Any]] = []
    for images, targets in tqdm(loader, desc="det-eval", disable=not progress, leave=False):
        boxes, scores, labels = predictor(images.numpy())
        for b, s, lab, t in zip(boxes, scores, labels, targets):
            h, w = t["orig_size"]
            b = b / t["scale"]
            b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
            b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
            results.extend(boxes_to_results(t["image_id"], b, s, lab))
    return results


def evaluate(
    predictor: Predictor, dataset: CocoDetection, batch_size: int = 8, progress: bool = True
) -> CocoMetrics:
    """COCO box metrics of ``predictor`` on ``dataset`` (restricted to the dataset's images)."""
    results = predict_dataset(predictor, dataset, batch_size, progress)
    ids = [im["id"] for im in dataset.images]
    return coco_map(dataset.coco_path, results, "bbox", image_ids=ids)


def format_metrics(m: CocoMetrics) -> str:
    """Multi-line human-readable summary."""
    lines = [
        f"mAP50:95 {m.map:.4f}  mAP50 {m.map50:.4f}  mAP75 {m.map75:.4f}",
        f"small {m.map_small:.4f}  medium {m.map_medium:.4f}  large {m.map_large:.4f}",
    ]
    lines.append(f"  {'class':<14s} {'AP50:95':>7s} {'AP50':>7s} {'objects':>8s} {'tracks':>7s}")
    for k, v in m.per_class.items():
        ap50 = m.per_class_ap50.get(k, float("nan"))
        n, t = m.support.get(k, 0), m.support_tracks.get(k, 0)
        lines.append(f"  {k:<14s} {v:7.4f} {ap50:7.4f} {n:8d} {t:7d}")
    return "\n".join(lines)


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edge-perception det-eval``."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="det-train checkpoint (.pt)")
    src.add_argument("--onnx", help="exported detector (.onnx)")
    parser.add_argument("--data", required=True, help="carla_bridge data set root")
    parser.add_argument("--split", default="val")
    add_interpolation_argument(parser)
    parser.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="default: from the checkpoint / ONNX input shape",
    )
    parser.add_argument(
        "--eval-layers",
        type=int,
        default=None,
        help="decoder layers to use (checkpoint only; default all)",
    )
    parser.add_argument("--no-ema", action="store_true", help="use raw weights, not the EMA")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the metrics here")
    parser.set_defaults(run=main)


def _onnx_input_size(path: str) -> Tuple[int, int]:
    import onnx

    proto = onnx.load(path, load_external_data=False)
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    return int(dims[2]), int(dims[3])


def main(args: argparse.Namespace) -> int:
    """Run the evaluation described by ``args``; prints and optionally writes the metrics."""
    torch.set_num_threads(max(1, args.threads))
    size: Optional[Tuple[int, int]] = tuple(args.input_size) if args.input_size else None
    if args.checkpoint:
        from edge_perception.detection.model import model_from_checkpoint

        ckpt = load_torch(args.checkpoint, "det-train checkpoint", keys=("config", "model"))
        model = model_from_checkpoint(ckpt, use_ema=not args.no_ema)
        if args.eval_layers:
            model.set_eval_layers(args.eval_layers)
        size = size or tuple(ckpt["args"]["input_size"])
        predictor = torch_predictor(model)
    else:
        if args.eval_layers:
            raise SystemExit("--eval-layers applies to checkpoints; export with --eval-layers")
        size = size or _onnx_input_size(args.onnx)
        predictor = onnx_predictor(args.onnx, args.threads)
    ds = CocoDetection(
        args.data,
        args.split,
        size,
        augment=False,
        max_images=args.max_images,
        interpolation=args.interpolation,
    )
    metrics = evaluate(predictor, ds, args.batch_size)
    print(format_metrics(metrics))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(metrics.as_dict(), f, indent=2)
    return 0
