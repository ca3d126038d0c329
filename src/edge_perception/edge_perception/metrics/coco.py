"""COCO average precision (boxes and instance masks) through pycocotools.

One entry point, :func:`coco_map`, evaluates predictions against a ground-truth COCO dict (or a
``coco.json`` path, e.g. ``<root>/val/annotations/coco.json``) and returns a :class:`CocoMetrics`
with mAP@[.50:.95], mAP@.50, mAP@.75, the small / medium / large breakdown and the per-class AP
(all in [0, 1]).

Conventions:

- predictions are a list of COCO result dicts (``image_id``, ``category_id``, ``score`` and
  ``bbox`` as x, y, w, h -- or ``segmentation`` as an RLE dict for ``iou_type="segm"``) or, for
  boxes, an array N x 7 ``[image_id, x, y, w, h, score, category_id]``;
- an empty prediction set is valid and scores 0 wherever ground truth exists;
- a value that COCO leaves undefined (no ground truth of that class / size range) is ``nan`` and is
  left out of the means, exactly like pycocotools' own ``-1`` entries;
- at most ``max_dets`` (default 100) detections per image count, highest scores first.

Written for Python 3.8 + NumPy 1.x (evaluation also runs on the edge board).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

GroundTruth = Union[str, "os.PathLike[str]", Dict[str, Any]]
Predictions = Union[Sequence[Dict[str, Any]], np.ndarray]

_IOU_TYPES = ("bbox", "segm")


@dataclass
class CocoMetrics:
    """COCO AP numbers in [0, 1]; ``nan`` where COCO leaves a value undefined."""

    map: float
    map50: float
    map75: float
    map_small: float
    map_medium: float
    map_large: float
    ar100: float
    per_class: Dict[str, float] = field(default_factory=dict)
    per_class_ap50: Dict[str, float] = field(default_factory=dict)
    #: ground-truth objects per class that count (not crowd / ignore) in the evaluated images,
    #: and how many distinct ``track_id`` they belong to (0 where annotations carry none): a
    #: class AP over one object seen in 30 frames measures that object, not the class
    support: Dict[str, int] = field(default_factory=dict)
    support_tracks: Dict[str, int] = field(default_factory=dict)
    num_images: int = 0
    num_predictions: int = 0
    iou_type: str = "bbox"

    def as_dict(self) -> Dict[str, Any]:
        """Plain dict (JSON-ready: ``nan`` becomes ``None``)."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and math.isnan(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            return v

        return {k: clean(v) for k, v in asdict(self).items()}


def load_ground_truth(gt: GroundTruth) -> Dict[str, Any]:
    """Read a COCO ground-truth dict from a path (or copy a given dict) and validate its keys."""
    if isinstance(gt, dict):
        data = copy.deepcopy(gt)
    else:
        path = os.fspath(gt)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"COCO ground truth {path!r} does not exist")
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    for key in ("images", "categories"):
        if key not in data:
            raise ValueError(f"COCO ground truth lacks the {key!r} list")
    data.setdefault("annotations", [])
    data.setdefault("info", {})
    for i, ann in enumerate(data["annotations"]):
        ann.setdefault("iscrowd", 0)
        if ann.get("ignore"):
            # carla_bridge flags objects too small to be fair targets with ``ignore``; COCOeval
            # reads only ``iscrowd`` (it overwrites ``ignore``), and a crowd region is exactly
            # "neither a positive nor a false positive".
            ann["iscrowd"] = 1
        ann.setdefault("id", i + 1)
        if "area" not in ann and "bbox" in ann:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
    return data


def _as_result_list(predictions: Predictions, iou_type: str) -> List[Dict[str, Any]]:
    if isinstance(predictions, np.ndarray):
        if iou_type != "bbox":
            raise ValueError("array predictions are only defined for iou_type='bbox'")
        arr = np.asarray(predictions, dtype=np.float64)
        if arr.size == 0:
            return []
        if arr.ndim != 2 or arr.shape[1] != 7:
            raise ValueError(
                "array predictions must be N x 7 [image_id, x, y, w, h, score, category_id], "
                f"got shape {arr.shape}"
            )
        return [
            {
                "image_id": int(r[0]),
                "bbox": [float(r[1]), float(r[2]), float(r[3]), float(r[4])],
                "score": float(r[5]),
                "category_id": int(r[6]),
            }
            for r in arr
        ]
    out = []
    key = "bbox" if iou_type == "bbox" else "segmentation"
    for i, p in enumerate(predictions):
        missing = [k for k in ("image_id", "category_id", "score", key) if k not in p]
        if missing:
            raise ValueError(f"prediction {i} lacks {missing} (iou_type={iou_type!r})")
        out.append(dict(p))
    return out


