"""Precision / recall / F1 of the detection node's output against its score threshold.

The node publishes detections at or above ``score_threshold``; this picks that operating point
on a tuning split (never the standard val split): greedy class-aware matching at IoU 0.5 in score
order, detections on ignore-flagged objects neither true nor false positives (as the evaluator)::

    carla-bridge generate --out data/trk_tune --train-sequences 12 --seed 7
    python bench/det_threshold.py --onnx models/det_small.onnx --data data/trk_tune --split train

Writes ``bench/results/<name>.{json,md}`` (default ``det_threshold``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from typing import Any, Dict, List, Optional

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import environment, markdown_table, publish_results  # noqa: E402


def iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [N, M] of COCO ``[x, y, w, h]`` boxes."""
    a, b = a.reshape(-1, 1, 4), b.reshape(1, -1, 4)
    iw = np.clip(np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2])
                 - np.maximum(a[..., 0], b[..., 0]), 0, None)  # fmt: skip
    ih = np.clip(np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])
                 - np.maximum(a[..., 1], b[..., 1]), 0, None)  # fmt: skip
    inter = iw * ih
    return inter / (a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter + 1e-9)


def operating_points(
    results: List[Dict[str, Any]], annotations: List[Dict[str, Any]], thresholds: List[float]
) -> List[Dict[str, float]]:
    """Precision, recall and F1 at each threshold (IoU 0.5, class-aware, ignore-aware)."""
    gt: Dict[Any, List[Dict[str, Any]]] = defaultdict(list)
    for a in annotations:
        gt[a["image_id"]].append(a)
    dets: Dict[Any, List[Dict[str, Any]]] = defaultdict(list)
    for r in results:
        dets[r["image_id"]].append(r)
    out = []
    for thr in thresholds:
        tp = fp = npos = 0
        for iid in set(gt) | set(dets):
            objs = gt.get(iid, [])
            ign = np.array([bool(o.get("ignore") or o.get("iscrowd")) for o in objs], bool)
            npos += int((~ign).sum())
            gbox = np.array([o["bbox"] for o in objs], np.float64).reshape(-1, 4)
            gcat = np.array([o["category_id"] for o in objs])
            used = np.zeros(len(objs), bool)
            for d in sorted(dets.get(iid, []), key=lambda r: -r["score"]):
                if d["score"] < thr:
                    break
                ious = iou_xywh(np.asarray(d["bbox"], np.float64), gbox)[0]
                ok = (~used) & (~ign) & (gcat == d["category_id"]) & (ious >= 0.5)
                if ok.any():
                    used[np.flatnonzero(ok)[np.argmax(ious[ok])]] = True
                    tp += 1
                elif not (ign & (ious >= 0.5)).any():
                    fp += 1
        p, r = tp / max(tp + fp, 1), tp / max(npos, 1)
        out.append(
            {
                "threshold": thr,
                "precision": p,
                "recall": r,
                "f1": 2 * p * r / max(p + r, 1e-9),
                "tp": tp,
                "fp": fp,
                "objects": npos,
            }
        )
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--onnx", default="models/det_small.onnx")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="train")
    ap.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=[0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7],
    )
    ap.add_argument("--name", default="det_threshold")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    args = ap.parse_args(argv)
    from edge_perception.config import DetectionNodeConfig
    from edge_perception.detection.data import CocoDetection
    from edge_perception.detection.evaluate import onnx_predictor, predict_dataset
    from edge_perception.export import ort_session

    with open(os.path.join(args.data, "manifest.json"), encoding="utf-8") as f:
        if json.load(f).get("standard_val") and args.split == "val":
            raise SystemExit("refusing to choose a threshold on the standard val split")
    shape = ort_session(args.onnx).get_inputs()[0].shape
    ds = CocoDetection(args.data, args.split, (int(shape[2]), int(shape[3])), augment=False)
    results = predict_dataset(onnx_predictor(args.onnx), ds, progress=False)
    with open(ds.coco_path, encoding="utf-8") as f:
        ids = {im["id"] for im in ds.images}
        anns = [a for a in json.load(f)["annotations"] if a["image_id"] in ids]
    rows = operating_points(results, anns, sorted(args.thresholds))
    best = max(rows, key=lambda r: r["f1"])
    node = DetectionNodeConfig().score_threshold
    cmd = "python bench/det_threshold.py " + " ".join(sys.argv[1:] if argv is None else argv)
    data = {"command": cmd, "model": args.onnx, "data": args.data, "split": args.split,
            "images": len(ids), "rows": rows, "best": best, "node_default": node,
            "environment": environment()}  # fmt: skip
    table = markdown_table(
        [["**%.2f**" % r["threshold"] if r is best else "%.2f" % r["threshold"],
          "%.3f" % r["precision"], "%.3f" % r["recall"], "%.3f" % r["f1"], r["tp"], r["fp"]]
         for r in rows],
        ["score threshold", "precision", "recall", "F1", "TP", "FP"],
    )  # fmt: skip
    md = "\n".join([
        "# Detection node: score threshold vs precision / recall (IoU 0.5)", "",
        f"Command: `{cmd}`  ", f"Model `{args.onnx}`, data `{args.data}` split `{args.split}` "
        f"({len(ids)} images, {rows[0]['objects']} objects; not the standard val split).", "",
        table, "",
        f"Best F1 {best['f1']:.3f} at {best['threshold']:.2f}; the node's default "
        f"`score_threshold` is {node:.2f}.",
    ]) + "\n"  # fmt: skip
    publish_results(args.name, data, md, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
