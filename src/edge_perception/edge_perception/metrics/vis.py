"""Video instance segmentation metrics: per-frame mask AP and YouTube-VIS video AP.

- :func:`frame_mask_ap`: COCO ``segm`` AP of per-frame predictions through pycocotools
  (:func:`edge_perception.metrics.coco.coco_map`; ``ignore``-flagged objects count as crowd).
- :func:`video_ap`: the YouTube-VIS protocol, written on ``pycocotools.mask`` (no maintained
  package on the registry). A ground-truth or predicted *track* holds one RLE mask (or ``None``)
  per frame of its video. The spatio-temporal IoU of two tracks is
  ``sum_t |g_t & d_t| / sum_t |g_t | d_t|`` over the video's frames (a frame where only one has a
  mask adds that mask's area to the union). Per video and category, predictions (at most
  ``max_dets`` per video, highest score first) are matched greedily to the best still-free
  ground truth with IoU >= the threshold, as COCOeval does; ground truth flagged ``ignore`` (or
  ``iscrowd``) absorbs matches without counting (its IoU is ``sum |g & d| / sum |d|``, COCO's
  crowd rule) and is never missed. AP per threshold is the 101-point interpolated precision,
  averaged over thresholds 0.50:0.05:0.95 and over the categories that have ground truth, like
  the YouTube-VIS evaluator (which is COCOeval with this IoU).

Tracks are dicts ``{"video_id", "category_id", "segmentations": [rle | None per frame]}`` plus
``"score"`` (predictions) or ``"ignore"`` / ``"iscrowd"`` (ground truth) -- the ``ytvis.json``
annotation layout. RLEs are pycocotools dicts (compressed ``counts`` string or bytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from edge_perception.metrics.coco import CocoMetrics, GroundTruth, coco_map

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def frame_mask_ap(
    gt: GroundTruth,
    predictions: Sequence[Dict[str, Any]],
    max_dets: int = 100,
    image_ids: Optional[Sequence[int]] = None,
) -> CocoMetrics:
    """Per-frame COCO mask AP (``iou_type="segm"``) of result dicts (``image_id``,
    ``category_id``, ``score``, ``segmentation`` RLE) against a COCO ground truth
    (``image_ids``: only those frames)."""
    return coco_map(gt, list(predictions), iou_type="segm", max_dets=max_dets, image_ids=image_ids)


def _rle(seg: Any) -> Any:
    if seg is None:
        return None
    seg = dict(seg)
    if isinstance(seg.get("counts"), list):
        from pycocotools import mask as mask_utils

        h, w = seg["size"]
        return mask_utils.frPyObjects(seg, h, w)
    if isinstance(seg.get("counts"), str):
        seg["counts"] = seg["counts"].encode("ascii")
    return seg


def track_iou(gt: Sequence[Any], dt: Sequence[Any], crowd: bool = False) -> float:
    """Spatio-temporal mask IoU of two tracks (lists of RLE or ``None`` per frame).

    ``crowd``: the ground truth is an ignore region, IoU = ``sum |g & d| / sum |d|``.
    """
    from pycocotools import mask as mask_utils

    if len(gt) != len(dt):
        raise ValueError(f"tracks of different lengths: {len(gt)} vs {len(dt)} frames")
    inter = union = 0.0
    for g, d in zip(gt, dt):
        g, d = _rle(g), _rle(d)
        if g is None and d is None:
            continue
        ad = float(mask_utils.area(d)) if d is not None else 0.0
        if g is None or d is None:
            union += ad if crowd else (ad if d is not None else float(mask_utils.area(g)))
            continue
        i = float(mask_utils.area(mask_utils.merge([g, d], intersect=True)))
        inter += i
        union += ad if crowd else float(mask_utils.area(mask_utils.merge([g, d])))
    return inter / union if union > 0 else 0.0


@dataclass
class VideoAPResult:
    """YouTube-VIS AP numbers in [0, 1] (``nan`` where undefined)."""

    ap: float
    ap50: float
    ap75: float
    recall: float
    per_class: Dict[int, float] = field(default_factory=dict)


def _interp_ap(tp: np.ndarray, scores: np.ndarray, n_gt: int) -> float:
    order = np.argsort(-scores, kind="mergesort")
    tp = tp[order]
    ctp = np.cumsum(tp)
    cfp = np.cumsum(1 - tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1] if precision.size else precision
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    q = np.array([precision[i] if i < precision.size else 0.0 for i in idx])
    return float(q.mean())


def video_ap(
    gt_tracks: Sequence[Dict[str, Any]],
    pred_tracks: Sequence[Dict[str, Any]],
    max_dets: int = 100,
    category_ids: Optional[Sequence[int]] = None,
) -> VideoAPResult:
    """YouTube-VIS video AP of ``pred_tracks`` against ``gt_tracks`` (module docstring)."""
    cats = sorted(
        set(category_ids)
        if category_ids is not None
        else {int(g["category_id"]) for g in gt_tracks}
    )
    videos = sorted({g["video_id"] for g in gt_tracks} | {p["video_id"] for p in pred_tracks})
    preds_by_video: Dict[Any, List[Dict[str, Any]]] = {v: [] for v in videos}
    for p in pred_tracks:
        preds_by_video[p["video_id"]].append(p)
    for v in videos:  # COCOeval keeps the max_dets best per image (video), over all categories
        preds_by_video[v] = sorted(preds_by_video[v], key=lambda p: -float(p["score"]))[:max_dets]
    aps = np.full((len(IOU_THRESHOLDS), len(cats)), np.nan)
    recalls = np.full((len(IOU_THRESHOLDS), len(cats)), np.nan)
    for k, cat in enumerate(cats):
        tps: List[List[float]] = [[] for _ in IOU_THRESHOLDS]
        scores: List[float] = []
        n_gt = 0
        for v in videos:
            gts = [g for g in gt_tracks if g["video_id"] == v and int(g["category_id"]) == cat]
            dts = [p for p in preds_by_video[v] if int(p["category_id"]) == cat]
            crowd = [bool(g.get("ignore") or g.get("iscrowd")) for g in gts]
            n_gt += sum(1 for c in crowd if not c)
            # real ground truth first, ignore regions last (COCOeval's order)
            order = sorted(range(len(gts)), key=lambda i: crowd[i])
            gts = [gts[i] for i in order]
            crowd = [crowd[i] for i in order]
            ious = np.array(
                [
                    [
                        track_iou(g["segmentations"], d["segmentations"], c)
                        for g, c in zip(gts, crowd)
                    ]
                    for d in dts
                ]
            ).reshape(len(dts), len(gts))
            for t, thr in enumerate(IOU_THRESHOLDS):
                taken = [False] * len(gts)
                for di in range(len(dts)):
                    best, m = min(thr, 1 - 1e-10), -1
                    for gi in range(len(gts)):
                        if taken[gi] and not crowd[gi]:
                            continue
                        if m > -1 and not crowd[m] and crowd[gi]:
                            break  # a real match beats any ignore region
                        if ious[di, gi] < best:
                            continue
                        best, m = ious[di, gi], gi
                    if m == -1:
                        tps[t].append(0.0)
                    elif crowd[m]:
                        tps[t].append(-1.0)  # ignored: neither TP nor FP
                    else:
                        taken[m] = True
                        tps[t].append(1.0)
            scores.extend(float(d["score"]) for d in dts)
        if n_gt == 0:
            continue
        sc = np.asarray(scores)
        for t in range(len(IOU_THRESHOLDS)):
            tp = np.asarray(tps[t])
            keep = tp >= 0
            aps[t, k] = _interp_ap(tp[keep], sc[keep], n_gt) if keep.any() else 0.0
            recalls[t, k] = float(tp[keep].sum() / n_gt)

    def mean(x: np.ndarray) -> float:
        x = x[~np.isnan(x)]
        return float(x.mean()) if x.size else float("nan")

    return VideoAPResult(
        ap=mean(aps),
        ap50=mean(aps[0]),
        ap75=mean(aps[5]),
        recall=mean(recalls),
        per_class={c: mean(aps[:, k]) for k, c in enumerate(cats)},
    )