def _result_coco(gt_coco: Any, results: List[Dict[str, Any]], iou_type: str) -> Any:
    """A pycocotools COCO object holding the results (also when there are none)."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    known_images = set(gt_coco.getImgIds())
    known_cats = set(gt_coco.getCatIds())
    anns = []
    for i, r in enumerate(results):
        if r["image_id"] not in known_images:
            raise ValueError(f"prediction {i} has unknown image_id {r['image_id']!r}")
        if r["category_id"] not in known_cats:
            cat = r["category_id"]
            raise ValueError(f"prediction {i} has unknown category_id {cat!r}")
        ann = dict(r, id=i + 1, iscrowd=0)
        if iou_type == "bbox":
            x, y, w, h = (float(v) for v in r["bbox"])
            ann["bbox"] = [x, y, w, h]
            ann["area"] = w * h
        else:
            segm = dict(r["segmentation"])
            if isinstance(segm.get("counts"), bytes):
                segm["counts"] = segm["counts"].decode("ascii")
            ann["segmentation"] = segm
            ann["area"] = float(mask_utils.area(segm))
            ann["bbox"] = [float(v) for v in mask_utils.toBbox(segm)]
        anns.append(ann)
    res = COCO()
    res.dataset = {
        "images": list(gt_coco.dataset["images"]),
        "categories": copy.deepcopy(gt_coco.dataset["categories"]),
        "annotations": anns,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        res.createIndex()
    return res


def _mean_valid(x: np.ndarray) -> float:
    valid = x[x > -1]
    return float(valid.mean()) if valid.size else float("nan")


def coco_map(
    gt: GroundTruth,
    predictions: Predictions,
    iou_type: str = "bbox",
    max_dets: int = 100,
    image_ids: Optional[Sequence[int]] = None,
) -> CocoMetrics:
    """Evaluate ``predictions`` against ``gt`` with the COCO protocol (101-point interpolated AP).

    ``image_ids`` restricts evaluation to those images (default: every image of ``gt``; images
    without any prediction count as missed). Raises ``ValueError`` for malformed predictions,
    unknown image / category ids or an unknown ``iou_type``.
    """
    if iou_type not in _IOU_TYPES:
        raise ValueError(f"iou_type must be one of {_IOU_TYPES}, got {iou_type!r}")
    if max_dets < 1:
        raise ValueError(f"max_dets must be >= 1, got {max_dets}")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data = load_ground_truth(gt)
    if iou_type == "segm":
        bad = [a.get("id") for a in data["annotations"] if "segmentation" not in a]
        if bad:
            raise ValueError(f"segm evaluation: ground-truth annotations {bad[:5]} lack a mask")
    gt_coco = COCO()
    gt_coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        gt_coco.createIndex()
    results = _as_result_list(predictions, iou_type)
    dt_coco = _result_coco(gt_coco, results, iou_type)

    ev = COCOeval(gt_coco, dt_coco, iouType=iou_type)
    ev.params.maxDets = [1, 10, max_dets]
    if image_ids is not None:
        ev.params.imgIds = sorted(int(i) for i in image_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
    # precision: [T iou thresholds, R recall points, K classes, A area ranges, M max dets]
    prec = ev.eval["precision"]
    recall = ev.eval["recall"]  # [T, K, A, M]
    iou_thrs = ev.params.iouThrs
    t50 = int(np.argmin(np.abs(iou_thrs - 0.5)))
    t75 = int(np.argmin(np.abs(iou_thrs - 0.75)))
    a_all, a_small, a_medium, a_large = 0, 1, 2, 3
    m = len(ev.params.maxDets) - 1

    cat_names = {c["id"]: c["name"] for c in data["categories"]}
    per_class, per_class_ap50 = {}, {}
    for k, cat_id in enumerate(ev.params.catIds):
        per_class[cat_names[cat_id]] = _mean_valid(prec[:, :, k, a_all, m])
        per_class_ap50[cat_names[cat_id]] = _mean_valid(prec[t50, :, k, a_all, m])
    evaluated = set(int(i) for i in ev.params.imgIds)
    video_of = {int(im["id"]): im.get("video_id", im.get("sequence")) for im in data["images"]}
    support = {n: 0 for n in per_class}
    tracks: Dict[str, set] = {n: set() for n in per_class}
    for ann in data["annotations"]:
        name = cat_names.get(ann.get("category_id"))
        if name in support and not ann.get("iscrowd") and int(ann["image_id"]) in evaluated:
            support[name] += 1
            if ann.get("track_id") is not None:
                tracks[name].add((video_of.get(int(ann["image_id"])), ann["track_id"]))

    return CocoMetrics(
        map=_mean_valid(prec[:, :, :, a_all, m]),
        map50=_mean_valid(prec[t50, :, :, a_all, m]),
        map75=_mean_valid(prec[t75, :, :, a_all, m]),
        map_small=_mean_valid(prec[:, :, :, a_small, m]),
        map_medium=_mean_valid(prec[:, :, :, a_medium, m]),
        map_large=_mean_valid(prec[:, :, :, a_large, m]),
        ar100=_mean_valid(recall[:, :, a_all, m]),
        per_class=per_class,
        per_class_ap50=per_class_ap50,
        support=support,
        support_tracks={n: len(t) for n, t in tracks.items()},
        num_images=len(ev.params.imgIds),
        num_predictions=len(results),
        iou_type=iou_type,
    )


def boxes_to_results(
    image_id: int,
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    label_offset: int = 1,
    min_score: float = 0.0,
) -> List[Dict[str, Any]]:
    """COCO result dicts from one image's detector output (x1, y1, x2, y2 boxes, 0-based labels).

    ``label_offset`` maps the 0-based class index to the COCO category id (default +1, the
    project's class table convention).
    """
    boxes_xyxy = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if not (len(boxes_xyxy) == len(scores) == len(labels)):
        raise ValueError(
            "boxes, scores and labels differ in length: "
            f"{len(boxes_xyxy)}, {len(scores)}, {len(labels)}"
        )
    out = []
    for b, s, lab in zip(boxes_xyxy, scores, labels):
        if s < min_score:
            continue
        out.append(
            {
                "image_id": int(image_id),
                "category_id": int(lab) + label_offset,
                "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                "score": float(s),
            }
        )
    return out
