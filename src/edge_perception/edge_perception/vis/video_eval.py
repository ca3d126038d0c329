"""``vis-eval``: the exported VIS graphs through the node's pipeline over a split's sequences.

Per mode -- ``image`` (every frame a keyframe) and ``video`` (the keyframe policy with
``keyframe_interval`` K, default 5, and optionally ``max_keyframe_age_s``; the flow and
lost-track criteria as the node's defaults) -- each sequence of ``<data>/<split>`` is run frame by
frame through :class:`~edge_perception.runtime.vis.VISPipeline` (ONNX Runtime, tracker on, the
frames' ``timestamp`` as stamps, reset between sequences). What the node would publish is scored:

- **frame mask AP** (COCO ``segm`` via :func:`edge_perception.metrics.vis.frame_mask_ap`) of the
  published instances, every frame, and their **frame box AP** (COCO ``bbox``: the shared
  detector's accuracy after mask training, comparable to ``det-eval``);
- **video AP** (YouTube-VIS, :func:`edge_perception.metrics.vis.video_ap`): one predicted track per
  track id (its masks per frame, mean score, majority class) against ``ytvis.json``;
- **tracking** (HOTA / IDF1 / MOTA, :func:`edge_perception.metrics.tracking.evaluate_tracking`) of
  the published boxes and track ids against the split's track ids (ignored objects as
  distractors);
- mean per-frame inference ms (the three graphs) and the share of keyframes.

The frame AP scores every instance the node publishes (confirmed tracks, and with the default
``track_publish_unconfirmed`` the other instances at or above ``score_threshold``, without an id);
video AP and the tracking metrics score the confirmed tracks only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import Counter, defaultdict
from typing import Any, Dict, List, Tuple

import numpy as np

from edge_perception.metrics.tracking import FrameTracks, evaluate_tracking

Frame = Dict[str, Any]


def load_frames(data: str, split: str) -> Tuple[Dict[int, List[Frame]], List[str], str]:
    """``{video_id: frames in order}`` (image path, image id, timestamp, ground truth), the class
    names and the COCO file's path."""
    from edge_perception.datafiles import read_json

    root = os.path.join(data, split)
    coco_path = os.path.join(root, "annotations", "coco.json")
    coco = read_json(
        coco_path, "COCO annotations", required=("images", "annotations", "categories")
    )
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    label_of = {c["id"]: i for i, c in enumerate(cats)}
    anns: Dict[int, List[Dict[str, Any]]] = defaultdict(list)
    for a in coco["annotations"]:
        anns[a["image_id"]].append(a)
    videos: Dict[int, List[Frame]] = defaultdict(list)
    for img in sorted(coco["images"], key=lambda i: (i.get("video_id", 0), i["frame_index"])):
        objs = anns.get(img["id"], [])
        xywh = np.array([a["bbox"] for a in objs], np.float64).reshape(-1, 4)
        gt = FrameTracks(
            [int(a["track_id"]) for a in objs],
            np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1),
            [label_of[a["category_id"]] for a in objs],
            [bool(a.get("ignore", False) or a.get("iscrowd", 0)) for a in objs],
        )
        videos[int(img.get("video_id", 0))].append(
            {
                "path": os.path.join(root, "images", img["file_name"]),
                "image_id": int(img["id"]),
                "stamp": float(img.get("timestamp", img["frame_index"] / 30.0)),
                "gt": gt,
            }
        )
    return dict(videos), [c["name"] for c in cats], coco_path


