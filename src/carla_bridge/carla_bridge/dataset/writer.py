"""Dataset generation: render sequences (in parallel), write the layout of docs/CONTRACTS.md.

Resume and determinism: a sequence is *complete* when its annotation part file
``<split>/annotations/parts/<seq>.json`` exists (written last, atomically). Re-running skips
complete sequences; an interrupted sequence is rendered again and only its missing frame files
are written. Split annotation files and the manifest are rebuilt from the parts at the end, so a
resumed run produces the same bytes as an uninterrupted one. Every file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from carla_bridge.classes import OBJECT_CLASSES, category_id
from carla_bridge.dataset.io import (
    atomic_write_bytes,
    atomic_write_json,
    encode_flow_npz,
    encode_jpeg,
    encode_palette_png,
    encode_png16,
)
from carla_bridge.dataset.rle import rle as _rle
from carla_bridge.frame import Frame
from carla_bridge.scenario import ScenarioConfig

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SplitSpec:
    """A split's sequences: seeds ``base_seed + i`` for ``i < sequences``."""

    name: str
    base_seed: int
    sequences: int
    frames_per_sequence: int

    def seeds(self) -> List[int]:
        return [self.base_seed + i for i in range(self.sequences)]


VAL_BASE_SEED = 1_000_000_000  # validation seeds live here; train seeds stay below
TRAIN_SEED_STRIDE = 100_000  # train sequence i of --seed k has seed k * STRIDE + i


def train_split(seed: int, sequences: int, frames: int) -> SplitSpec:
    """Train split of a generator seed; raises ``ValueError`` if it could reach the val seeds."""
    if not 0 <= seed < VAL_BASE_SEED // TRAIN_SEED_STRIDE:
        raise ValueError(
            f"--seed {seed} out of range: use 0..{VAL_BASE_SEED // TRAIN_SEED_STRIDE - 1} "
            "(larger seeds would overlap the validation split)"
        )
    if not 0 <= sequences <= TRAIN_SEED_STRIDE:
        raise ValueError(f"train sequences must be in 0..{TRAIN_SEED_STRIDE}, got {sequences}")
    return SplitSpec("train", seed * TRAIN_SEED_STRIDE, sequences, frames)


def _seq_name(i: int) -> str:
    return f"{i:05d}"


def _frame_paths(root: str, split: str, seq: str, idx: int) -> Dict[str, str]:
    base = os.path.join(root, split)
    name = f"{idx:06d}"
    return {
        "image": os.path.join(base, "images", seq, name + ".jpg"),
        "lane_class": os.path.join(base, "lane_class", seq, name + ".png"),
        "lane_instance": os.path.join(base, "lane_instance", seq, name + ".png"),
        "flow": os.path.join(base, "flow", seq, name + ".npz"),
    }


def _part_path(root: str, split: str, seq: str) -> str:
    return os.path.join(root, split, "annotations", "parts", seq + ".json")


