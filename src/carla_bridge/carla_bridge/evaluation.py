"""Closed-loop evaluation core (ROS-free): pair ground truth and perception outputs by image stamp.

The evaluator node (:mod:`carla_bridge.ros.evaluator`) decodes messages with
``edge_perception.ros.convert`` and feeds the records here; tests and offline tools can feed them
directly. Each task (``lane``, ``detection``, ``instance``) keeps the ground truth and the
predictions that have not found their partner yet, keyed by the image stamp in nanoseconds; when
both sides of a stamp are present the pair is scored and dropped. Pending entries are bounded
(``max_pending`` per side and task, oldest dropped and counted as unmatched).

Metrics: lane mIoU / per-class IoU / lane-line F1 (``edge_perception.metrics.segmentation``), COCO
box mAP and mask mAP (``edge_perception.metrics.coco``) over the paired frames (ground truth with
a score below 0.5 -- the publisher's 0 for an ignore-flagged object -- is a crowd region, neither
a miss nor a false positive, as in det-eval), end-to-end latency
(arrival time at the evaluator minus the image stamp; both must come from the same clock, e.g.
``use_sim_time`` everywhere or wall time everywhere), output rate (FPS) per stream and the
``FrameTiming`` statistics the perception nodes report.
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from carla_bridge.classes import LANE_CLASSES, OBJECT_CLASSES

TASKS = ("lane", "detection", "instance")


def _stats(values: Sequence[float]) -> Dict[str, Optional[float]]:
    if not len(values):
        return {"n": 0, "mean": None, "p50": None, "p95": None, "max": None}
    a = np.asarray(values, dtype=np.float64)
    return {
        "n": int(a.size),
        "mean": float(a.mean()),
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "max": float(a.max()),
    }


def _compressed_rle(rle: Dict[str, Any]) -> Dict[str, Any]:
    """COCO compressed RLE (``counts`` str) of an uncompressed ``{"size", "counts"}`` dict."""
    from pycocotools import mask as mask_utils

    h, w = (int(v) for v in rle["size"])
    out = mask_utils.frPyObjects({"size": [h, w], "counts": list(rle["counts"])}, h, w)
    counts = out["counts"]
    return {
        "size": [h, w],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


class _Pairing:
    """Ground truth and predictions of one task waiting for their partner, by stamp."""

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self.gt: OrderedDict[int, Any] = OrderedDict()
        self.pred: OrderedDict[int, Any] = OrderedDict()
        self.dropped_gt = 0
        self.dropped_pred = 0
        self.paired = 0
        self.duplicates = 0
        self._done: OrderedDict[int, None] = OrderedDict()  # recently paired stamps

    def add(self, side: str, stamp: int, item: Any) -> Optional[Tuple[Any, Any]]:
        mine, other = (self.gt, self.pred) if side == "gt" else (self.pred, self.gt)
        if stamp in self._done or stamp in mine:
            self.duplicates += 1  # a second message for an already seen stamp: ignored
            return None
        if stamp in other:
            self.paired += 1
            self._done[stamp] = None
            if len(self._done) > self.max_pending:
                self._done.popitem(last=False)
            partner = other.pop(stamp)
            return (item, partner) if side == "gt" else (partner, item)
        mine[stamp] = item
        while len(mine) > self.max_pending:
            mine.popitem(last=False)
            if side == "gt":
                self.dropped_gt += 1
            else:
                self.dropped_pred += 1
        return None


class ClosedLoopEvaluator:
    """Online metrics over a stream of (ground truth, prediction) pairs matched by stamp.

    ``object_classes`` name the 0-based detection labels (COCO category id = label + 1);
    ``lane_classes`` name the lane mask values; ``line_tol_px`` is the lane-line F1 tolerance.
    """

    def __init__(
        self,
        object_classes: Sequence[str] = OBJECT_CLASSES,
        lane_classes: Sequence[str] = LANE_CLASSES,
        max_pending: int = 300,
        line_tol_px: float = 2.0,
        line_f1_stride: int = 1,
    ) -> None:
        from edge_perception.metrics.segmentation import SegmentationMeter

        if max_pending < 1:
            raise ValueError("max_pending must be >= 1, got %r" % (max_pending,))
        self.object_classes = list(object_classes)
        self.lane_classes = list(lane_classes)
        if line_f1_stride < 0:
            raise ValueError("line_f1_stride must be >= 0 (0 = off), got %r" % (line_f1_stride,))
        line_classes = [i for i, n in enumerate(self.lane_classes) if n.startswith("lane_")]
        # mIoU on every paired frame; lane-line F1 (two distance transforms per frame, the costly
        # part) on every ``line_f1_stride``-th paired frame.
        self._lane = SegmentationMeter(self.lane_classes, (), tol=line_tol_px)
        self._lines = SegmentationMeter(self.lane_classes, line_classes, tol=line_tol_px)
        self.line_f1_stride = int(line_f1_stride)
        self._pairs = {t: _Pairing(max_pending) for t in TASKS}
        self._images: Dict[int, Tuple[int, int]] = {}  # stamp -> (height, width)
        self._image_ids: Dict[Tuple[str, int], int] = {}
        self._coco: Dict[str, Dict[str, List[Dict[str, Any]]]] = {
            t: {"images": [], "annotations": [], "results": []} for t in TASKS[1:]
        }
        self._latency: Dict[str, List[float]] = {}
        self._arrivals: Dict[str, List[int]] = {}
        self._timing: Dict[str, Dict[str, List[float]]] = {}
        self.images_seen = 0

    # ------------------------------------------------------------------ inputs
    def add_image(self, stamp_ns: int, height: int, width: int) -> None:
        """Record a camera image (its size is needed for COCO images and mask AP)."""
        self.images_seen += 1
        self._images[int(stamp_ns)] = (int(height), int(width))
        if len(self._images) > 4 * self._pairs["lane"].max_pending:
            self._images.pop(next(iter(self._images)))

    def add_ground_truth(self, task: str, stamp_ns: int, record: Any) -> None:
        """Add ground truth: ``lane`` -> HxW uint8 class mask; ``detection`` -> ``Detections``;
        ``instance`` -> ``Instances`` (from ``edge_perception.runtime.results``)."""
        self._add(task, "gt", int(stamp_ns), record)

    def add_prediction(
        self,
        task: str,
        stamp_ns: int,
        record: Any,
        arrival_ns: Optional[int] = None,
        stream: Optional[str] = None,
    ) -> None:
        """Add a prediction (same record kinds as the ground truth).

        ``arrival_ns`` (receive time on the stamp's clock) adds a latency sample and an arrival
        for the FPS of ``stream`` (default: the task name).
        """
        name = stream or task
        if arrival_ns is not None:
            self._latency.setdefault(name, []).append((int(arrival_ns) - int(stamp_ns)) / 1e6)
            self._arrivals.setdefault(name, []).append(int(arrival_ns))
        self._add(task, "pred", int(stamp_ns), record)

    def add_timing(self, node: str, values: Dict[str, float]) -> None:
        """Add one ``FrameTiming`` of ``node`` (e.g. ``{"end_to_end_ms": 12.0, ...}``)."""
        per = self._timing.setdefault(node, {})
        for key, v in values.items():
            per.setdefault(key, []).append(float(v))

    def _add(self, task: str, side: str, stamp: int, record: Any) -> None:
        if task not in self._pairs:
            raise ValueError("unknown task %r; use one of %s" % (task, ", ".join(TASKS)))
        pair = self._pairs[task].add(side, stamp, record)
        if pair is not None:
            self._score(task, stamp, pair[0], pair[1])

    # ------------------------------------------------------------------ scoring
    def _score(self, task: str, stamp: int, gt: Any, pred: Any) -> None:
        if task == "lane":
            g, p = np.asarray(gt), np.asarray(pred)
            if p.shape != g.shape:
                raise ValueError(
                    "lane prediction %s and ground truth %s differ in size at stamp %d; publish "
                    "the class mask at the camera resolution" % (p.shape, g.shape, stamp)
                )
            self._lane.update(p, g)
            if self.line_f1_stride and (self._lane.frames - 1) % self.line_f1_stride == 0:
                self._lines.update(p, g)
            return
        coco = self._coco[task]
        image_id = len(coco["images"]) + 1
        h, w = self._images.get(stamp, (0, 0))
        if task == "instance" and len(gt):
            h, w = (int(v) for v in gt.rles[0]["size"])
        coco["images"].append({"id": image_id, "height": h, "width": w, "stamp_ns": stamp})
        gt_scores = getattr(gt, "scores", None)
        for i in range(len(gt)):
            x1, y1, x2, y2 = (float(v) for v in gt.boxes_xyxy[i])
            # ground truth with score 0 is the data set's ignore flag (carla_bridge.ros.frames):
            # a crowd region, neither a miss nor a false positive (as in training and det-eval)
            crowd = gt_scores is not None and i < len(gt_scores) and float(gt_scores[i]) < 0.5
            ann: Dict[str, Any] = {
                "id": len(coco["annotations"]) + 1,
                "image_id": image_id,
                "category_id": int(gt.labels[i]) + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": int(crowd),
            }
            if task == "instance":
                ann["segmentation"] = _compressed_rle(gt.rles[i])
                ann["area"] = float(sum(gt.rles[i]["counts"][1::2]))
            coco["annotations"].append(ann)
        for i in range(len(pred)):
            label = int(pred.labels[i])
            if not 0 <= label < len(self.object_classes):
                continue  # not a class of the table (e.g. -1 = no hypothesis)
            x1, y1, x2, y2 = (float(v) for v in pred.boxes_xyxy[i])
            res: Dict[str, Any] = {
                "image_id": image_id,
                "category_id": label + 1,
                "score": float(pred.scores[i]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
            }
            if task == "instance":
                res["segmentation"] = _compressed_rle(pred.rles[i])
            coco["results"].append(res)

    # ------------------------------------------------------------------ results
    def progress(self) -> Dict[str, int]:
        """Cheap live counts: ``images_seen`` and ``paired_<task>`` (frames scored so far)."""
        out = {"images_seen": int(self.images_seen)}
        out.update({"paired_" + t: int(p.paired) for t, p in self._pairs.items()})
        return out

    def summary(self) -> Dict[str, Any]:
        """Every metric so far as a JSON-ready dict (``None`` where undefined)."""
        out: Dict[str, Any] = {"images_seen": self.images_seen, "pairing": {}}
        for task, p in self._pairs.items():
            out["pairing"][task] = {
                "paired": p.paired,
                "gt_without_prediction": p.dropped_gt + len(p.gt),
                "prediction_without_gt": p.dropped_pred + len(p.pred),
                "duplicates_ignored": p.duplicates,
            }
        lane = self._lane.compute() if self._lane.frames else None
        if lane is not None:
            lines = self._lines.compute() if self._lines.frames else {}
            for key in ("line_precision", "line_recall", "line_f1"):
                lane[key] = lines.get(key, float("nan"))
            lane["line_f1_frames"] = self._lines.frames
            lane = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in lane.items()}  # fmt: skip
        out["lane"] = lane
        out["detection"] = self._coco_metrics("detection", "bbox")
        out["instance"] = self._coco_metrics("instance", "segm")
        out["latency_ms"] = {k: _stats(v) for k, v in sorted(self._latency.items())}
        out["fps"] = {}
        for k, arr in sorted(self._arrivals.items()):
            span = (max(arr) - min(arr)) / 1e9 if len(arr) > 1 else 0.0
            out["fps"][k] = (len(arr) - 1) / span if span > 0 else None
        out["timing"] = {
            node: {k: _stats(v) for k, v in vals.items()}
            for node, vals in sorted(self._timing.items())
        }
        return out

    def _coco_metrics(self, task: str, iou_type: str) -> Optional[Dict[str, Any]]:
        from edge_perception.metrics.coco import coco_map

        coco = self._coco[task]
        if not coco["images"]:
            return None
        gt = {
            "images": coco["images"],
            "annotations": coco["annotations"],
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(self.object_classes)],
        }
        if not coco["annotations"]:
            return {"frames": len(coco["images"]), "map": None, "note": "no ground-truth objects"}
        m = coco_map(gt, coco["results"], iou_type=iou_type).as_dict()
        m["frames"] = len(coco["images"])
        return m


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return "%.4f" % v
    return str(v)


def to_markdown(summary: Dict[str, Any]) -> str:
    """A short human-readable report of :meth:`ClosedLoopEvaluator.summary`."""
    lines = ["# Closed-loop evaluation", "", "Images seen: %d" % summary["images_seen"], ""]
    lines += ["| task | paired | GT without prediction | prediction without GT |",
              "| --- | --- | --- | --- |"]  # fmt: skip
    for task, p in summary["pairing"].items():
        lines.append("| %s | %d | %d | %d |" % (task, p["paired"], p["gt_without_prediction"],
                                                p["prediction_without_gt"]))  # fmt: skip
    lane = summary.get("lane")
    lines += ["", "## Lane segmentation", ""]
    if lane:
        lines.append("mIoU %s, pixel accuracy %s, lane-line F1 %s (tolerance %s px), %d frames"
                     % (_fmt(lane["miou"]), _fmt(lane["pixel_acc"]), _fmt(lane["line_f1"]),
                        _fmt(lane["line_tol_px"]), lane["frames"]))  # fmt: skip
        lines += ["", "| class | IoU |", "| --- | --- |"]
        lines += ["| %s | %s |" % (k, _fmt(v)) for k, v in lane["iou"].items()]
    else:
        lines.append("no paired frames")
    for key, title in (("detection", "Detection (box AP)"), ("instance", "Instances (mask AP)")):
        m = summary.get(key)
        lines += ["", "## " + title, ""]
        if not m:
            lines.append("no paired frames")
            continue
        lines.append(
            "mAP %s, AP50 %s, AP75 %s over %d frames"
            % (_fmt(m.get("map")), _fmt(m.get("map50")), _fmt(m.get("map75")), m["frames"])
        )
    lines += ["", "## Latency (arrival - image stamp) and rate", "",
              "| stream | n | mean ms | p50 ms | p95 ms | max ms | FPS |",
              "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for k, s in summary["latency_ms"].items():
        lines.append(
            "| %s | %d | %s | %s | %s | %s | %s |"
            % (
                k,
                s["n"],
                _fmt(s["mean"]),
                _fmt(s["p50"]),
                _fmt(s["p95"]),
                _fmt(s["max"]),
                _fmt(summary["fps"].get(k)),
            )
        )
    if summary.get("timing"):
        lines += [
            "",
            "## FrameTiming (reported by the nodes)",
            "",
            "| node | field | mean ms | p95 ms |",
            "| --- | --- | --- | --- |",
        ]
        for node, vals in summary["timing"].items():
            for k, s in vals.items():
                lines.append("| %s | %s | %s | %s |" % (node, k, _fmt(s["mean"]), _fmt(s["p95"])))
    return "\n".join(lines) + "\n"


def write_report(summary: Dict[str, Any], out_dir: str, stem: str = "evaluation") -> List[str]:
    """Write ``<stem>.json`` and ``<stem>.md`` into ``out_dir`` (atomically); returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    jpath = os.path.join(out_dir, stem + ".json")
    mpath = os.path.join(out_dir, stem + ".md")
    from carla_bridge.dataset.io import atomic_write_bytes

    text = json.dumps(summary, indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_bytes(jpath, text.encode("utf-8"))
    atomic_write_bytes(mpath, to_markdown(summary).encode("utf-8"))
    return [jpath, mpath]
