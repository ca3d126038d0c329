"""Multi-object tracking metrics: CLEAR MOT (MOTA, MOTP, ID switches), IDF1 and HOTA.

The metric definitions come from ``trackeval`` (the reference implementation of HOTA by its
authors; its CLEAR and Identity metrics follow the CLEAR MOT and Ristani et al. definitions), fed
with box IoU as the similarity. This module does the bookkeeping around it:

- a sequence is a list of :class:`FrameTracks` (ids, x1y1x2y2 boxes, 0-based labels) for the
  ground truth and one for the tracker, frame by frame;
- classes are evaluated separately (a track matches only ground truth of its class), then
  combined over classes *detection-averaged* (counts pooled: the headline numbers) and
  *class-averaged* (mean over the classes that have ground truth);
- ground truth flagged ``ignore`` (objects too small to be fair targets) behaves like
  MOTChallenge's distractors: a prediction matched to one (IoU >= 0.5, one-to-one) is removed
  before scoring, and the ignored object itself counts neither as a miss nor as a hit;
- thresholds are trackeval's: a CLEAR / Identity match needs IoU >= 0.5; HOTA averages
  alpha = 0.05 ... 0.95.

All scores are fractions in [0, 1] except MOTA, which is at most 1 and may be negative.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from edge_perception.runtime.tracking import box_iou


@dataclass
class FrameTracks:
    """Objects of one frame: integer track ids, x1y1x2y2 boxes, 0-based labels, ignore flags."""

    ids: np.ndarray
    boxes_xyxy: np.ndarray
    labels: Optional[np.ndarray] = None  # None: every object is class 0
    ignore: Optional[np.ndarray] = None  # ground truth only

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, np.int64).reshape(-1)
        n = self.ids.shape[0]
        self.boxes_xyxy = np.asarray(self.boxes_xyxy, np.float64).reshape(n, 4)
        labels = np.zeros(n, np.int64) if self.labels is None else self.labels
        self.labels = np.asarray(labels, np.int64).reshape(n)
        ignore = np.zeros(n, bool) if self.ignore is None else self.ignore
        self.ignore = np.asarray(ignore, bool).reshape(n)

    @classmethod
    def empty(cls) -> FrameTracks:
        return cls(np.zeros(0, np.int64), np.zeros((0, 4)))


Sequence_ = Tuple[Sequence[FrameTracks], Sequence[FrameTracks]]  # (ground truth, tracker)


@dataclass
class TrackingMetrics:
    """Headline tracking scores plus the counts behind them."""

    hota: float = 0.0
    deta: float = 0.0
    assa: float = 0.0
    loca: float = 0.0
    mota: float = 0.0
    motp: float = 0.0
    idf1: float = 0.0
    idp: float = 0.0
    idr: float = 0.0
    id_switches: int = 0
    fragmentations: int = 0
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    mostly_tracked: int = 0
    mostly_lost: int = 0
    gt_dets: int = 0
    pred_dets: int = 0
    gt_ids: int = 0
    pred_ids: int = 0
    classes: Dict[str, Dict[str, float]] = field(default_factory=dict)
    class_averaged: Dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


HEADLINE = ("hota", "deta", "assa", "mota", "motp", "idf1", "idp", "idr")


def _metrics() -> Tuple[Any, Any, Any]:
    with contextlib.redirect_stdout(io.StringIO()):  # trackeval prints on import / init
        from trackeval.metrics import CLEAR, HOTA, Identity

        return (
            HOTA(),
            CLEAR({"THRESHOLD": 0.5, "PRINT_CONFIG": False}),
            Identity({"THRESHOLD": 0.5, "PRINT_CONFIG": False}),
        )


def _drop_ignored(gt: FrameTracks, pr: FrameTracks, keep_gt: np.ndarray, keep_pr: np.ndarray):
    """Predictions matched (IoU >= 0.5, one-to-one over all gt) to an ignored gt are removed."""
    g_idx, p_idx = np.flatnonzero(keep_gt), np.flatnonzero(keep_pr)
    ign = gt.ignore[g_idx]
    if ign.any() and p_idx.size:
        iou = box_iou(gt.boxes_xyxy[g_idx], pr.boxes_xyxy[p_idx])
        score = np.where(iou >= 0.5 - np.finfo(float).eps, iou, 0.0)
        rows, cols = linear_sum_assignment(-score)
        hit = score[rows, cols] > 0
        drop = set(cols[hit & ign[rows]].tolist())
        p_idx = np.array([p for k, p in enumerate(p_idx) if k not in drop], np.int64)
    return g_idx[~ign], p_idx


def sequence_data(
    gt_frames: Sequence[FrameTracks], pr_frames: Sequence[FrameTracks], label: Optional[int]
) -> Dict[str, Any]:
    """trackeval's per-sequence input for one class (``label=None``: all objects as one class)."""
    if len(gt_frames) != len(pr_frames):
        raise ValueError(
            "ground truth has %d frames, tracker %d" % (len(gt_frames), len(pr_frames))
        )
    gt_ids, pr_ids, sims = [], [], []
    for gt, pr in zip(gt_frames, pr_frames):
        keep_gt = np.ones(len(gt.ids), bool) if label is None else gt.labels == label
        keep_pr = np.ones(len(pr.ids), bool) if label is None else pr.labels == label
        g, p = _drop_ignored(gt, pr, keep_gt, keep_pr)
        gt_ids.append(gt.ids[g])
        pr_ids.append(pr.ids[p])
        sims.append(box_iou(gt.boxes_xyxy[g], pr.boxes_xyxy[p]))
    data: Dict[str, Any] = {"similarity_scores": sims}
    for key, per_frame in (("gt", gt_ids), ("tracker", pr_ids)):
        uniq = np.unique(np.concatenate(per_frame)) if per_frame else np.zeros(0, np.int64)
        data["%s_ids" % key] = [np.searchsorted(uniq, ids).astype(int) for ids in per_frame]
        data["num_%s_ids" % key] = int(uniq.size)
        data["num_%s_dets" % key] = int(sum(len(ids) for ids in per_frame))
    data["num_timesteps"] = len(gt_frames)
    return data


