"""PNG writer for label masks: 8-bit palette images and 16-bit grey images.

Label masks are long runs of equal values. Without row filters, deflated at level 1 by ISA-L
(:data:`carla_bridge.dataset.flowzip.DEFLATE`, zlib's level 1 where ``isal`` is not installed)
they encode much faster than through Pillow or OpenCV at their fastest settings and come out
smaller. The files are plain PNG (one IDAT chunk, no ancillary chunks), read by every PNG
decoder; the bytes depend only on the mask, the palette and the compressor.
"""

from __future__ import annotations

import struct
import zlib
from typing import Optional, Sequence

import numpy as np

from carla_bridge.dataset.flowzip import DEFLATE

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GREY, _PALETTE = 0, 3  # PNG colour types


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))
    )


def _filtered_rows(mask: np.ndarray) -> np.ndarray:
    """The PNG scanlines: filter type 0 (none) then the row's bytes, big-endian for 16 bits."""
    h, w = mask.shape
    item = mask.dtype.itemsize
    rows = np.empty((h, 1 + w * item), np.uint8)
    rows[:, 0] = 0
    rows[:, 1:] = (
        mask.astype(mask.dtype.newbyteorder(">"), copy=False).view(np.uint8).reshape(h, w * item)
    )
    return rows


def encode_png(mask: np.ndarray, palette: Optional[Sequence[Sequence[int]]] = None) -> bytes:
    """PNG bytes of a 2-D ``uint8`` or ``uint16`` mask.

    With ``palette`` (RGB triples) the mask must be ``uint8`` with values below
    ``len(palette)`` and is written as a palette image (viewers show the colours, readers get
    the indices); without it as 8- or 16-bit greyscale.
    """
    if mask.ndim != 2 or mask.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a 2-D uint8 or uint16 mask, got {mask.dtype} {mask.shape}")
    h, w = mask.shape
    bits = 8 * mask.dtype.itemsize
    chunks = []
    if palette is not None:
        if mask.dtype != np.uint8 or not 1 <= len(palette) <= 256:
            raise ValueError("palette images need a uint8 mask and 1..256 colours")
        if mask.size and int(mask.max()) >= len(palette):
            raise ValueError(f"mask value {int(mask.max())} has no palette entry")
        plte = bytes(int(c) for rgb in palette for c in rgb)
        header = struct.pack(">IIBBBBB", w, h, bits, _PALETTE, 0, 0, 0)
        chunks = [_chunk(b"IHDR", header), _chunk(b"PLTE", plte)]
    else:
        chunks = [_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bits, _GREY, 0, 0, 0))]
    data = DEFLATE.compress(memoryview(_filtered_rows(mask).reshape(-1)), 1)
    chunks += [_chunk(b"IDAT", data), _chunk(b"IEND", b"")]
    return _SIGNATURE + b"".join(chunks)