def _rle(mask: np.ndarray) -> Dict[str, Any]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def instance_results(inst: Any, image_id: int) -> List[Dict[str, Any]]:
    """COCO results (``bbox`` xywh and RLE ``segmentation``) of an ``Instances``' detections."""
    out = []
    for i in range(len(inst)):
        x1, y1, x2, y2 = (float(v) for v in inst.boxes_xyxy[i])
        out.append(
            {
                "image_id": int(image_id),
                "category_id": int(inst.labels[i]) + 1,
                "score": float(inst.scores[i]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "segmentation": _rle(inst.masks[i]),
            }
        )
    return out


def box_and_mask_ap(
    coco_path: str, results: List[Dict[str, Any]], image_ids: List[int]
) -> Tuple[Any, Any]:
    """COCO box AP and frame mask AP (``metrics.coco.coco_map``, ``metrics.vis.frame_mask_ap``)
    of :func:`instance_results` over ``image_ids``."""
    from edge_perception.metrics.coco import coco_map
    from edge_perception.metrics.vis import frame_mask_ap

    box = coco_map(
        coco_path,
        [{k: v for k, v in r.items() if k != "segmentation"} for r in results],
        "bbox",
        image_ids=image_ids,
    )
    segm = frame_mask_ap(
        coco_path,
        [{k: v for k, v in r.items() if k != "bbox"} for r in results],
        image_ids=image_ids,
    )
    return box, segm


def run_mode(pipeline: Any, videos: Dict[int, List[Frame]]) -> Dict[str, Any]:
    """One pass of ``pipeline`` over every video: COCO results, predicted tracks, tracker
    frames, per-frame ms and keyframe flags."""
    import cv2

    results: List[Dict[str, Any]] = []
    tracks: List[Dict[str, Any]] = []
    seqs: Dict[str, Any] = {}
    infer_ms: List[float] = []
    keys: List[bool] = []
    for vid, frames in videos.items():
        pipeline.reset()
        per_track: Dict[int, Dict[str, Any]] = {}
        pred_frames: List[FrameTracks] = []
        for k, fr in enumerate(frames):
            bgr = cv2.imread(fr["path"], cv2.IMREAD_COLOR)
            if bgr is None:
                raise SystemExit("cannot read %s" % fr["path"])
            out = pipeline.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), fr["stamp"])
            inst = out.result
            infer_ms.append(out.times.inference_ms)
            keys.append(out.keyframe)
            # tracking metrics and video AP score the tracks; frame AP every published instance
            tracked = np.flatnonzero(inst.track_ids >= 0)
            pred_frames.append(
                FrameTracks(
                    inst.track_ids[tracked], inst.boxes_xyxy[tracked], inst.labels[tracked]
                )
            )
            frame_results = instance_results(inst, fr["image_id"])
            results.extend(frame_results)
            for i, r in enumerate(frame_results):
                rle = r["segmentation"]
                if inst.track_ids[i] < 0:
                    continue
                t = per_track.setdefault(
                    int(inst.track_ids[i]), {"segs": [None] * len(frames), "s": [], "c": []}
                )
                t["segs"][k] = rle
                t["s"].append(float(inst.scores[i]))
                t["c"].append(int(inst.labels[i]) + 1)
        for t in per_track.values():
            tracks.append(
                {
                    "video_id": vid,
                    "category_id": Counter(t["c"]).most_common(1)[0][0],
                    "score": float(np.mean(t["s"])),
                    "segmentations": t["segs"],
                }
            )
        seqs[str(vid)] = ([fr["gt"] for fr in frames], pred_frames)
    return {"results": results, "tracks": tracks, "seqs": seqs, "ms": infer_ms, "keys": keys}


# vis_node parameters each mode sets itself (image mode: every frame a keyframe), with the flag
# that sets them for video mode
MODE_PARAMETERS = {
    "keyframe_interval": "--keyframe-interval",
    "max_keyframe_age_s": "--max-keyframe-age",
}


def node_overrides(items: List[str]) -> Dict[str, Any]:
    """``["name=value", ...]`` (YAML values) -> checked :class:`VisNodeConfig` values; ValueError
    with one line naming the parameter and what is allowed."""
    import yaml

    from edge_perception.config import VisNodeConfig, check_value

    out: Dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError("--set expects PARAM=VALUE, got %r" % item)
        if name in MODE_PARAMETERS:  # each mode sets these: a --set would be ignored
            raise ValueError("%s: each mode sets it; use %s" % (name, MODE_PARAMETERS[name]))
        out[name] = check_value(VisNodeConfig, name, yaml.safe_load(text))
    return out


