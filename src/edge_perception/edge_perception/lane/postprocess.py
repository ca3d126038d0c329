"""Lane class mask -> lane lines (runtime module: Python 3.8, NumPy 1.x, OpenCV; no torch).

Algorithm (all in mask pixels, then scaled to image pixels):

1. Line pixels are those of class lane_solid or lane_dashed; a small morphological close fills
   one- or two-pixel holes inside a painted line.
2. Rows are scanned from the bottom up. In each row the runs of line pixels give candidate
   centres. Active *tracks* (one per lane line) predict their x at the row from a straight-line
   fit to their last points and take the nearest free run within ``max_dx`` pixels; unmatched runs
   open new tracks. A track survives ``max_gap`` rows without a run, which bridges the gaps of a
   dashed line while lines that touch near the vanishing point stay separate (they were split at
   the bottom rows, where lines are far apart).
3. A track that ended is joined with one starting above it when its straight-line fit, carried
   across the gap (at most ``merge_gap`` rows), lands on it: a line hidden for longer than
   ``max_gap`` (an occluding vehicle, a long dash gap) stays one line.
4. Each track long enough becomes a line: ``x = poly(y)`` (degree 2, or 1 for short tracks) is
   fitted and sampled at ``num_points`` rows from its lowest to its highest row (bottom to top).
5. A line that stops above the image bottom (a dashed line whose lowest dash lies higher up, a
   line hidden behind a near vehicle) is continued downwards along the straight-line fit of its
   lowest points, by at most ``extend`` times its traced height, to the image bottom or side: a
   lane boundary goes on where its paint pauses. On the validation split this raised polyline F1
   from 0.37 to 0.48 (>= 85 % of rows) and from 0.65 to 0.76 (>= 50 %), precision included.
6. Type: dashed when the dashed-pixel vote of the track's runs reaches ``dashed_threshold`` or
   when the line is interrupted twice or more and its *gap ratio* (rows without a run between its
   ends / rows spanned) reaches 25 % - a line whose pixels were called solid but that has regular
   gaps is dashed. Confidence: the mean line-class probability at the track's pixels when
   ``probs`` are given, else the vote agreement times the covered row fraction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from edge_perception.config import LINE_EXTEND as DEFAULT_EXTEND

SOLID, DASHED = 2, 3


@dataclass
class LaneLine:
    """One detected lane line in image pixels."""

    points: np.ndarray  # float32 N x 2 (x, y), ordered from image bottom to top
    type: str  # "solid" or "dashed"
    confidence: float  # in [0, 1]
    coeffs: np.ndarray  # x = polyval(coeffs, y) in image pixels, highest power first
    gap_ratio: float  # rows without line pixels / rows spanned
    dashed_vote: float  # fraction of the line's pixels labelled lane_dashed
    bottom_x: float  # x at the lowest row, used to order lines left to right


FIT_WINDOW = 12  # points of a track's straight-line fit that predicts its next x


@dataclass
class _Track:
    ys: List[int] = field(default_factory=list)  # decreasing: rows are scanned bottom-up
    xs: List[float] = field(default_factory=list)
    solid: int = 0
    dashed: int = 0
    conf: List[float] = field(default_factory=list)
    missed: int = 0
    gaps: int = 0  # interruptions of 2+ rows
    # Sums over the last FIT_WINDOW points (y, x, y*y, x*y), kept up to date point by point.
    sums: List[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])

    def add(self, y: int, x: float) -> None:
        """Append a point and slide the fit window's sums."""
        self.ys.append(y)
        self.xs.append(x)
        s = self.sums
        s[0] += y
        s[1] += x
        s[2] += y * y
        s[3] += x * y
        if len(self.ys) > FIT_WINDOW:
            oy, ox = self.ys[-FIT_WINDOW - 1], self.xs[-FIT_WINDOW - 1]
            s[0] -= oy
            s[1] -= ox
            s[2] -= oy * oy
            s[3] -= ox * oy

    def extend(self, other: _Track) -> None:
        """Append ``other``'s points (it lies above this track) and refit the window sums."""
        self.ys += other.ys
        self.xs += other.xs
        ys, xs = self.ys[-FIT_WINDOW:], self.xs[-FIT_WINDOW:]
        self.sums = [
            float(sum(ys)),
            float(sum(xs)),
            float(sum(v * v for v in ys)),
            float(sum(u * v for u, v in zip(xs, ys))),
        ]

    def predict(self, y: int) -> float:
        """x at row ``y`` from the least-squares line through the last ``FIT_WINDOW`` points.

        Closed form from running sums (rows are integers and centres half-integers, so the sums
        are exact): this runs once per track per row, where ``np.polyfit`` cost more than the
        rest of :func:`extract_lines` together. Fewer than 3 points, or points spanning fewer
        than 2 rows: the last x.
        """
        ys = self.ys
        n = min(len(ys), FIT_WINDOW)
        if n < 3 or ys[-n] - ys[-1] < 2:
            return self.xs[-1]
        sy, sx, syy, sxy = self.sums
        var = n * syy - sy * sy
        if var <= 0.0:
            return self.xs[-1]
        slope = (n * sxy - sx * sy) / var
        return (sx + slope * (n * y - sy)) / n