def ignore_thresholds(width: int, height: int) -> Dict[str, int]:
    """Objects below these sizes are flagged ``"ignore": true`` (too small to expect detections;
    evaluators and trainers should treat them like COCO crowd regions)."""
    return {"min_area": max(16, width * height // 2500), "min_height": max(4, height // 48)}


def is_ignored(area: int, bbox_height: float, thresholds: Dict[str, int]) -> bool:
    """The ``ignore`` flag of an object of ``area`` visible pixels (:func:`ignore_thresholds`)."""
    return bool(area < thresholds["min_area"] or bbox_height < thresholds["min_height"])


def ignore_flags(frame: Frame) -> List[bool]:
    """:func:`is_ignored` of each of ``frame.objects`` at the frame's image size."""
    h, w = frame.image.shape[:2]
    ign = ignore_thresholds(w, h)
    return [is_ignored(int(np.count_nonzero(o.mask)), o.bbox[3], ign) for o in frame.objects]


def frame_record(frame: Frame) -> Dict[str, Any]:
    """JSON-ready labels of one frame (objects with RLE masks, lane polylines, meta)."""
    objs = []
    h, w = frame.image.shape[:2]
    ign = ignore_thresholds(w, h)
    for o in frame.objects:
        area = int(np.count_nonzero(o.mask))
        objs.append(
            {
                "track_id": int(o.track_id),
                "category_id": category_id(o.category),
                "bbox": [round(float(v), 2) for v in o.bbox],
                "area": area,
                "segmentation": _rle(o.mask, o.bbox, area),
                "visible_fraction": float(o.visible_fraction),
                "truncated": float(o.truncated),
                "ignore": is_ignored(area, o.bbox[3], ign),
            }
        )
    lines = [
        {
            "id": int(ln.line_id),
            "type": ln.type,
            "color": ln.color,
            "points": [[round(float(x), 2), round(float(y), 2)] for x, y in ln.points],
        }
        for ln in frame.lane_lines
    ]
    return {
        "index": frame.index,
        "timestamp": round(float(frame.timestamp), 6),
        "objects": objs,
        "lines": lines,
        "meta": {k: v for k, v in frame.meta.items() if isinstance(v, (str, int, float))},
    }


def write_frame(root: str, split: str, frame: Frame, compress_flow: bool = True) -> None:
    """Write the four per-frame files of ``frame`` (those already present are kept)."""
    paths = _frame_paths(root, split, frame.sequence, frame.index)
    jobs = {
        "image": lambda: encode_jpeg(frame.image),
        "lane_class": lambda: encode_palette_png(frame.class_mask()),
        "lane_instance": lambda: encode_png16(frame.lane_instance_mask),
        "flow": lambda: encode_flow_npz(
            frame.flow if frame.flow is not None else np.zeros(frame.image.shape[:2] + (2,)),
            frame.flow_valid
            if frame.flow_valid is not None
            else np.zeros(frame.image.shape[:2], bool),
            compress_flow,
        ),
    }
    for key, make in jobs.items():
        if not os.path.exists(paths[key]):
            atomic_write_bytes(paths[key], make())


def _write_and_record(root: str, split: str, frame: Frame, compress_flow: bool) -> Dict[str, Any]:
    write_frame(root, split, frame, compress_flow)
    return frame_record(frame)


def render_sequence(
    task: Tuple[str, str, str, Dict[str, Any], Dict[str, Any], bool],
) -> Tuple[str, str, Optional[Dict[str, Any]]]:
    """Worker: render one sequence and write its frames and annotation part (skips if complete).

    ``task`` = (root, split, sequence name, scenario dict, backend options, compress flow).
    Returns ``(split, sequence, part)``: the annotation part just written (what
    :func:`_merge_split` would read back from it), or None when the sequence was complete.
    """
    import cv2

    cv2.setNumThreads(1)  # one sequence per process: no nested thread pools
    root, split, seq, cfg_dict, backend_kwargs, compress_flow = task
    part = _part_path(root, split, seq)
    config = ScenarioConfig.from_dict(cfg_dict)
    if os.path.exists(part):
        return split, seq, None
    from carla_bridge.backend import make_backend

    backend = make_backend(config, open_now=False, **backend_kwargs)
    records = []
    # frame t is encoded, written and turned into its JSON record by one helper thread while
    # frame t + 1 renders: zlib, cv2 and file I/O release the GIL, so a lone worker uses a
    # second core (at most one frame waits; the files are the same whatever the timing)
    with backend.open(config), ThreadPoolExecutor(1) as writer:
        cam = None
        pending: Optional[Future] = None
        for frame in backend.frames():
            cam = frame.camera
            if pending is not None:
                records.append(pending.result())
            pending = writer.submit(_write_and_record, root, split, frame, compress_flow)
        if pending is not None:
            records.append(pending.result())
    camera = None
    if cam is not None:
        camera = {k: getattr(cam, k) for k in ("width", "height", "fx", "fy", "cx", "cy")}
    content = {"sequence": seq, "seed": config.seed, "camera": camera, "frames": records}
    atomic_write_json(part, content)
    return split, seq, content


def _merge_split(
    root: str, split: str, seqs: List[str], parts: Optional[Dict[str, Dict[str, Any]]] = None
) -> Dict[str, Any]:
    """Build coco.json / ytvis.json / lanes.json of a split from its parts (deterministic).

    ``parts`` (sequence name -> part) holds parts already in memory (those the workers of
    this run returned); the others are read from their files. The output is the same.
    """
    cats = [
        {"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(OBJECT_CLASSES)
    ]
    coco: Dict[str, Any] = {
        "info": {"description": f"carla_bridge {split}"},
        "images": [],
        "annotations": [],
        "categories": cats,
    }
    ytvis: Dict[str, Any] = {
        "info": {"description": f"carla_bridge {split}"},
        "videos": [],
        "annotations": [],
        "categories": cats,
    }
    lanes: Dict[str, Any] = {"images": []}
    img_id = ann_id = track_base = 0
    for vid, seq in enumerate(seqs, start=1):
        part = (parts or {}).get(seq)
        if part is None:
            with open(_part_path(root, split, seq), encoding="utf-8") as fh:
                part = json.load(fh)
        cam = part["camera"] or {"width": 0, "height": 0}
        w, h = int(cam["width"]), int(cam["height"])
        n = len(part["frames"])
        files = [f"{seq}/{fr['index']:06d}.jpg" for fr in part["frames"]]
        ytvis["videos"].append(
            {
                "id": vid,
                "width": w,
                "height": h,
                "length": n,
                "file_names": files,
                "seed": part["seed"],
                "camera": cam,
            }
        )
        tracks: Dict[int, Dict[str, Any]] = {}
        for k, fr in enumerate(part["frames"]):
            img_id += 1
            coco["images"].append(
                {
                    "id": img_id,
                    "file_name": files[k],
                    "width": w,
                    "height": h,
                    "video_id": vid,
                    "sequence": seq,
                    "frame_index": fr["index"],
                    "timestamp": fr["timestamp"],
                    "meta": fr["meta"],
                }
            )
            lanes["images"].append({"file_name": files[k], "lines": fr["lines"]})
            for o in fr["objects"]:
                ann_id += 1
                tid = track_base + o["track_id"]
                coco["annotations"].append(
                    dict(o, id=ann_id, image_id=img_id, iscrowd=0, track_id=tid)
                )
                t = tracks.setdefault(
                    o["track_id"],
                    {
                        "category_id": o["category_id"],
                        "segmentations": [None] * n,
                        "bboxes": [None] * n,
                        "areas": [None] * n,
                        "ignore": True,
                    },
                )
                t["ignore"] = t["ignore"] and o["ignore"]  # ignorable in every frame
                t["segmentations"][k] = o["segmentation"]
                t["bboxes"][k] = o["bbox"]
                t["areas"][k] = o["area"]
        for local in sorted(tracks):
            t = tracks[local]
            ytvis["annotations"].append(
                dict(
                    t,
                    id=len(ytvis["annotations"]) + 1,
                    video_id=vid,
                    iscrowd=0,
                    width=w,
                    height=h,
                    length=1,
                    track_id=track_base + local,
                )
            )
        max_tid = max([o["track_id"] for fr in part["frames"] for o in fr["objects"]] or [0])
        track_base += max(max_tid, 0) + 1
    ann_dir = os.path.join(root, split, "annotations")
    out = {}
    for name, obj in (("coco.json", coco), ("ytvis.json", ytvis), ("lanes.json", lanes)):
        path = os.path.join(ann_dir, name)
        atomic_write_json(path, obj)
        with open(path, "rb") as fh:
            out[name] = hashlib.sha256(fh.read()).hexdigest()
    return {"sequences": len(seqs), "frames": img_id, "objects": ann_id, "sha256": out}
