"""Semantic-segmentation metrics: confusion matrix, per-class IoU, mIoU and lane-line F1.

Conventions
-----------
- Masks are integer arrays of class indices (any shape, e.g. ``H x W`` or ``N x H x W``); the
  prediction and the ground truth have the same shape.
- The confusion matrix has ground truth on the rows and prediction on the columns:
  ``cm[g, p]`` counts pixels of true class ``g`` predicted as ``p``.
- IoU of class ``c`` is ``TP / (TP + FP + FN)``. A class absent from *both* the ground truth and
  the prediction has no defined IoU (``nan``) and is excluded from the mean (mIoU), so a validation
  set without, say, dashed lines is not rewarded or punished for them.
- Lane-line F1 at a pixel tolerance ``tol``: a predicted line pixel is a true positive if a ground
  truth line pixel lies within Euclidean distance ``tol``; symmetrically a ground-truth line pixel
  is recalled if a predicted line pixel lies within ``tol``. Precision = matched predicted /
  predicted, recall = matched ground truth / ground truth, F1 their harmonic mean. Distances come
  from an exact Euclidean distance transform, so the cost is linear in the number of pixels.

Counts are accumulated over frames (:class:`SegmentationMeter`) so that the dataset metric is the
ratio of summed counts, not a mean of per-frame ratios.

Python 3.8 compatible (runs on the edge board too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "confusion_matrix",
    "iou_per_class",
    "mean_iou",
    "line_match_counts",
    "LineCounts",
    "SegmentationMeter",
]


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(
            f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}; resize"
            " the prediction to the label size (nearest neighbour) first"
        )
    if not (np.issubdtype(pred.dtype, np.integer) and np.issubdtype(gt.dtype, np.integer)):
        raise TypeError(
            f"masks must hold integer class indices (got {pred.dtype} and {gt.dtype}); take"
            " argmax of the logits"
        )
    return pred, gt


def confusion_matrix(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: Optional[int] = None
) -> np.ndarray:
    """``C x C`` int64 confusion matrix (rows ground truth, columns prediction).

    Pixels whose ground truth equals ``ignore_index`` are skipped. Raises ``ValueError`` if a value
    outside ``[0, num_classes)`` occurs (other than the ignored one), since silently dropping it
    would bias every metric.
    """
    pred, gt = _check_pair(pred, gt)
    p = pred.reshape(-1).astype(np.int64)
    g = gt.reshape(-1).astype(np.int64)
    if ignore_index is not None:
        keep = g != ignore_index
        p, g = p[keep], g[keep]
    for name, arr in (("prediction", p), ("ground truth", g)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            bad = int(arr.min() if arr.min() < 0 else arr.max())
            raise ValueError(
                f"{name} holds class {bad} outside [0, {num_classes}); check num_classes or pass"
                " ignore_index"
            )
    counts = np.bincount(g * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """Per-class IoU from a confusion matrix; ``nan`` for classes absent from GT and prediction."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    out = np.full(tp.shape, np.nan)
    present = union > 0
    out[present] = tp[present] / union[present]
    return out


def mean_iou(cm: np.ndarray) -> float:
    """Mean IoU over the classes present in the ground truth or prediction (``nan`` if none)."""
    iou = iou_per_class(cm)
    if np.all(np.isnan(iou)):
        return float("nan")
    return float(np.nanmean(iou))


@dataclass
class LineCounts:
    """Summable counts behind lane-line precision / recall / F1."""

    pred_matched: int = 0
    pred_total: int = 0
    gt_matched: int = 0
    gt_total: int = 0

    def __add__(self, other: LineCounts) -> LineCounts:
        return LineCounts(
            self.pred_matched + other.pred_matched,
            self.pred_total + other.pred_total,
            self.gt_matched + other.gt_matched,
            self.gt_total + other.gt_total,
        )

    @property
    def precision(self) -> float:
        """Matched predicted line pixels / predicted line pixels (1.0 if nothing predicted)."""
        return self.pred_matched / self.pred_total if self.pred_total else 1.0

    @property
    def recall(self) -> float:
        """Matched ground-truth line pixels / ground-truth line pixels (1.0 if there are none)."""
        return self.gt_matched / self.gt_total if self.gt_total else 1.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall (1.0 when neither mask has a line)."""
        p, r = self.precision, self.recall
        return 2.0 * p * r / (p + r) if (p + r) > 0 else 0.0


def _distance_to(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of each pixel to the nearest True pixel of 2-D ``mask`` (inf if none)."""
    from scipy.ndimage import distance_transform_edt

    if not mask.any():
        return np.full(mask.shape, np.inf)
    return distance_transform_edt(~mask)


def line_match_counts(
    pred: np.ndarray,
    gt: np.ndarray,
    tol: float = 2.0,
    line_classes: Sequence[int] = (2, 3),
) -> LineCounts:
    """Lane-line pixel matching counts for one ``H x W`` frame (or ``N x H x W`` batch).

    Line pixels are those whose class is in ``line_classes`` (default: lane_solid and lane_dashed,
    so a solid/dashed confusion still counts as a found line; pass ``(2,)`` for one type only).
    """
    pred, gt = _check_pair(pred, gt)
    if pred.ndim == 3:
        total = LineCounts()
        for p, g in zip(pred, gt):
            total = total + line_match_counts(p, g, tol, line_classes)
        return total
    if pred.ndim != 2:
        raise ValueError(f"line F1 needs H x W or N x H x W masks, got shape {pred.shape}")
    if tol < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tol!r}")
    pl = np.isin(pred, line_classes)
    gl = np.isin(gt, line_classes)
    n_pred, n_gt = int(pl.sum()), int(gl.sum())
    pred_matched = int((_distance_to(gl)[pl] <= tol).sum()) if n_pred else 0
    gt_matched = int((_distance_to(pl)[gl] <= tol).sum()) if n_gt else 0
    return LineCounts(pred_matched, n_pred, gt_matched, n_gt)


class SegmentationMeter:
    """Accumulates the confusion matrix and line counts over frames; ``compute()`` gives metrics.

    ``class_names`` label the per-class entries of the result; ``line_classes`` and ``tol`` define
    the lane-line F1 (see :func:`line_match_counts`).
    """

    def __init__(
        self,
        class_names: Sequence[str],
        line_classes: Sequence[int] = (2, 3),
        tol: float = 2.0,
        ignore_index: Optional[int] = None,
    ) -> None:
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.line_classes = tuple(line_classes)
        self.tol = float(tol)
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.cm = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.lines = LineCounts()
        self.frames = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one ``H x W`` frame or an ``N x H x W`` batch."""
        self.cm += confusion_matrix(pred, gt, self.num_classes, self.ignore_index)
        if self.line_classes:
            self.lines = self.lines + line_match_counts(pred, gt, self.tol, self.line_classes)
        self.frames += 1 if np.asarray(pred).ndim == 2 else int(np.asarray(pred).shape[0])

    def compute(self) -> Dict[str, object]:
        """Dict with ``miou``, ``iou`` (name -> value or None), ``pixel_acc``, ``line_precision``,
        ``line_recall``, ``line_f1``, ``line_tol_px``, ``frames`` (JSON-serialisable)."""
        iou = iou_per_class(self.cm)
        total = self.cm.sum()
        return {
            "miou": mean_iou(self.cm),
            "iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(self.class_names, iou)},
            "pixel_acc": float(np.trace(self.cm) / total) if total else float("nan"),
            "line_precision": self.lines.precision,
            "line_recall": self.lines.recall,
            "line_f1": self.lines.f1,
            "line_tol_px": self.tol,
            "frames": self.frames,
        }
