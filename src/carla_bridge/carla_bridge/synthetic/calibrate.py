"""Which float32 arithmetic this process's cv2 uses, so the compiled flow kernels reproduce it.

The flow kernels (``kernels.flow_mid_end``) replace ``cv2.scaleAdd``, ``cv2.addWeighted`` and
``cv2.remap`` (INTER_LINEAR). Those compute ``a * b + c`` with one rounding (an FMA) where cv2
dispatches to its AVX2 / FMA3 code, and with two (multiply, then add) in its SSE code: on a CPU
without FMA3 or with ``OPENCV_CPU_DISABLE=AVX2,...``. :func:`flow_fused` tries both on a small
probe, in this process (the cv2 that will render), and returns the one that reproduces cv2's
bytes, or None when neither does (another cv2 build): the renderer then runs the cv2 calls
themselves. Either way a frame is the same bytes with and without numba.

(No cv2 call at import: a parent process that forks workers must not start cv2's thread pool.)
"""

from __future__ import annotations

from typing import List, Optional

import cv2
import numpy as np

from carla_bridge.synthetic import kernels

_FUSED: List[Optional[bool]] = []


def _flow_mid_probe(fused: bool) -> bool:
    """``kernels.flow_mid`` with ``fused`` gives the bytes of the cv2 chain it replaces."""
    rng = np.random.default_rng(3)
    h, w = 24, 37  # not a multiple of any SIMD width: the scalar tails are compared too
    f = np.float32
    x2, y2 = (rng.normal(0, 20, (h, w)).astype(f) for _ in range(2))
    zp2 = rng.uniform(-1, 80, (h, w)).astype(f)
    invz = np.where(rng.random((h, w)) > 0.1, 1 / zp2, 0).astype(f)
    a, cp, sp, near, fx, fy, cx, cy = -0.0123, 0.999, 0.0349, 0.3, 320.5, 321.0, 18.5, 12.5
    coef = tuple(f(c) for c in (a, cp, sp, near, fx, fy, cx, cy, w - 1.0, h - 1.0))
    got = [np.empty((h, w), f) for _ in range(3)]
    ok = np.empty((h, w), np.uint8)
    kernels.flow_mid(x2, zp2, y2, invz, coef, *got, ok, fused)
    xr = cv2.scaleAdd(zp2, a, x2)
    yc = cv2.addWeighted(y2, cp, zp2, -sp, 0.0)
    zc = cv2.addWeighted(y2, sp, zp2, cp, 0.0)
    inv = cv2.divide(1.0, cv2.max(zc, near))
    u = cv2.multiply(xr, inv, scale=fx) + f(cx)
    v = cv2.multiply(yc, inv, scale=fy) + f(cy)
    return all(g.tobytes() == r.tobytes() for g, r in zip(got, (u, v, zc)))


def _remap_probe(fused: bool) -> bool:
    """``kernels.bilinear`` with ``fused`` gives cv2.remap's INTER_LINEAR samples."""
    rng = np.random.default_rng(5)
    h, w = 29, 43
    img = rng.uniform(0.01, 0.5, (h, w)).astype(np.float32)
    u = rng.uniform(0, w - 1, (31, 37)).astype(np.float32)
    v = rng.uniform(0, h - 1, (31, 37)).astype(np.float32)
    u[:3], v[:, :3] = w - 1, h - 1  # the last column / row (replicated edge)
    ref = cv2.remap(img, u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = np.empty_like(ref)
    kernels.remap_linear(img, u, v, fused, out)
    return out.tobytes() == ref.tobytes()


def flow_fused() -> Optional[bool]:
    """True (cv2 fuses multiply-adds here), False (it does not) or None (the kernels cannot
    reproduce this cv2, or numba is missing: use cv2); found once per process."""
    if not _FUSED:
        found = None
        if kernels.HAVE_NUMBA:
            for fused in (True, False):
                if _flow_mid_probe(fused) and _remap_probe(fused):
                    found = fused
                    break
        _FUSED.append(found)
    return _FUSED[0]
