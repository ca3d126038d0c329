"""COCO run-length encoding of object masks (``pycocotools.mask.encode`` output, same strings).

With numba installed one compiled pass per mask (:func:`_rle_runs`, :func:`_rle_chars`) scans
the mask's box in column-major order and writes the compressed string's characters; without it
the numpy code of :func:`rle_numpy` computes the same runs.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np


def rle_string(counts: List[int]) -> str:
    """COCO's compressed RLE string of run lengths (pycocotools ``rleToString``)."""
    out = []
    for i, c in enumerate(counts):
        x = c - counts[i - 2] if i > 2 else c
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = x != -1 if ch & 0x10 else x != 0
            out.append(chr((ch | 0x20 if more else ch) + 48))
    return "".join(out)


def _box(mask: np.ndarray, box: Tuple[float, ...]) -> Tuple[int, int, int, int]:
    """Pixel bounds ``(x0, y0, x1, y1)`` of the ``(x, y, w, h)`` box, clipped to the mask."""
    h, w = mask.shape
    bx, by, bw, bh = box
    x0, y0 = max(int(np.floor(bx)), 0), max(int(np.floor(by)), 0)
    x1, y1 = min(int(np.ceil(bx + bw)), w), min(int(np.ceil(by + bh)), h)
    return x0, y0, x1, y1


def rle_numpy(mask: np.ndarray, box: Tuple[float, ...], count: Optional[int] = None) -> str:
    """The compressed RLE string of a boolean mask by numpy, reading only the box when it holds
    every set pixel (else the whole mask); ``count``: the mask's set pixels if known."""
    h, w = mask.shape
    x0, y0, x1, y1 = _box(mask, box)
    sub = mask[y0:y1, x0:x1]
    if count is None:
        count = int(np.count_nonzero(mask))
    if x1 <= x0 or y1 <= y0 or np.count_nonzero(sub) != count:
        x0, y0, x1, y1, sub = 0, 0, w, h, mask
    cols = np.zeros((x1 - x0, y1 - y0 + 2), np.int8)  # one box column per row, zero padded
    cols[:, 1:-1] = sub.T
    step = np.diff(cols, axis=1)
    sc, sr = np.nonzero(step == 1)  # run starts, in column-major order
    ec, er = np.nonzero(step == -1)  # run ends (exclusive)
    starts = (sc + x0) * h + sr + y0
    ends = (ec + x0) * h + er + y0
    # a run reaching the bottom of a column goes on at the top of the next one
    join = ends[:-1] == starts[1:]
    if join.any():
        starts = np.concatenate([starts[:1], starts[1:][~join]])
        ends = np.concatenate([ends[:-1][~join], ends[-1:]])
    edges = np.empty(2 * len(starts) + 2, np.int64)
    edges[0], edges[-1] = 0, h * w
    edges[1:-1:2], edges[2:-1:2] = starts, ends
    counts = np.diff(edges).tolist()
    if len(counts) > 1 and counts[-1] == 0:  # the mask ends with a run of ones
        counts.pop()
    return rle_string(counts)


def _rle_runs(mask, x0, y0, x1, y1, counts):  # noqa: ANN001, ANN202
    """Column-major run lengths (zeros first) of ``mask``, whose pixels outside the box
    ``x0..x1-1`` x ``y0..y1-1`` are taken as 0, into ``counts``; returns (number of runs, set
    pixels seen in the box). ``counts`` needs room for 2 x (set pixels in the box) + 2."""
    h, w = mask.shape
    n = 0
    last = 0
    cur = False
    seen = 0
    for x in range(x0, x1):
        if cur and y0 > 0:  # the rows above the box are zeros
            counts[n] = x * h - last
            n += 1
            last = x * h
            cur = False
        for y in range(y0, y1):
            v = mask[y, x]
            seen += v
            if v != cur:
                p = x * h + y
                counts[n] = p - last
                n += 1
                last = p
                cur = v
        if cur and y1 < h:  # the rows below the box are zeros
            p = x * h + y1
            counts[n] = p - last
            n += 1
            last = p
            cur = False
    if cur:
        counts[n] = x1 * h - last
        n += 1
        last = x1 * h
    counts[n] = h * w - last
    n += 1
    if n > 1 and counts[n - 1] == 0:  # the mask ends with a run of ones
        n -= 1
    return n, seen


def _rle_chars(counts, n, out):  # noqa: ANN001, ANN202
    """:func:`rle_string` of ``counts[:n]`` as ASCII codes into ``out``; returns their number."""
    k = 0
    for i in range(n):
        x = counts[i] - counts[i - 2] if i > 2 else counts[i]
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = x != -1 if ch & 0x10 else x != 0
            out[k] = (ch | 0x20 if more else ch) + 48
            k += 1
    return k


_COMPILED: list = []


def _compiled() -> Any:
    """``(runs, chars)`` compiled with numba (on first use), or None without numba."""
    if not _COMPILED:
        from carla_bridge.synthetic import kernels

        fns = None
        if kernels.HAVE_NUMBA:
            fns = (kernels._compile(_rle_runs), kernels._compile(_rle_chars))
        _COMPILED.append(fns)
    return _COMPILED[0]


def rle(mask: np.ndarray, box: Tuple[float, ...], count: Optional[int] = None) -> Dict[str, Any]:
    """COCO RLE ``{"size": [h, w], "counts": str}`` of a boolean H x W mask (the same as
    ``pycocotools.mask.encode``), reading only the ``(x, y, w, h)`` box when it holds every set
    pixel (it does for the tight boxes of the labels). ``count``: the mask's set pixels."""
    h, w = mask.shape
    fns = _compiled()
    if fns is None or mask.dtype != np.bool_:
        return {"size": [h, w], "counts": rle_numpy(mask, box, count)}
    if count is None:
        count = int(np.count_nonzero(mask))
    runs, chars = fns
    x0, y0, x1, y1 = _box(mask, box)
    counts = np.empty(2 * count + 2, np.int64)
    n, seen = runs(mask, x0, y0, max(x1, x0), max(y1, y0), counts)
    if seen != count:  # the box does not hold every set pixel: scan the whole mask
        n, _ = runs(mask, 0, 0, w, h, counts)
    out = np.empty(13 * n, np.uint8)  # at most 13 characters per 64-bit difference
    k = chars(counts, n, out)
    return {"size": [h, w], "counts": out[:k].tobytes().decode("ascii")}


def warm_up() -> None:
    """Compile (or load from the cache) the RLE kernels, e.g. before forking workers."""
    m = np.zeros((3, 2), bool)
    m[1, 1] = True
    rle(m, (1.0, 1.0, 1.0, 1.0), 1)
