"""YUV 4:2:2 (UYVY / YUYV) <-> RGB pixel conversion, BT.601 limited range (ROS-free).

The same coefficients as OpenCV's ``COLOR_YUV2RGB_UYVY`` / ``_YUY2``; OpenCV is used for decoding
when installed (faster), NumPy otherwise. Python 3.8 + NumPy 1.x compatible.
"""

from __future__ import annotations

import numpy as np


def _yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """BT.601 limited range (same convention as OpenCV's COLOR_YUV2RGB_UYVY / _YUY2)."""
    c = 1.164 * (y.astype(np.float32) - 16.0)
    d = u.astype(np.float32) - 128.0
    e = v.astype(np.float32) - 128.0
    rgb = np.empty(y.shape + (3,), dtype=np.float32)
    rgb[..., 0] = c + 1.596 * e
    rgb[..., 1] = c - 0.391 * d - 0.813 * e
    rgb[..., 2] = c + 2.018 * d
    np.clip(rgb + 0.5, 0.0, 255.0, out=rgb)
    return rgb.astype(np.uint8)


def decode_yuv422(rows: np.ndarray, uyvy: bool) -> np.ndarray:
    """``rows``: HxWx2 bytes of UYVY (``uyvy``) or YUYV pixel pairs -> RGB HxWx3."""
    try:
        import cv2  # optional: faster, same coefficients

        code = cv2.COLOR_YUV2RGB_UYVY if uyvy else cv2.COLOR_YUV2RGB_YUY2
        return cv2.cvtColor(np.ascontiguousarray(rows), code)
    except ImportError:  # pragma: no cover - numpy fallback (tested via decode_yuv422_numpy)
        return decode_yuv422_numpy(rows, uyvy)


def decode_yuv422_numpy(rows: np.ndarray, uyvy: bool) -> np.ndarray:
    """Pure-NumPy YUV 4:2:2 decoder (used when OpenCV is absent; tests compare the two)."""
    h, w = rows.shape[:2]
    pairs = rows.reshape(h, w // 2, 4)
    if uyvy:
        u, y0, v, y1 = pairs[..., 0], pairs[..., 1], pairs[..., 2], pairs[..., 3]
    else:
        y0, u, y1, v = pairs[..., 0], pairs[..., 1], pairs[..., 2], pairs[..., 3]
    y = np.stack([y0, y1], axis=-1).reshape(h, w)
    return _yuv_to_rgb(y, np.repeat(u, 2, axis=1), np.repeat(v, 2, axis=1))


def encode_yuv422(rgb: np.ndarray, uyvy: bool) -> np.ndarray:
    """RGB uint8 HxWx3 (even W) -> Hx(2W) bytes, UYVY (``uyvy``) or YUYV; chroma pair-averaged."""
    h, w = rgb.shape[:2]
    if w % 2:
        raise ValueError(f"YUV 4:2:2 needs an even width, got {w}")
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b
    u = 0.5 * (u[:, 0::2] + u[:, 1::2])
    v = 0.5 * (v[:, 0::2] + v[:, 1::2])

    def q(a: np.ndarray) -> np.ndarray:
        return np.clip(a + 0.5, 0, 255).astype(np.uint8)

    y0, y1 = y[:, 0::2], y[:, 1::2]
    planes = (u, y0, v, y1) if uyvy else (y0, u, y1, v)
    out = np.stack([q(p) for p in planes], axis=-1)
    return out.reshape(h, w * 2)
