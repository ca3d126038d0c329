"""Camera frame -> model input tensor, into a preallocated NCHW buffer, and the inverse mapping.

:class:`Preprocessor` fits an RGB ``uint8`` HxWx3 frame to the model input (``stretch``: plain
resize, as the lane model is trained; ``letterbox``: keep aspect ratio, pad with grey 114 centred)
and writes ``[0, 1]`` floats into one buffer reused for every frame (no per-frame allocation once
the camera size is stable). :class:`Transform` maps results back: boxes and masks from input
pixels to camera pixels.

Interpolation: ``area`` follows the training code (area averaging when shrinking, bilinear when
enlarging); ``linear`` is bilinear always. Area averaging at a non-integer ratio is OpenCV's slow
generic path (the lane node's preprocess at 640x480: 1.9 ms with area, 0.55-0.6 ms bilinear,
bench/ros_overhead.py) and bilinear costs the bundled models 0.1 point on the validation split
(lane mIoU 0.8367 -> 0.8358, detection mAP50:95 0.1205 -> 0.1196: ``lane-eval`` / ``det-eval``
with ``--interpolation area|linear``), so the nodes default to ``linear``.
Python 3.8 + NumPy 1.x compatible; OpenCV is imported when a Preprocessor is created.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

from edge_perception.config import INTERPOLATIONS, RESIZE_MODES

PAD_VALUE = 114


def shrink_flag(interpolation: str) -> int:
    """The cv2 flag that shrinks images for ``interpolation`` (one of ``INTERPOLATIONS``):
    ``INTER_AREA`` for ``"area"`` (as in training), ``INTER_LINEAR`` for ``"linear"``; raises
    ``ValueError`` naming the choices otherwise. Enlarging is always bilinear."""
    import cv2

    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation {interpolation!r} is not one of {list(INTERPOLATIONS)}")
    return cv2.INTER_AREA if interpolation == "area" else cv2.INTER_LINEAR


def add_interpolation_argument(parser: Any) -> None:
    """``--interpolation area|linear`` (default ``area``) of the evaluation commands."""
    parser.add_argument(
        "--interpolation",
        choices=INTERPOLATIONS,
        default="area",
        help="image resize when shrinking: area (as in training) or linear (the nodes' "
        "default, see edge_perception.runtime.preprocess)",
    )


@dataclass(frozen=True)
class Transform:
    """Affine map camera pixel -> input pixel: ``x_in = x_cam * scale_x + pad_x`` (same for y)."""

    src_hw: Tuple[int, int]
    dst_hw: Tuple[int, int]
    scale_x: float
    scale_y: float
    pad_x: float = 0.0
    pad_y: float = 0.0

    def boxes_to_source(self, boxes_xyxy: np.ndarray, clip: bool = True) -> np.ndarray:
        """Nx4 boxes in input pixels -> camera pixels (float32), clipped to the image."""
        b = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4).copy()
        b[:, 0::2] = (b[:, 0::2] - self.pad_x) / self.scale_x
        b[:, 1::2] = (b[:, 1::2] - self.pad_y) / self.scale_y
        if clip:
            h, w = self.src_hw
            np.clip(b[:, 0::2], 0.0, float(w), out=b[:, 0::2])
            np.clip(b[:, 1::2], 0.0, float(h), out=b[:, 1::2])
        return b

    def content(self, mask: np.ndarray) -> np.ndarray:
        """The part of an input-size array that shows the camera image (letterbox pad cut off)."""
        h, w = self.src_hw
        x0, y0 = int(round(self.pad_x)), int(round(self.pad_y))
        x1 = x0 + int(round(w * self.scale_x))
        y1 = y0 + int(round(h * self.scale_y))
        return np.asarray(mask)[y0:y1, x0:x1]

    def mask_to_source(self, mask: np.ndarray) -> np.ndarray:
        """HxW label mask in input pixels -> camera size (nearest; the padding is cropped off)."""
        import cv2

        m = np.asarray(mask)
        if m.shape[:2] != tuple(self.dst_hw):
            raise ValueError(f"mask shape {m.shape[:2]} is not the input size {self.dst_hw}")
        h, w = self.src_hw
        crop = self.content(m)
        if crop.shape[:2] == (h, w):
            return np.ascontiguousarray(crop)
        if crop.dtype == np.bool_:
            crop = crop.view(np.uint8)
            return cv2.resize(crop, (w, h), interpolation=cv2.INTER_NEAREST).view(np.bool_)
        return cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=cv2.INTER_NEAREST)


def make_transform(src_hw: Tuple[int, int], dst_hw: Tuple[int, int], mode: str) -> Transform:
    """The camera -> input transform of a resize mode (see module docstring)."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode {mode!r} is not one of {list(RESIZE_MODES)}")
    (h, w), (th, tw) = src_hw, dst_hw
    if min(h, w, th, tw) <= 0:
        raise ValueError(f"sizes must be positive: source {src_hw}, input {dst_hw}")
    if mode == "stretch":
        return Transform((h, w), (th, tw), tw / w, th / h)
    s = min(tw / w, th / h)
    nw, nh = int(round(w * s)), int(round(h * s))
    return Transform((h, w), (th, tw), nw / w, nh / h, (tw - nw) // 2, (th - nh) // 2)


class Preprocessor:
    """RGB uint8 frame -> ``(1, 3, H, W)`` tensor in ``[0, 1]`` written into a reused buffer.

    The returned array is the same object on every call: copy it if it must outlive the next
    call. ``dtype`` follows the model input (float32, or float16 for FP16 graphs).
    """

    def __init__(
        self,
        input_hw: Tuple[int, int],
        mode: str = "stretch",
        dtype: Any = np.float32,
        interpolation: str = "area",
    ) -> None:
        import cv2

        self._cv2 = cv2
        th, tw = int(input_hw[0]), int(input_hw[1])
        if th <= 0 or tw <= 0:
            raise ValueError(f"input size must be positive, got {input_hw}")
        if mode not in RESIZE_MODES:
            raise ValueError(f"resize mode {mode!r} is not one of {list(RESIZE_MODES)}")
        self._shrink = shrink_flag(interpolation)
        self.interpolation = interpolation
        self.input_hw = (th, tw)
        self.mode = mode
        self.buffer = np.zeros((1, 3, th, tw), dtype=dtype)
        self._canvas = np.full((th, tw, 3), PAD_VALUE, dtype=np.uint8)
        self._resized: Dict[Tuple[int, int], np.ndarray] = {}
        self._transform: Optional[Transform] = None
        self._scale = np.asarray(1.0 / 255.0, dtype=dtype)

    def transform_for(self, src_hw: Tuple[int, int]) -> Transform:
        t = self._transform
        hw = (int(src_hw[0]), int(src_hw[1]))
        if t is None or t.src_hw != hw:
            t = make_transform(hw, self.input_hw, self.mode)
            self._transform = t
            self._canvas[...] = PAD_VALUE
        return t

    def __call__(self, rgb: np.ndarray) -> Tuple[np.ndarray, Transform]:
        """Fill the buffer from one frame; returns ``(buffer, transform)``."""
        img = np.asarray(rgb)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 HxWx3 image, got {img.dtype} {img.shape}")
        h, w = img.shape[:2]
        t = self.transform_for((h, w))
        nh, nw = int(round(h * t.scale_y)), int(round(w * t.scale_x))
        if (nh, nw) == (h, w):
            resized = img
        else:
            out = self._resized.get((nh, nw))
            if out is None:
                out = self._resized[(nh, nw)] = np.empty((nh, nw, 3), np.uint8)
            interp = self._shrink if nh < h else self._cv2.INTER_LINEAR
            resized = self._cv2.resize(img, (nw, nh), dst=out, interpolation=interp)
        if (nh, nw) == self.input_hw:
            canvas = resized
        else:
            y0, x0 = int(t.pad_y), int(t.pad_x)
            self._canvas[y0 : y0 + nh, x0 : x0 + nw] = resized
            canvas = self._canvas
        np.multiply(canvas.transpose(2, 0, 1), self._scale, out=self.buffer[0], casting="unsafe")
        return self.buffer, t
