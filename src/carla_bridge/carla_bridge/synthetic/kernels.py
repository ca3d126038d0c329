"""Compiled (numba) inner loops of the rasteriser, with the numpy / cv2 code they replace.

Each kernel does exactly the float32 / int32 operations of the cv2 calls it replaces, in the
same order, so the images and labels are the same bytes with or without numba. Numba is
optional: without it :data:`HAVE_NUMBA` is false and :class:`~.render.Raster` keeps its cv2
path (slower: about ten small cv2 calls per polygon instead of one kernel call).

Compiled code is cached on disk (``cache=True``: next to this file, or where
``NUMBA_CACHE_DIR`` points), so only the first run on a machine pays the compilation (a few
seconds); later processes load it in milliseconds. :func:`warm_up` loads or compiles every
kernel once, e.g. in a parent process before it forks workers.
"""

from __future__ import annotations

import numpy as np

try:
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - depends on the environment
    numba = None
    HAVE_NUMBA = False


def _ztest_fill(m, iz_rows, iz_cols, invz, color, ident, y0, x0, r, g, b, idv, paint, label):
    """Z-test and draw the covered pixels of a polygon's box ``m`` at ``(y0, x0)``.

    ``m`` (uint8 box, nonzero = covered by the polygon, from ``cv2.fillPoly``) is rewritten to
    255 where the pixel passed the depth test and 0 elsewhere; returns how many passed. A pixel
    passes when its inverse depth ``iz_rows[r, 0] + iz_cols[c]`` (float32) is greater than
    ``invz`` (NaN fails); it then gets that inverse depth, the colour ``(r, g, b)`` (rounded to
    float32) when ``paint`` and the ident ``idv`` when ``label``.
    """
    hh, ww = m.shape
    rgb = (np.float32(r), np.float32(g), np.float32(b))
    n = 0
    for i in range(hh):
        zr = invz[y0 + i]
        br = iz_rows[i, 0]
        for j in range(ww):
            if m[i, j] == 0:
                continue
            iz = br + iz_cols[j]
            if iz > zr[x0 + j]:
                zr[x0 + j] = iz
                m[i, j] = 255
                n += 1
                if paint:
                    color[y0 + i, x0 + j, 0] = rgb[0]
                    color[y0 + i, x0 + j, 1] = rgb[1]
                    color[y0 + i, x0 + j, 2] = rgb[2]
                if label:
                    ident[y0 + i, x0 + j] = idv
            else:
                m[i, j] = 0
    return n


def _compile(fn):  # noqa: ANN001, ANN202
    """``fn`` compiled with an on-disk cache; without the cache where no cache directory is
    writable (compiled again by each process); ``fn`` itself without numba."""
    if not HAVE_NUMBA:  # pragma: no cover
        return fn
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # pragma: no cover - "no locator available": read-only install
        return numba.njit(nogil=True)(fn)


ztest_fill = _compile(_ztest_fill)


def warm_up() -> None:
    """Compile (or load from the cache) every kernel for the types the rasteriser passes."""
    if not HAVE_NUMBA:
        return
    m = np.full((2, 2), 255, np.uint8)
    f = np.float32
    ztest_fill(
        m,
        np.zeros((2, 1), f),
        np.ones(2, f),
        np.zeros((4, 4), f),
        np.zeros((4, 4, 3), f),
        np.zeros((4, 4), np.int32),
        1,
        1,
        0.5,
        0.25,
        0.125,
        7,
        True,
        True,
    )
