"""Facade texture warps computed only at the pixels that are drawn, with cv2's arithmetic.

``cv2.warpPerspective`` (INTER_LINEAR, BORDER_REPLICATE) warps a quad's whole pixel box,
though a facade is often mostly hidden. :func:`warp_fill` evaluates the same warp only where
the quad passed the depth test, with the float32 operations of OpenCV 5's SIMD warp code: per
row the bases ``float(y M1 + M2)`` (and M4, M5 / M7, M8), per pixel ``fma(M0, x, base)`` over
``fma(M6, x, base_w)`` for the columns its vector loop covers (blocks of ``block`` pixels),
``fma(x, M0, y M1) + M2`` (and so on) in its scalar tail, then bilinear fused lerps (x, then y)
with replicated edges. The block width depends on the CPU features cv2 dispatches to, so
:func:`block_size` finds it once per process by comparing with cv2 on a small image (and
returns 0, meaning "use cv2", if no width reproduces it).
"""

from __future__ import annotations

from typing import List

import cv2
import numpy as np

from carla_bridge.synthetic.kernels import HAVE_NUMBA, _compile, fma32


def _warp_fill(m, rgb, minv, y0, x0, block, color):  # noqa: ANN001, ANN202
    """Colour of the pixels of box mask ``m`` (nonzero: drawn) at ``(y0, x0)`` of ``color``:
    ``rgb`` (h x w x 3 float32) sampled through the inverse homography ``minv`` (9 float64,
    box pixel -> texel) as cv2.warpPerspective computes it with SIMD blocks of ``block``."""
    f32 = np.float32
    m0, m1, m2, m3, m4, m5 = (
        f32(minv[0]),
        f32(minv[1]),
        f32(minv[2]),
        f32(minv[3]),
        f32(minv[4]),
        f32(minv[5]),
    )
    m6, m7, m8 = f32(minv[6]), f32(minv[7]), f32(minv[8])
    hh, ww = m.shape
    sh, sw = rgb.shape[0], rgb.shape[1]
    body = (ww // block) * block
    color2 = color.reshape(color.shape[0], 3 * color.shape[1])
    for i in range(hh):
        y = f32(i)
        bx, by, bw = y * m1 + m2, y * m4 + m5, y * m7 + m8
        mr = m[i]
        cr = color2[y0 + i]
        for j in range(ww):
            if mr[j] == 0:
                continue
            x = f32(j)
            if j < body:
                w = fma32(m6, x, bw)
                sx = fma32(m0, x, bx) / w
                sy = fma32(m3, x, by) / w
            else:
                w = fma32(x, m6, y * m7) + m8
                sx = (fma32(x, m0, y * m1) + m2) / w
                sy = (fma32(x, m3, y * m4) + m5) / w
            fx, fy = np.floor(sx), np.floor(sy)
            ax, ay = sx - fx, sy - fy
            ix, iy = int(fx), int(fy)
            xa, xb = min(max(ix, 0), sw - 1), min(max(ix + 1, 0), sw - 1)
            ya, yb = min(max(iy, 0), sh - 1), min(max(iy + 1, 0), sh - 1)
            o = 3 * (x0 + j)
            for k in range(3):
                p00, p01 = rgb[ya, xa, k], rgb[ya, xb, k]
                p10, p11 = rgb[yb, xa, k], rgb[yb, xb, k]
                top = fma32(ax, p01 - p00, p00)
                bottom = fma32(ax, p11 - p10, p10)
                cr[o + k] = fma32(ay, bottom - top, top)


warp_fill = _compile(_warp_fill)

_BLOCK: List[int] = []


def block_size() -> int:
    """The pixel block of cv2's SIMD warp loop on this machine (8, 16, 32 or 64), or 0 when the
    kernel cannot reproduce cv2 here (no numba, other arithmetic): then warp with cv2."""
    if _BLOCK:
        return _BLOCK[0]
    found = 0
    if HAVE_NUMBA:
        rng = np.random.default_rng(0)
        rgb = rng.random((23, 37, 3), dtype=np.float32)
        src = np.float32([[0, 0], [36, 0], [36, 22], [0, 22]])
        dst = np.float32([[1.3, 2.1], [93.7, 7.9], [88.2, 51.4], [0.4, 44.6]])
        hom = cv2.getPerspectiveTransform(src, dst)
        size = (95, 53)  # not a multiple of any block: the scalar tail is exercised
        ref = cv2.warpPerspective(rgb, hom, size, flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        minv = cv2.invert(hom)[1].reshape(-1)
        mask = np.full((size[1], size[0]), 255, np.uint8)
        for block in (16, 8, 32, 64):
            out = np.zeros((size[1], size[0], 3), np.float32)
            warp_fill(mask, rgb, minv, 0, 0, block, out)
            if out.tobytes() == ref.tobytes():
                found = block
                break
    _BLOCK.append(found)
    return found
