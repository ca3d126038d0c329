"""Readers of a generated dataset (used by tests, training data loaders and the evaluator)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

from carla_bridge.dataset.io import read_flow, read_image, read_mask
from edge_perception import datafiles

SPLITS = ("train", "val")


def _check(root: str, split: Optional[str] = None) -> None:
    if not os.path.isfile(os.path.join(root, "manifest.json")):
        raise FileNotFoundError(
            f"{root} is not a complete carla_bridge dataset (no manifest.json); "
            "create it with `carla-bridge generate --out DIR` (re-run it to finish an "
            "interrupted generation)"
        )
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")


def load_manifest(root: str) -> Dict[str, Any]:
    """The dataset's ``manifest.json`` (config, versions, class tables, splits, data_version)."""
    _check(root)
    return datafiles.read_json(os.path.join(root, "manifest.json"), "data set manifest")


_REGENERATE = "regenerate it with `carla-bridge generate`"


def _load_json(root: str, split: str, name: str, required: tuple = ()) -> Dict[str, Any]:
    _check(root, split)
    path = os.path.join(root, split, "annotations", name)
    return datafiles.read_json(path, name, required=required, hint=_REGENERATE)


def load_coco(root: str, split: str) -> Dict[str, Any]:
    """The split's COCO dict (``pycocotools.coco.COCO`` accepts it via ``coco.dataset``)."""
    coco = _load_json(root, split, "coco.json", ("images", "annotations", "categories"))
    path = os.path.join(root, split, "annotations", "coco.json")
    for key, fields in (("images", ("id", "file_name")), ("annotations", ("image_id",))):
        if not isinstance(coco[key], list):
            raise datafiles.DataError(path, f"coco.json {key!r} must be a list")
        for k, entry in enumerate(coco[key]):
            datafiles.require_keys(path, entry, fields, f"coco.json {key}[{k}]", _REGENERATE)
    return coco


def load_ytvis(root: str, split: str) -> Dict[str, Any]:
    """The split's YouTube-VIS dict (videos, per-track per-frame RLE masks and boxes)."""
    return _load_json(root, split, "ytvis.json", ("videos", "annotations"))


def load_lanes(root: str, split: str) -> Dict[str, Any]:
    """The split's lane polylines ``{"images": [{"file_name", "lines": [...]}]}``."""
    return _load_json(root, split, "lanes.json", ("images",))


@dataclass
class DatasetFrame:
    """One frame read back from disk."""

    split: str
    file_name: str  # "<seq>/<idx:06d>.jpg", relative to <split>/images
    sequence: str
    index: int
    image: np.ndarray  # RGB uint8
    lane_class: np.ndarray  # uint8 H x W, indices into LANE_CLASSES
    lane_instance: np.ndarray  # uint16 H x W
    annotations: List[Dict[str, Any]]  # COCO annotations of this image
    lines: List[Dict[str, Any]]  # lanes.json lines of this image
    flow: Optional[np.ndarray] = None  # float32 H x W x 2 (backward), if requested
    flow_valid: Optional[np.ndarray] = None
    meta: Dict[str, Any] = field(default_factory=dict)


def iter_frames(
    root: str, split: str, with_flow: bool = False, sequences: Optional[List[str]] = None
) -> Iterator[DatasetFrame]:
    """Frames of a split in (sequence, index) order, with their labels decoded."""
    coco = load_coco(root, split)
    lanes = {im["file_name"]: im["lines"] for im in load_lanes(root, split)["images"]}
    by_image: Dict[int, List[Dict[str, Any]]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    base = os.path.join(root, split)
    for im in coco["images"]:
        seq = im["sequence"]
        if sequences is not None and seq not in sequences:
            continue
        stem = os.path.splitext(im["file_name"])[0]
        fr = DatasetFrame(
            split=split,
            file_name=im["file_name"],
            sequence=seq,
            index=int(im["frame_index"]),
            image=read_image(os.path.join(base, "images", im["file_name"])),
            lane_class=read_mask(os.path.join(base, "lane_class", stem + ".png")),
            lane_instance=read_mask(os.path.join(base, "lane_instance", stem + ".png")),
            annotations=by_image.get(im["id"], []),
            lines=lanes.get(im["file_name"], []),
            meta=im.get("meta", {}),
        )
        if with_flow:
            fr.flow, fr.flow_valid = read_flow(os.path.join(base, "flow", stem + ".npz"))
        yield fr