def _summary(
    hota: Dict[str, Any], clear: Dict[str, Any], ident: Dict[str, Any]
) -> Dict[str, float]:
    return {
        "hota": float(np.mean(hota["HOTA"])),
        "deta": float(np.mean(hota["DetA"])),
        "assa": float(np.mean(hota["AssA"])),
        "loca": float(np.mean(hota["LocA"])),
        "mota": float(clear["MOTA"]),
        "motp": float(clear["MOTP"]),
        "idf1": float(ident["IDF1"]),
        "idp": float(ident["IDP"]),
        "idr": float(ident["IDR"]),
        "id_switches": int(clear["IDSW"]),
        "fragmentations": int(clear["Frag"]),
        "true_positives": int(clear["CLR_TP"]),
        "false_positives": int(clear["CLR_FP"]),
        "false_negatives": int(clear["CLR_FN"]),
        "mostly_tracked": int(clear["MT"]),
        "mostly_lost": int(clear["ML"]),
    }


def evaluate_tracking(
    sequences: Mapping[str, Sequence_], class_names: Optional[Sequence[str]] = None
) -> TrackingMetrics:
    """Score a tracker on ``{sequence name: (ground-truth frames, tracker frames)}``.

    ``class_names`` (index = label) evaluates per class; ``None`` ignores labels (one class).
    """
    h_m, c_m, i_m = _metrics()
    labels: List[Optional[int]] = [None] if class_names is None else list(range(len(class_names)))
    per_class: Dict[str, Tuple[Dict, Dict, Dict]] = {}
    counts: Dict[str, Dict[str, int]] = {}
    for label in labels:
        name = "all" if label is None else str(class_names[label])  # type: ignore[index]
        res: Tuple[Dict, Dict, Dict] = ({}, {}, {})
        n = {"gt_dets": 0, "pred_dets": 0, "gt_ids": 0, "pred_ids": 0}
        for seq, (gt_frames, pr_frames) in sequences.items():
            data = sequence_data(gt_frames, pr_frames, label)
            for metric, out in zip((h_m, c_m, i_m), res):
                out[seq] = metric.eval_sequence(data)
            for k in n:
                src = "num_%s_%s" % ("gt" if k.startswith("gt") else "tracker", k.split("_")[1])
                n[k] += data[src]
        if n["gt_dets"] == 0 and n["pred_dets"] == 0:
            continue
        per_class[name] = tuple(  # type: ignore[assignment]
            m.combine_sequences(r) for m, r in zip((h_m, c_m, i_m), res)
        )
        counts[name] = n
    out = TrackingMetrics()
    if not per_class:
        return out
    pooled = [
        m.combine_classes_det_averaged({c: per_class[c][k] for c in per_class})
        for k, m in enumerate((h_m, c_m, i_m))
    ]
    for key, value in _summary(*pooled).items():
        setattr(out, key, value)
    for key in ("gt_dets", "pred_dets", "gt_ids", "pred_ids"):
        setattr(out, key, int(sum(c[key] for c in counts.values())))
    for name, res3 in per_class.items():
        out.classes[name] = dict(_summary(*res3), **counts[name])  # type: ignore[arg-type]
    with_gt = {c: per_class[c] for c in per_class if counts[c]["gt_dets"] > 0}
    if with_gt:
        averaged = [
            m.combine_classes_class_averaged({c: with_gt[c][k] for c in with_gt})
            for k, m in enumerate((h_m, c_m, i_m))
        ]
        summary = _summary(*averaged)
        out.class_averaged = {k: summary[k] for k in HEADLINE}
    return out


def format_tracking(m: TrackingMetrics) -> str:
    """A Markdown table: the pooled row, then one row per class."""
    head = "| classes | HOTA | DetA | AssA | MOTA | IDF1 | IDSW | FP | FN | GT dets | GT ids |"
    rows = [head, "|" + "---|" * 11]

    def row(name: str, d: Mapping[str, Any]) -> str:
        return "| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %d | %d | %d | %d | %d |" % (
            name, d["hota"], d["deta"], d["assa"], d["mota"], d["idf1"], d["id_switches"],
            d["false_positives"], d["false_negatives"], d["gt_dets"], d["gt_ids"],
        )  # fmt: skip

    rows.append(row("**all (pooled)**", m.as_dict()))
    for name, d in m.classes.items():
        rows.append(row(name, d))
    return "\n".join(rows)