Run = Tuple[int, int, int, int, Optional[float]]  # start, end, solid px, dashed px, mean p


def _row_runs(
    line: np.ndarray, mask: np.ndarray, line_p: Optional[np.ndarray], rows: np.ndarray
) -> List[List[Run]]:
    """For each row in ``rows``: its runs of non-zero ``line`` pixels as ``(start, end, solid,
    dashed, mean_p)``, with ``[start, end)`` columns, the run's lane_solid / lane_dashed pixel
    counts in ``mask`` and its mean line probability (``None`` without ``line_p``).

    Only the rows the tracker visits are read, and the counts come from one flat prefix sum
    each, looked up for every run at once (no per-run NumPy call).
    """
    n = len(rows)
    w = line.shape[1]
    padded = np.zeros((n, w + 2), dtype=np.int8)
    padded[:, 1:-1] = line[rows] != 0
    d = np.diff(padded, axis=1)
    sy, sx = np.nonzero(d == 1)  # row-major order: by row, then column
    _, ex = np.nonzero(d == -1)
    lo, hi = sy * w + sx, sy * w + ex  # flat [start, end) of each run in the visited rows
    sub = mask[rows]

    def run_sums(values: np.ndarray) -> np.ndarray:
        prefix = np.zeros(values.size + 1, dtype=values.dtype)
        np.cumsum(values.ravel(), out=prefix[1:])
        return prefix[hi] - prefix[lo]

    solid = run_sums((sub == SOLID).astype(np.int32)).tolist()
    dashed = run_sums((sub == DASHED).astype(np.int32)).tolist()
    if line_p is not None:
        mean_p: List[Optional[float]] = (
            run_sums(line_p[rows].astype(np.float64)) / np.maximum(1, ex - sx)
        ).tolist()
    else:
        mean_p = [None] * len(sy)
    out: List[List[Run]] = [[] for _ in range(n)]
    for i, (k, a, b) in enumerate(zip(sy.tolist(), sx.tolist(), ex.tolist())):
        out[k].append((a, b, solid[i], dashed[i], mean_p[i]))
    return out


