"""JPEG / PNG camera frames as compressed bytes <-> RGB arrays, with OpenCV (ROS-free).

The byte layout is image_transport's ``compressed`` transport (``sensor_msgs/CompressedImage``):
``data`` holds one JPEG or PNG file and ``format`` names it, either plainly (``jpeg``, ``png``)
or as compressed_image_transport writes it (``rgb8; jpeg compressed bgr8``: the source encoding,
then the codec and the channel order inside the file, which is OpenCV's BGR for colour).

:func:`decode_compressed` returns RGB ``uint8`` HxWx3 (grey and 16-bit PNGs become 8-bit grey
RGB, alpha is dropped); :func:`encode_compressed` writes what the decoder (and
compressed_image_transport's subscriber) reads back. :class:`CompressedDecodeError` carries a
``kind`` so a node can log each kind of problem once.

Python 3.8 compatible.
"""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np

COMPRESSED_FORMATS: Tuple[str, ...] = ("jpeg", "png")
COMPRESSED_ERROR_KINDS: Tuple[str, ...] = (
    "compressed_format",  # format names a codec other than jpeg / png (e.g. compressedDepth)
    "compressed_empty",  # no data
    "compressed_undecodable",  # OpenCV could not decode the bytes (truncated, not an image)
)
_MAGIC = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png"}


class CompressedDecodeError(ValueError):
    """Compressed bytes could not be decoded; ``kind`` is one of COMPRESSED_ERROR_KINDS."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def codec_of(fmt: str) -> str:
    """The codec a ``format`` string names (``jpeg``, ``png``), '' when it names none.

    ``jpg`` counts as ``jpeg``; compressedDepth and other transports' formats give their name.
    """
    text = str(fmt).lower()
    if "compresseddepth" in text:
        return "compressedDepth"
    for word in text.replace(";", " ").split():
        if word in ("jpeg", "jpg"):
            return "jpeg"
        if word == "png":
            return "png"
    return text.strip()


def _bytes(data: Any) -> np.ndarray:
    try:
        return np.frombuffer(memoryview(data), dtype=np.uint8)
    except (TypeError, ValueError):  # a list of ints, a non-contiguous or typed array
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def sniff(data: Any) -> str:
    """``jpeg`` / ``png`` from the file's magic bytes, '' otherwise."""
    head = _bytes(data)[:8].tobytes()
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name
    return ""


def decode_compressed(data: Any, fmt: str = "") -> np.ndarray:
    """JPEG / PNG bytes (any buffer: bytes, array.array, ndarray) -> RGB ``uint8`` HxWx3.

    ``fmt`` may be empty (the magic bytes decide) or name jpeg / png in any of the spellings
    image_transport uses; another codec raises ``compressed_format``.

    Raises:
        CompressedDecodeError: with ``kind`` in :data:`COMPRESSED_ERROR_KINDS`.
    """
    import cv2

    codec = codec_of(fmt)
    if codec not in ("",) + COMPRESSED_FORMATS:
        raise CompressedDecodeError(
            "compressed_format",
            f"unsupported compressed format {fmt!r} (supported: jpeg, png)",
        )
    buf = _bytes(data)
    if buf.size == 0:
        raise CompressedDecodeError("compressed_empty", "compressed image has no data")
    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10: decoded straight to RGB
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR if rgb_flag is None else rgb_flag)
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        found = sniff(buf) or "not a JPEG/PNG file"
        raise CompressedDecodeError(
            "compressed_undecodable",
            f"cannot decode {buf.size} bytes of compressed image (format {fmt!r}; data: {found};"
            " truncated?)",
        )
    # libjpeg fills a cut-off file with grey and warns; an end-of-image marker must be there.
    if sniff(buf) == "jpeg" and b"\xff\xd9" not in buf[-1024:].tobytes():
        raise CompressedDecodeError(
            "compressed_undecodable", f"truncated JPEG ({buf.size} bytes, no end-of-image marker)"
        )
    if rgb_flag is None:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def encode_compressed(
    rgb: np.ndarray, codec: str = "jpeg", quality: int = 80, png_level: int = 3
) -> Tuple[bytes, str]:
    """RGB (HxWx3) or grey (HxW) ``uint8`` -> (file bytes, image_transport ``format`` string).

    Colour is stored in OpenCV's BGR order and the format says so (``rgb8; jpeg compressed
    bgr8``), as compressed_image_transport does; ``quality`` is the JPEG quality (1..100),
    ``png_level`` the PNG compression level (0..9; image_transport's default 3).
    """
    import cv2

    if codec not in COMPRESSED_FORMATS:
        raise ValueError(f"codec {codec!r} is not one of {', '.join(COMPRESSED_FORMATS)}")
    a = np.asarray(rgb)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ValueError(f"expected uint8 HxW or HxWx3, got {a.dtype} {a.shape}")
    if a.ndim == 3:
        a, source = cv2.cvtColor(a, cv2.COLOR_RGB2BGR), "rgb8"
    else:
        source = "mono8"
    if codec == "jpeg":
        params = [int(cv2.IMWRITE_JPEG_QUALITY), int(min(100, max(1, quality)))]
    else:
        params = [int(cv2.IMWRITE_PNG_COMPRESSION), int(min(9, max(0, png_level)))]
    ok, enc = cv2.imencode("." + ("jpg" if codec == "jpeg" else "png"), a, params)
    if not ok:  # pragma: no cover - OpenCV without the codec
        raise ValueError(f"OpenCV could not encode {codec}")
    inner = "bgr8" if source == "rgb8" else "mono8"
    return enc.tobytes(), f"{source}; {codec} compressed {inner}"
