"""Lane-line (polyline) metrics: how well published lane lines match the ground-truth polylines.

In the spirit of the TuSimple benchmark: a ground-truth line is sampled every ``row_step`` image
rows over its own vertical extent; a predicted line is *correct at a row* when its x there (linear
interpolation along the predicted polyline) is within ``x_tol`` pixels; rows the prediction does
not reach count as misses. The *accuracy* of a (prediction, ground truth) pair is the fraction of
correct rows, and pairs with accuracy >= ``min_accuracy`` may match, one to one, maximising the
summed accuracy (Hungarian assignment). Precision / recall / F1 count matched lines; ``type_acc``
is the fraction of matched lines whose type (solid/dashed) is right.

Pure NumPy + SciPy; coordinates are (x, y) pixels of one image size for both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

Line = Tuple[np.ndarray, str]  # (N x 2 float (x, y) points, "solid" | "dashed")


def _x_at(points: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """x of a polyline at rows ``ys`` (NaN outside its vertical extent)."""
    p = np.asarray(points, dtype=np.float64)
    order = np.argsort(p[:, 1], kind="stable")
    y, x = p[order, 1], p[order, 0]
    out = np.interp(ys, y, x)
    out[(ys < y[0]) | (ys > y[-1])] = np.nan
    return out


def pair_accuracy(pred: np.ndarray, gt: np.ndarray, x_tol: float, row_step: float = 4.0) -> float:
    """Fraction of the ground-truth line's sampled rows where ``pred`` is within ``x_tol`` px."""
    g = np.asarray(gt, dtype=np.float64)
    y0, y1 = float(g[:, 1].min()), float(g[:, 1].max())
    ys = np.arange(y0, y1 + 1e-9, row_step) if y1 > y0 else np.array([y0])
    gx = _x_at(g, ys)
    px = _x_at(pred, ys) if len(pred) >= 2 else np.full_like(ys, np.nan)
    ok = np.abs(px - gx) <= x_tol  # NaN compares False: rows the prediction misses
    return float(ok.mean())


def match_lines(
    pred: Sequence[Line], gt: Sequence[Line], x_tol: float, min_accuracy: float = 0.85
) -> List[Tuple[int, int, float]]:
    """One-to-one matches ``(pred index, gt index, accuracy)`` with accuracy >= min_accuracy."""
    if not pred or not gt:
        return []
    from scipy.optimize import linear_sum_assignment

    acc = np.array([[pair_accuracy(p[0], g[0], x_tol) for g in gt] for p in pred])
    score = np.where(acc >= min_accuracy, acc, 0.0)
    rows, cols = linear_sum_assignment(-score)
    return [(int(r), int(c), float(acc[r, c])) for r, c in zip(rows, cols) if score[r, c] > 0]


@dataclass
class LaneLineMeter:
    """Accumulates line matches over frames; :meth:`compute` gives P / R / F1 / type accuracy.

    ``x_tol``: pixels (TuSimple's 20 px at 1280 wide is ~8 px at 512 wide);
    ``min_points``: ground-truth lines with fewer points are ignored (barely visible stubs).
    """

    x_tol: float = 8.0
    min_accuracy: float = 0.85
    min_points: int = 2
    tp: int = 0
    fp: int = 0
    fn: int = 0
    type_ok: int = 0
    accuracy_sum: float = 0.0
    frames: int = 0

    def update(self, pred: Sequence[Line], gt: Sequence[Line]) -> List[Tuple[int, int, float]]:
        """Add one frame; returns its matches (indices into ``pred`` and the kept ``gt``)."""
        kept = [g for g in gt if len(g[0]) >= self.min_points]
        matches = match_lines(pred, kept, self.x_tol, self.min_accuracy)
        self.tp += len(matches)
        self.fp += len(pred) - len(matches)
        self.fn += len(kept) - len(matches)
        self.type_ok += sum(1 for p, g, _ in matches if pred[p][1] == kept[g][1])
        self.accuracy_sum += sum(a for _, _, a in matches)
        self.frames += 1
        return matches

    def compute(self) -> Dict[str, Optional[float]]:
        """``precision``, ``recall``, ``f1``, ``type_accuracy``, ``matched_accuracy`` (mean row
        accuracy of matched lines), counts and settings (JSON-serialisable)."""
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else None
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else None
        f1 = 2 * p * r / (p + r) if p is not None and r is not None and p + r > 0 else None
        return {
            "precision": p,
            "recall": r,
            "f1": f1,
            "type_accuracy": self.type_ok / self.tp if self.tp else None,
            "matched_accuracy": self.accuracy_sum / self.tp if self.tp else None,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "frames": self.frames,
            "x_tol_px": self.x_tol,
            "min_accuracy": self.min_accuracy,
        }