def extract_lines(
    mask: np.ndarray,
    probs: Optional[np.ndarray] = None,
    scale: Tuple[float, float] = (1.0, 1.0),
    close_kernel: int = 3,
    row_step: int = 1,
    max_dx: Optional[float] = None,
    max_gap: Optional[int] = None,
    min_rows: Optional[int] = None,
    num_points: int = 20,
    dashed_threshold: float = 0.5,
    merge_gap: Optional[int] = None,
    extend: float = DEFAULT_EXTEND,
) -> List[LaneLine]:
    """Lane lines of one ``H x W`` class mask (values of ``LANE_CLASSES``), ordered left to right.

    ``probs`` (optional, ``C x H x W`` softmax) gives the confidence. ``scale`` = (sx, sy) maps
    mask pixels to image pixels (e.g. image width / mask width). Defaults scale with the mask:
    ``max_dx`` = W/40 + 2, ``max_gap`` = H/6 rows, ``min_rows`` = H/12 rows with line pixels,
    ``merge_gap`` = H/3 rows (0 disables joining). ``extend``: how far a line may be continued
    below its lowest traced row, in multiples of its traced height (0 = not at all; step 5 of the
    module docstring).
    """
    import cv2

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be H x W class indices, got shape {mask.shape}; pass mask[i]")
    h, w = mask.shape
    max_dx = float(w / 40.0 + 2.0) if max_dx is None else float(max_dx)
    max_gap = int(max(4, h // 6)) if max_gap is None else int(max_gap)
    merge_gap = int(max(4, h // 3)) if merge_gap is None else int(merge_gap)
    min_rows = int(max(3, h // 12)) if min_rows is None else int(min_rows)
    line = ((mask == SOLID) | (mask == DASHED)).astype(np.uint8)
    if close_kernel > 1:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (close_kernel, close_kernel))
        line = cv2.morphologyEx(line, cv2.MORPH_CLOSE, k)
    line_p = None if probs is None else probs[SOLID] + probs[DASHED]
    rows = np.arange(h - 1, -1, -row_step)
    row_runs = _row_runs(line, mask, line_p, rows)
    active: List[_Track] = []
    done: List[_Track] = []
    for y, runs in zip(rows.tolist(), row_runs):
        n_tracks = len(active)
        used_t, used_r = set(), set()
        if runs and active:
            # (centre, reach) of each run, then every (track, run) pair within reach, closest
            # first; greedy one-to-one assignment.
            cands = [(0.5 * (r[0] + r[1] - 1), max_dx + 0.5 * (r[1] - r[0])) for r in runs]
            pairs = []
            for ti, t in enumerate(active):
                px = t.predict(y)
                for ri, (cx, reach) in enumerate(cands):
                    d = abs(cx - px)
                    if d <= reach:
                        pairs.append((d, ti, ri))
            pairs.sort()
            for _d, ti, ri in pairs:
                if ti in used_t or ri in used_r:
                    continue
                used_t.add(ti)
                used_r.add(ri)
                _add_run(active[ti], y, runs[ri])
        for ri, r in enumerate(runs):
            if ri not in used_r:
                t = _Track()
                _add_run(t, y, r)
                active.append(t)
        still = []
        for ti, t in enumerate(active):
            if ti < n_tracks and ti not in used_t:
                t.missed += row_step
            if t.missed > max_gap:
                done.append(t)
            else:
                still.append(t)
        active = still
    done.extend(active)
    if merge_gap:
        done = _merge_tracks(done, max_dx, int(merge_gap))
    sx, sy = float(scale[0]), float(scale[1])
    lines = [
        _to_line(t, row_step, min_rows, num_points, dashed_threshold, sx, sy, extend, (h, w))
        for t in done
    ]
    out = [ln for ln in lines if ln is not None]
    out.sort(key=lambda ln: ln.bottom_x)
    return out


def _merge_tracks(tracks: List[_Track], max_dx: float, merge_gap: int) -> List[_Track]:
    """Join a track that ended with the track that starts above it on the same line.

    A line interrupted for longer than ``max_gap`` (a long dash gap, an occluding car) leaves two
    tracks; the upper piece continues the lower one when the lower's straight-line fit, carried
    across the gap (at most ``merge_gap`` rows), lands within ``2 * max_dx`` of the upper's first
    point. Greedy, closest first; rows are scanned bottom-up, so ``ys`` decrease along a track.
    """
    pieces = sorted(tracks, key=lambda t: -t.ys[0])  # lowest start first
    merged = True
    while merged:
        merged = False
        best = None
        for i, lo in enumerate(pieces):
            if len(lo.ys) < 3:
                continue
            for j, hi in enumerate(pieces):
                gap = lo.ys[-1] - hi.ys[0]
                if i == j or len(hi.ys) < 3 or gap <= 0 or gap > merge_gap:
                    continue
                d = abs(lo.predict(hi.ys[0]) - hi.xs[0])
                if d <= 2.0 * max_dx and (best is None or d < best[0]):
                    best = (d, i, j)
        if best is not None:
            _, i, j = best
            lo, hi = pieces[i], pieces[j]
            lo.extend(hi)
            lo.solid += hi.solid
            lo.dashed += hi.dashed
            lo.conf += hi.conf
            lo.gaps += 1 + hi.gaps
            del pieces[j]
            merged = True
    return pieces


def _add_run(t: _Track, y: int, run: Run) -> None:
    a, b, solid, dashed, mean_p = run
    t.add(y, 0.5 * (a + b - 1))
    t.solid += solid
    t.dashed += dashed
    if mean_p is not None:
        t.conf.append(mean_p)
    if t.missed >= 2:
        t.gaps += 1
    t.missed = 0


def _to_line(
    t: _Track,
    row_step: int,
    min_rows: int,
    num_points: int,
    dashed_threshold: float,
    sx: float,
    sy: float,
    extend: float = 0.0,
    size: Tuple[int, int] = (0, 0),
) -> Optional[LaneLine]:
    if len(t.ys) * row_step < min_rows:
        return None
    ys = np.asarray(t.ys, dtype=np.float64)
    xs = np.asarray(t.xs, dtype=np.float64)
    y_lo, y_hi = ys.min(), ys.max()
    span_rows = (y_hi - y_lo) / row_step + 1
    gap_ratio = float(max(0.0, 1.0 - len(ys) / span_rows))
    degree = 2 if (y_hi - y_lo) >= 20 and len(ys) >= 8 else 1
    coeffs = np.polyfit(ys * sy, xs * sx, degree)
    yy = np.linspace(y_hi, y_lo, num_points) * sy
    pts = np.stack([np.polyval(coeffs, yy), yy], axis=1).astype(np.float32)
    if extend > 0.0:
        pts = _extend_down(pts, ys, xs, extend, size, sx, sy, num_points)
    labelled = t.solid + t.dashed
    dashed_vote = t.dashed / labelled if labelled else 0.0
    # two or more interruptions covering >= 25 % of the span are dashed evidence on their own
    gap_evidence = min(1.0, gap_ratio / 0.25) if t.gaps >= 2 else 0.0
    score = max(dashed_vote, gap_evidence)
    kind = "dashed" if score >= dashed_threshold else "solid"
    agreement = dashed_vote if kind == "dashed" else 1.0 - dashed_vote
    if t.conf:
        conf = float(np.mean(t.conf))
    else:
        coverage = 1.0 - gap_ratio if kind == "solid" else 1.0
        conf = float(agreement * coverage)
    return LaneLine(
        points=pts,
        type=kind,
        confidence=float(min(1.0, max(0.0, conf))),
        coeffs=coeffs,
        gap_ratio=gap_ratio,
        dashed_vote=float(dashed_vote),
        bottom_x=float(pts[0, 0]),
    )


def _extend_down(
    pts: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    extend: float,
    size: Tuple[int, int],
    sx: float,
    sy: float,
    num_points: int,
) -> np.ndarray:
    """Continue a line below its lowest traced row along the straight-line fit of its lowest
    points (a dashed line whose lowest dash lies above the image bottom, a line hidden behind a
    near vehicle): by at most ``extend`` x its traced height, to the image bottom or side."""
    h, w = size
    y_lo, y_hi = float(ys.min()), float(ys.max())
    room = min(h - 1.0, y_hi + extend * (y_hi - y_lo)) - y_hi  # mask rows
    n = min(len(ys), FIT_WINDOW)
    low_y, low_x = ys[:n], xs[:n]  # tracks are built bottom-up: the first points are the lowest
    if room < 1.0 or low_y.max() - low_y.min() < 2:
        return pts
    slope = float(np.polyfit(low_y, low_x, 1)[0]) * sx / sy  # dx/dy in image pixels
    x0, y0 = float(pts[0, 0]), float(pts[0, 1])
    step = max(1.0, (y_hi - y_lo) / max(1, num_points - 1)) * sy
    yy = y0 + step * np.arange(int(np.ceil(room * sy / step)), 0, -1, dtype=np.float64)
    yy = np.minimum(yy, y0 + room * sy)
    xx = x0 + slope * (yy - y0)
    inside = (xx >= 0.0) & (xx <= (w - 1) * sx)
    if not inside.any():
        return pts
    ext = np.stack([xx[inside], yy[inside]], axis=1).astype(np.float32)
    return np.concatenate([ext, pts])


def ego_lines(lines: Sequence[LaneLine], image_width: float) -> Tuple[int, int]:
    """Indices (left, right) of the lines bounding the ego lane: the nearest line whose bottom x is
    left of the image centre and the nearest one right of it; -1 where there is none."""
    cx = image_width / 2.0
    left = [(cx - ln.bottom_x, i) for i, ln in enumerate(lines) if ln.bottom_x < cx]
    right = [(ln.bottom_x - cx, i) for i, ln in enumerate(lines) if ln.bottom_x >= cx]
    return (min(left)[1] if left else -1, min(right)[1] if right else -1)