def evaluate(args: argparse.Namespace) -> Dict[str, Any]:
    """Both modes over the split (module docstring); a JSON-ready dict."""
    from edge_perception.config import VisNodeConfig, config_from_dict
    from edge_perception.datafiles import read_json
    from edge_perception.detection.track_eval import cpu_name
    from edge_perception.metrics.vis import video_ap
    from edge_perception.runtime.vis import (
        VISPipeline,
        create_vis_backends,
        model_mask_margin,
        sibling_paths,
    )

    videos, names, coco_path = load_frames(args.data, args.split)
    if args.max_sequences:
        videos = dict(list(videos.items())[: args.max_sequences])
    ytvis = read_json(
        os.path.join(args.data, args.split, "annotations", "ytvis.json"),
        "YouTube-VIS annotations",
        required=("videos", "annotations"),
    )
    gt_tracks = [a for a in ytvis["annotations"] if int(a["video_id"]) in videos]
    image_ids = [fr["image_id"] for frames in videos.values() for fr in frames]
    sibling_paths(args.model)  # a wrong name fails here, before the data is read
    out: Dict[str, Any] = {
        "model": args.model,
        "data": args.data,
        "split": args.split,
        "sequences": len(videos),
        "frames": len(image_ids),
        "modes": {},
        "machine": {"cpu": cpu_name(), "platform": platform.platform(), "threads": args.threads},
    }
    overrides = node_overrides(list(getattr(args, "set", None) or []))
    if overrides:
        out["node_parameters"] = overrides
    for mode in args.modes:
        values = dict(overrides)
        if args.score_threshold is not None:
            values["score_threshold"] = args.score_threshold
        values["keyframe_interval"] = 1 if mode == "image" else args.keyframe_interval
        values["max_keyframe_age_s"] = 0.0 if mode == "image" else args.max_keyframe_age
        cfg = config_from_dict(VisNodeConfig, values)
        backends = create_vis_backends(
            "onnxruntime", args.model, fuse=cfg.fuse_head, intra_op_threads=args.threads
        )
        pipeline = VISPipeline(
            backends["key"],
            backends["nonkey"],
            backends["head"],
            class_names=names,
            score_threshold=cfg.score_threshold,
            interpolation=args.interpolation,
            mask_threshold=cfg.mask_threshold,
            mask_margin=model_mask_margin(args.model),
            keyframes=cfg.keyframe_config(),
            tracker=cfg.tracker_config(),
            publish_unconfirmed=cfg.track_publish_unconfirmed,
        )
        pipeline.warmup(1)
        t0 = time.perf_counter()
        run = run_mode(pipeline, videos)
        wall = time.perf_counter() - t0
        stats = pipeline.path_stats.as_dict()
        pipeline.close()
        box, segm = box_and_mask_ap(coco_path, run["results"], image_ids)
        vap = video_ap(gt_tracks, run["tracks"])
        trk = evaluate_tracking(run["seqs"], names)
        out["modes"][mode] = {
            "keyframe_interval": cfg.keyframe_interval,
            "max_keyframe_age_s": cfg.max_keyframe_age_s,
            "frame_mask_ap": segm.map,
            "frame_mask_ap50": segm.map50,
            "frame_box_ap": box.map,
            "frame_box_ap50": box.map50,
            "video_ap": vap.ap,
            "video_ap50": vap.ap50,
            "hota": trk.hota,
            "idf1": trk.idf1,
            "mota": trk.mota,
            "id_switches": trk.id_switches,
            "key_ratio": float(np.mean(run["keys"])) if run["keys"] else float("nan"),
            "inference_ms_mean": float(np.mean(run["ms"])) if run["ms"] else float("nan"),
            "path_ms": stats,
            "seconds": wall,
        }
    if {"image", "video"} <= set(out["modes"]):
        img, vid = out["modes"]["image"], out["modes"]["video"]
        out["video_vs_image_cost"] = vid["inference_ms_mean"] / img["inference_ms_mean"]
    manifest = os.path.join(args.data, "manifest.json")
    if os.path.isfile(manifest):
        with open(manifest, encoding="utf-8") as f:
            m = json.load(f)
        out["data_version"], out["standard_val"] = m.get("data_version"), m.get("standard_val")
    return out


def markdown(result: Dict[str, Any]) -> str:
    """The image-vs-video table of :func:`evaluate`'s result."""
    head = (
        "| mode | K | frame mask AP | AP50 | frame box AP | video AP | HOTA | IDF1 | MOTA | IDSW "
        "| key ratio | ms/frame |"
    )
    rows = [head, "|" + "---|" * 12]
    for mode, m in result["modes"].items():
        rows.append(
            "| %s | %d | %.4f | %.4f | %.4f | %.4f | %.3f | %.3f | %.3f | %d | %.2f | %.2f |"
            % (mode, m["keyframe_interval"], m["frame_mask_ap"], m["frame_mask_ap50"],
               m.get("frame_box_ap", float("nan")), m["video_ap"], m["hota"], m["idf1"],
               m["mota"], m["id_switches"], m["key_ratio"], m["inference_ms_mean"])
        )  # fmt: skip
    lines = rows + [
        "",
        "%s, %s split: %d sequences, %d frames; ONNX Runtime %d thread(s) on %s."
        % (result["model"], result["split"], result["sequences"], result["frames"],
           result["machine"]["threads"], result["machine"]["cpu"]),
    ]  # fmt: skip
    if "video_vs_image_cost" in result:
        lines.append(
            "Video mode per-frame cost: %.3fx image mode." % result["video_vs_image_cost"]
        )
    return "\n".join(lines)
