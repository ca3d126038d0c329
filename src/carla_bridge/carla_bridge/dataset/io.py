"""Atomic, deterministic file writers (same inputs -> same bytes) and their readers."""

from __future__ import annotations

import glob
import json
import os
from typing import Any, Tuple

import cv2
import numpy as np

from carla_bridge.classes import LANE_PALETTE
from carla_bridge.dataset.flowzip import write_npz
from carla_bridge.dataset.png import encode_png

TMP_SUFFIX = ".tmp"


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to a temporary file in the target directory, then ``os.replace`` it.

    A process killed mid-write leaves at most a hidden ``.<name>.<pid>.tmp`` file (removed by
    :func:`remove_stale_temp`), never a truncated ``path``.
    """
    d, name = os.path.split(path)
    os.makedirs(d or ".", exist_ok=True)
    tmp = os.path.join(d, f".{name}.{os.getpid()}{TMP_SUFFIX}")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def atomic_write_json(path: str, obj: Any, indent: Any = None) -> None:
    """Deterministic JSON (sorted keys, fixed separators) written atomically."""
    text = json.dumps(obj, sort_keys=True, indent=indent, separators=(",", ":"))
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temp(root: str) -> int:
    """Delete temporary files a killed run left under ``root``; returns how many."""
    n = 0
    for p in glob.glob(os.path.join(root, "**", f".*{TMP_SUFFIX}"), recursive=True):
        os.remove(p)
        n += 1
    return n


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def encode_palette_png(mask: np.ndarray) -> bytes:
    """8-bit palette PNG of a lane class mask (palette = ``LANE_PALETTE``)."""
    return encode_png(np.asarray(mask, np.uint8), LANE_PALETTE)


def encode_png16(mask: np.ndarray) -> bytes:
    """16-bit greyscale PNG of a label mask (instance ids up to 65535)."""
    return encode_png(np.asarray(mask, np.uint16))


def _float16_fortran(a: np.ndarray) -> np.ndarray:
    """``a.astype(np.float16, order="F")``: for H x W x 2 flow images by the compiled kernel
    (one pass, the Fortran layout written directly) when numba is installed, else by cv2 (same
    rounding, several times faster than numpy's) for images of up to 4 channels."""
    a = np.ascontiguousarray(a, np.float32)
    if a.ndim == 3 and a.shape[2] == 2 and _kernels() is not None:
        out = np.empty((2, a.shape[1], a.shape[0]), np.uint16)
        from carla_bridge.synthetic.f16 import f16_planes

        f16_planes(a, out)
        return out.view(np.float16).transpose(2, 1, 0)
    if a.ndim == 3 and 1 <= a.shape[2] <= 4:
        return np.asfortranarray(cv2.multiply(a, (1.0, 1.0, 1.0, 1.0), dtype=cv2.CV_16F))
    return a.astype(np.float16, order="F")


_KERNELS: list = []


def _kernels() -> Any:
    """``carla_bridge.synthetic.kernels`` when numba is installed, else None (imported on first
    use: readers of the dataset do not pay numba's import)."""
    if not _KERNELS:
        from carla_bridge.synthetic import kernels

        _KERNELS.append(kernels if kernels.HAVE_NUMBA else None)
    return _KERNELS[0]


def encode_flow_npz(flow: np.ndarray, valid: np.ndarray, compress: bool = True) -> bytes:
    """``.npz`` with ``flow`` (float16 H x W x 2) and ``valid`` (bool H x W); fixed zip dates so
    the bytes depend only on the arrays (``np.savez`` stamps the current time).

    ``flow`` is stored in Fortran order (the ``.npy`` header says so; ``np.load`` returns the
    same H x W x 2 array): the u and v planes then lie one after the other, which deflates
    about 1.5x faster and 1.4x smaller than interleaved u, v pairs. ``compress=False`` stores
    ``flow`` uncompressed (faster to write, about 3.5x larger). Deflate is level 1, by ISA-L
    when installed (see :mod:`carla_bridge.dataset.flowzip`).
    """
    return write_npz(
        [
            ("flow", _float16_fortran(flow), compress),
            ("valid", np.ascontiguousarray(valid, bool), True),
        ]
    )


def read_image(path: str) -> np.ndarray:
    """RGB ``uint8`` image; missing (a ``FileNotFoundError`` too), corrupt and truncated files are
    :class:`edge_perception.datafiles.DataError` naming the path."""
    from edge_perception.datafiles import read_rgb

    return read_rgb(path)


def read_mask(path: str) -> np.ndarray:
    """Palette or 16-bit PNG as stored values (no palette expansion); bad files: DataError."""
    from edge_perception.datafiles import read_png

    return read_png(path, "label mask")


def read_flow(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(flow float32 H x W x 2, valid bool H x W)``, C-contiguous whatever the stored order."""
    from edge_perception.datafiles import read_npz

    flow, valid = read_npz(path, ("flow", "valid"), "flow file")
    return np.ascontiguousarray(flow, np.float32), valid
