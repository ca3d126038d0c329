"""Binary masks <-> COCO uncompressed run-length encoding, and boxes from masks (ROS-free).

The encoding is COCO's *uncompressed* RLE, the one ``pycocotools.mask.frPyObjects`` accepts with
``{"size": [height, width], "counts": [...]}``: pixels are read in column-major (Fortran) order and
the run lengths alternate background/foreground, starting with a (possibly empty) background run.
``sum(counts) == height * width`` always holds.

Python 3.8 + NumPy 1.x compatible.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np


def _as_binary_2d(mask: np.ndarray) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be 2-D (height x width), got shape {arr.shape}")
    if arr.dtype != np.bool_:
        arr = arr != 0
    return arr


def mask_to_rle_counts(mask: np.ndarray) -> List[int]:
    """Run lengths of a binary mask (non-zero = foreground) in COCO's uncompressed layout.

    An all-background HxW mask gives ``[H*W]``; an all-foreground one gives ``[0, H*W]``; an empty
    (0-pixel) mask gives ``[0]`` like pycocotools.
    """
    arr = _as_binary_2d(mask)
    if arr.size == 0:
        return [0]
    h, w = arr.shape
    # Only the columns between the first and last with foreground are scanned (an instance mask
    # is mostly background: at 640x480 a 200-px-wide object costs a third of the full scan); the
    # background columns before and after extend the first and last runs.
    cols = np.flatnonzero(arr.any(axis=0))
    if cols.size == 0:
        return [h * w]
    c0, c1 = int(cols[0]), int(cols[-1]) + 1
    flat = arr[:, c0:c1].ravel(order="F").view(np.uint8)
    # Positions where the value changes; runs lie between them.
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = [int(r) for r in np.diff(bounds).tolist()]
    if flat[0]:
        runs.insert(0, 0)
    runs[0] += c0 * h
    if len(runs) % 2:  # ends with a background run
        runs[-1] += (w - c1) * h
    elif c1 < w:
        runs.append((w - c1) * h)
    return runs


def rle_counts_to_mask(counts: Sequence[int], height: int, width: int) -> np.ndarray:
    """Decode uncompressed RLE ``counts`` into a bool mask of ``height x width``.

    Raises ValueError when the counts do not add up to ``height * width`` or hold a negative run.
    """
    if height < 0 or width < 0:
        raise ValueError(f"mask size must be non-negative, got {height}x{width}")
    runs = np.asarray(list(counts), dtype=np.int64)
    if runs.size and runs.min() < 0:
        raise ValueError("RLE counts must be non-negative")
    total = int(runs.sum()) if runs.size else 0
    if total != height * width:
        raise ValueError(
            f"RLE counts sum to {total} but the mask is {height}x{width} = {height * width} pixels"
        )
    values = np.zeros(runs.size, dtype=np.bool_)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return (
        flat.reshape((width, height)).T.copy()
        if flat.size
        else np.zeros((height, width), np.bool_)
    )


def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE dict ``{"size": [h, w], "counts": [...]}`` of a binary mask."""
    arr = _as_binary_2d(mask)
    return {"size": [int(arr.shape[0]), int(arr.shape[1])], "counts": mask_to_rle_counts(arr)}


def mask_area(counts: Sequence[int]) -> int:
    """Foreground pixel count of uncompressed RLE counts (sum of the odd-indexed runs)."""
    return int(sum(int(c) for c in list(counts)[1::2]))


def box_from_mask(mask: np.ndarray) -> Tuple[float, float, float, float]:
    """Tight box ``(x1, y1, x2, y2)`` in pixel-corner coordinates (x2/y2 exclusive).

    A pixel (r, c) covers [c, c+1) x [r, r+1), so a single pixel at (0, 0) gives (0, 0, 1, 1).
    An empty mask gives (0, 0, 0, 0).
    """
    arr = _as_binary_2d(mask)
    rows = np.flatnonzero(arr.any(axis=1))
    if rows.size == 0:
        return (0.0, 0.0, 0.0, 0.0)
    cols = np.flatnonzero(arr.any(axis=0))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def box_from_rle(
    counts: Sequence[int], height: int, width: int
) -> Tuple[float, float, float, float]:
    """Tight ``(x1, y1, x2, y2)`` box of an RLE mask without decoding the full image."""
    runs = np.asarray(list(counts), dtype=np.int64)
    if int(runs.sum()) != height * width:
        raise ValueError(f"RLE counts do not add up to {height}x{width}")
    ends = np.cumsum(runs)
    starts = ends - runs
    fg = np.arange(runs.size) % 2 == 1
    fg &= runs > 0
    if not fg.any() or height == 0:
        return (0.0, 0.0, 0.0, 0.0)
    s = starts[fg]
    e = ends[fg] - 1  # last pixel index (inclusive)
    cols_s, rows_s = s // height, s % height
    cols_e, rows_e = e // height, e % height
    x1 = int(cols_s.min())
    x2 = int(cols_e.max()) + 1
    # A run spanning a column boundary covers whole rows in between.
    spans = cols_e > cols_s
    if spans.any():
        y1, y2 = 0, height
    else:
        y1, y2 = int(rows_s.min()), int(rows_e.max()) + 1
    return (float(x1), float(y1), float(x2), float(y2))


def xyxy_to_xywh(box: Sequence[float]) -> Tuple[float, float, float, float]:
    """``(x1, y1, x2, y2)`` -> COCO ``(x, y, w, h)``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1, y1, x2 - x1, y2 - y1)
