"""Detector + tracker on the sequences of a split: MOTA / IDF1 / HOTA (``det-track-eval``).

Runs exactly what the detection node runs -- :class:`DetectionPipeline` over ONNX Runtime with the
node's tracker settings -- frame by frame through each sequence of ``<data>/<split>`` (the
dataset's ``coco.json``: ``sequence``, ``frame_index``, per-object ``track_id`` and ``ignore``),
resetting the tracker between sequences, and scores the published ids with
:func:`edge_perception.metrics.tracking.evaluate_tracking`. A second row feeds the ground-truth
boxes (score 1) through the same tracker: what the association alone loses, apart from the
detector.

    edge-perception det-track-eval --onnx models/det_small.onnx --data data/trk \\
        --json bench/det_tracking.json --md bench/det_tracking.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import defaultdict
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from edge_perception.config import DetectionNodeConfig
from edge_perception.metrics.tracking import (
    HEADLINE,
    FrameTracks,
    TrackingMetrics,
    evaluate_tracking,
    format_tracking,
)
from edge_perception.runtime.preprocess import add_interpolation_argument
from edge_perception.runtime.tracking import MultiObjectTracker, TrackerConfig

GtFrame = Tuple[str, FrameTracks]  # (image path, ground truth)


def load_sequences(data: str, split: str) -> Tuple[Dict[str, List[GtFrame]], List[str]]:
    """``{sequence: [(image path, ground truth), ...] in frame order}`` and the class names."""
    root = os.path.join(data, split)
    path = os.path.join(root, "annotations", "coco.json")
    if not os.path.isfile(path):
        raise SystemExit("%s does not exist (a carla-bridge generate data set?)" % path)
    with open(path, encoding="utf-8") as f:
        coco = json.load(f)
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    names = [c["name"] for c in cats]
    label_of = {c["id"]: i for i, c in enumerate(cats)}
    anns: Dict[int, List[Dict[str, Any]]] = defaultdict(list)
    for a in coco["annotations"]:
        anns[a["image_id"]].append(a)
    seqs: Dict[str, List[Tuple[int, GtFrame]]] = defaultdict(list)
    for img in coco["images"]:
        if "sequence" not in img or "frame_index" not in img:
            raise SystemExit("%s: images lack sequence / frame_index (not a video split)" % path)
        objs = anns.get(img["id"], [])
        boxes = np.array(
            [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
             for a in objs], np.float64,
        ).reshape(-1, 4)  # fmt: skip
        gt = FrameTracks(
            [int(a["track_id"]) for a in objs],
            boxes,
            [label_of[a["category_id"]] for a in objs],
            [bool(a.get("ignore", False) or a.get("iscrowd", 0)) for a in objs],
        )
        image = os.path.join(root, "images", img["file_name"])
        seqs[str(img["sequence"])].append((int(img["frame_index"]), (image, gt)))
    ordered = {s: [f for _, f in sorted(v, key=lambda x: x[0])] for s, v in sorted(seqs.items())}
    return ordered, names


def _read_rgb(path: str) -> np.ndarray:
    import cv2

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit("cannot read %s" % path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def track_with_detector(
    pipeline: Any, frames: Sequence[GtFrame]
) -> Tuple[List[FrameTracks], List[float]]:
    """Run the (tracking) detection pipeline over one sequence; returns frames and the
    per-frame post-processing ms (threshold, top-K, tracker)."""
    pipeline.reset()
    out, post_ms = [], []
    for image, _ in frames:
        res = pipeline.process(_read_rgb(image))
        dets = res.result
        out.append(FrameTracks(dets.track_ids, dets.boxes_xyxy, dets.labels))
        post_ms.append(res.times.postprocess_ms)
    return out, post_ms


def track_ground_truth(config: TrackerConfig, frames: Sequence[GtFrame]) -> List[FrameTracks]:
    """The same tracker fed with the ground-truth boxes (score 1, ignored objects left out)."""
    tracker = MultiObjectTracker(config)
    out = []
    for _, gt in frames:
        keep = ~np.asarray(gt.ignore, bool)
        boxes, labels = gt.boxes_xyxy[keep], np.asarray(gt.labels)[keep]
        ids = tracker.update(boxes, np.ones(len(labels)), labels)
        ok = ids >= 0
        out.append(FrameTracks(ids[ok], boxes[ok], labels[ok]))
    return out


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces ``args`` (options at their defaults left out; no notes)."""
    import shlex

    node = DetectionNodeConfig()
    defaults = {
        "split": "val",
        "interpolation": "area",
        "score_threshold": node.score_threshold,
        "track_low_threshold": node.track_low_threshold,
        "track_birth_margin": node.track_birth_margin,
        "track_buffer": node.track_buffer,
        "track_min_hits": node.track_min_hits,
        "max_detections": node.max_detections,
        "threads": 1,
        "json": None,
        "md": None,
    }
    parts = ["edge-perception", "det-track-eval", "--onnx", args.onnx, "--data", args.data]
    for key, default in defaults.items():
        value = getattr(args, key)
        if value != default:
            parts += ["--" + key.replace("_", "-"), str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def cpu_name() -> str:
    """The CPU model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return "%s x%d" % (line.split(":", 1)[1].strip(), os.cpu_count() or 0)
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edge-perception det-track-eval``."""
    node = DetectionNodeConfig()
    parser.description = (
        "Run the detection pipeline with its tracker over every sequence of a split and report "
        "MOTA / IDF1 / HOTA (trackeval) against the data set's track ids."
    )
    parser.add_argument("--onnx", required=True, help="exported detector (.onnx)")
    parser.add_argument("--data", required=True, help="carla-bridge generate data set root")
    parser.add_argument("--split", default="val")
    add_interpolation_argument(parser)
    parser.add_argument("--score-threshold", type=float, default=node.score_threshold)
    parser.add_argument("--track-low-threshold", type=float, default=node.track_low_threshold)
    parser.add_argument("--track-birth-margin", type=float, default=node.track_birth_margin)
    parser.add_argument("--track-buffer", type=int, default=node.track_buffer)
    parser.add_argument("--track-min-hits", type=int, default=node.track_min_hits)
    parser.add_argument("--max-detections", type=int, default=node.max_detections)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--md", default=None, help="write the Markdown table here")
    parser.add_argument("--note", action="append", default=[], help="a line for the Markdown")
    parser.set_defaults(run=main)


def _row(name: str, m: TrackingMetrics) -> str:
    d = m.as_dict()
    return "| %s | %s | %d | %d | %d | %d |" % (
        name, " | ".join("%.3f" % d[k] for k in HEADLINE), d["id_switches"], d["false_positives"],
        d["false_negatives"], d["pred_ids"],
    )  # fmt: skip


def main(args: argparse.Namespace) -> int:
    """Run the evaluation described by ``args``; prints and optionally writes the tables."""
    from edge_perception.backends.factory import create_backend
    from edge_perception.runtime.detection import DetectionPipeline

    node = DetectionNodeConfig(
        score_threshold=args.score_threshold,
        track_low_threshold=args.track_low_threshold,
        track_birth_margin=args.track_birth_margin,
        track_buffer=args.track_buffer,
        track_min_hits=args.track_min_hits,
        max_detections=args.max_detections,
    ).validate()
    tracker_cfg = node.tracker_config()
    seqs, names = load_sequences(args.data, args.split)
    backend = create_backend("onnxruntime", args.onnx, intra_op_threads=args.threads)
    pipeline = DetectionPipeline(
        backend,
        class_names=names,
        score_threshold=node.score_threshold,
        max_detections=node.max_detections,
        interpolation=args.interpolation,
        tracker=tracker_cfg,
        publish_unconfirmed=False,  # MOT metrics score the tracker's output: tracks only
    )
    t0 = time.perf_counter()
    det_runs, gt_runs, post_ms = {}, {}, []
    for seq, frames in seqs.items():
        gts = [gt for _, gt in frames]
        tracked, ms = track_with_detector(pipeline, frames)
        det_runs[seq] = (gts, tracked)
        post_ms += ms
        gt_runs[seq] = (gts, track_ground_truth(tracker_cfg, frames))
    wall = time.perf_counter() - t0
    pipeline.close()
    det = evaluate_tracking(det_runs, names)
    oracle = evaluate_tracking(gt_runs, names)
    frames_n = sum(len(f) for f in seqs.values())
    head = "| input | " + " | ".join(k.upper() for k in HEADLINE) + " | IDSW | FP | FN | ids |"
    summary = "\n".join(
        [head, "|" + "---|" * (len(HEADLINE) + 5), _row(os.path.basename(args.onnx), det),
         _row("ground-truth boxes", oracle)]
    )  # fmt: skip
    print(summary)
    print("\nper class (%s + tracker):\n%s" % (os.path.basename(args.onnx), format_tracking(det)))
    print(
        "\n%d sequences, %d frames; post-processing incl. tracker %.2f ms/frame (mean), %.1f s"
        % (len(seqs), frames_n, float(np.mean(post_ms)), wall)
    )
    manifest_path = os.path.join(args.data, "manifest.json")
    manifest: Dict[str, Any] = {}
    if os.path.isfile(manifest_path):
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
    result = {
        "data_version": manifest.get("data_version"),
        "standard_val": manifest.get("standard_val"),
        "command": command_line(args),
        "model": args.onnx,
        "data": args.data,
        "split": args.split,
        "sequences": len(seqs),
        "frames": frames_n,
        "tracker": tracker_cfg.__dict__,
        "interpolation": args.interpolation,
        "postprocess_ms_mean": float(np.mean(post_ms)),
        "machine": {"platform": platform.platform(), "cpu": cpu_name(),
                    "python": platform.python_version(), "ort_threads": args.threads},
        "detector_tracker": det.as_dict(),
        "ground_truth_tracker": oracle.as_dict(),
    }  # fmt: skip
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    if args.md:
        machine = result["machine"]
        lines = [
            "# Detection + tracking on the %s split (MOTA / IDF1 / HOTA)" % args.split,
            "",
            "Command: `%s`" % result["command"],
            "",
            "Machine: %s, %s, Python %s, ONNX Runtime %d thread(s). %d sequences, %d frames; "
            "post-processing with the tracker %.2f ms/frame (mean)."
            % (
                machine["platform"],
                machine["cpu"],
                machine["python"],
                args.threads,
                len(seqs),
                frames_n,
                result["postprocess_ms_mean"],
            ),
            "",
            "Tracker (the detection node's defaults unless the command says otherwise): "
            "stage 1 / high from score %.2f, births from %.2f, low-score continuations from %.2f,"
            " buffered IoU %.1f, min_hits %d, lost buffer %d frames. Metrics: trackeval (HOTA"
            " averaged over alpha 0.05-0.95; CLEAR / Identity at IoU 0.5) per class, pooled over"
            " classes; ignore-flagged objects are distractors. The second row feeds the"
            " ground-truth boxes (score 1) through the same tracker."
            % (
                tracker_cfg.high_threshold,
                tracker_cfg.new_track_threshold,
                tracker_cfg.low_threshold,
                tracker_cfg.buffer,
                tracker_cfg.min_hits,
                tracker_cfg.max_lost,
            ),
            "",
            "Data: `%s` (data_version %s, standard val split: %s)."
            % (args.data, result["data_version"], result["standard_val"]),
        ]
        lines += ["", *args.note] if args.note else []
        lines += [
            "",
            summary,
            "",
            "Per class (detector + tracker):",
            "",
            format_tracking(det),
            "",
        ]  # fmt: skip
        with open(args.md, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
    return 0
