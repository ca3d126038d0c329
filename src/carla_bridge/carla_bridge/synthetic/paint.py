"""Compiled (numba) lane-line painting of the ground pass (``shade.render_ground``).

Without numba, :data:`paint_lines` is the plain Python function (``shade`` then keeps its numpy
loop, which computes the same values).
"""

from __future__ import annotations

import numpy as np

from carla_bridge.synthetic.kernels import _compile


def _paint_lines(lines, ints, d64, consts, offset, zc, px, s_row, d, grain, tex, col, line_id):
    """Paint the lane lines onto the ground rows (``shade.render_ground``'s numpy loop, the
    same float32 / float64 operations per pixel, line after line).

    ``lines`` (float32, one row per line) = (d, extent, width / 2, (width + gap) / 2, dash
    length, dash period, wear, paint r, g, b); ``ints`` (int64) = (kind: 0 solid, 1 dashed,
    2 double; line id); ``d64``: the lines' d (float64); ``consts`` = (cx, fx, half the least
    label width in px); ``offset``, ``zc``: float64 per ground row; ``px``, ``s_row``: float32
    per row; ``d``, ``grain``: float32 rows x W. Writes ``col`` (float32 rows x W x 3) and
    ``line_id`` (uint16 rows x W).
    """
    f32 = np.float32
    nr, w = d.shape
    cx, fx, mh = consts[0], consts[1], f32(consts[2])
    for n in range(lines.shape[0]):
        d32, ext, hw, dbl = lines[n, 0], lines[n, 1], lines[n, 2], lines[n, 3]
        dash0, dash1, wear = lines[n, 4], lines[n, 5], lines[n, 6]
        kind, lid = ints[n, 0], ints[n, 1]
        dn64 = d64[n]
        for i in range(nr):
            pxn = px[i]
            hp = np.float64(max(ext / pxn, mh) + f32(1.0))
            uc = cx + fx * (dn64 - offset[i]) / zc[i]
            lo = int(min(max(np.ceil(uc - hp), 0.0), np.float64(w)))
            hi = int(min(max(np.floor(uc + hp) + 1.0, 0.0), np.float64(w)))
            srow = s_row[i]
            on = True
            if kind == 1:
                m = f32(np.fmod(srow, dash1))
                if m != 0 and (dash1 < 0) != (m < 0):
                    m = m + dash1
                on = m < dash0
            lab_lim = max(ext, mh * pxn)
            trow = np.int64(np.int32((srow + f32(37.0)) * f32(3.0))) & 511
            for c in range(lo, hi):
                dn = d[i, c]
                dd = abs(dn - d32)
                if kind == 2:
                    a = (hw - abs(dd - dbl)) / pxn + f32(0.5)
                else:
                    a = (hw - dd) / pxn + f32(0.5)
                a = min(max(a, f32(0.0)), f32(1.0))
                lab = dd < lab_lim
                if kind == 1:
                    lab = lab and on
                    a = a * (f32(1.0) if on else f32(0.0))
                t = tex[trow, np.int64(np.int32(dn * f32(3.0))) & 511] * f32(1.6) - f32(0.3)
                a = a * (f32(1.0) - wear * min(max(t, f32(0.0)), f32(1.0)))
                gm = f32(0.85) + f32(0.15) * grain[i, c]
                for k in range(3):
                    sub = col[i, c, k]
                    col[i, c, k] = sub + (lines[n, 7 + k] * gm - sub) * a
                if lab:
                    line_id[i, c] = lid


paint_lines = _compile(_paint_lines)


def warm_up() -> None:
    """Compile (or load from the cache) :data:`paint_lines` for the types ``shade`` passes."""
    f = np.float32
    d = np.zeros((2, 4), f)
    ones2 = np.ones(2)
    paint_lines(np.ones((1, 10), f), np.ones((1, 2), np.int64), ones2, np.ones(3), ones2, ones2,
                np.ones(2, f), np.ones(2, f), d, d.copy(), np.zeros((512, 512), f),
                np.zeros((2, 4, 3), f), np.zeros((2, 4), np.uint16))  # fmt: skip
