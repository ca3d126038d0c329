"""The label PNG writer: Pillow and OpenCV decode exactly the mask written, with either deflate."""

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from carla_bridge.classes import LANE_PALETTE
from carla_bridge.dataset import png
from PIL import Image


def _mask(dtype, high):
    rng = np.random.default_rng(1)
    m = np.zeros((41, 67), dtype)
    m[20:] = rng.integers(0, high, (21, 67))  # runs of zeros and noise, as label masks have
    m[5, 3:60] = high - 1
    return m


def _chunks(data):
    """(type, payload) of every chunk after the signature, checking each CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, pos = [], 8
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        assert crc == zlib.crc32(kind + body)
        out.append((kind, body))
        pos += 12 + n
    return out


@pytest.mark.parametrize("deflate", ["default", "zlib"])
def test_palette_png_decodes_to_indices_and_colours(deflate, monkeypatch):
    if deflate == "zlib":
        monkeypatch.setattr(png, "DEFLATE", zlib)
    m = _mask(np.uint8, len(LANE_PALETTE))
    data = png.encode_png(m, LANE_PALETTE)
    img = Image.open(io.BytesIO(data))
    assert img.mode == "P"
    np.testing.assert_array_equal(np.asarray(img), m)
    assert img.getpalette()[: 3 * len(LANE_PALETTE)] == [c for p in LANE_PALETTE for c in p]
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    lut = np.array(LANE_PALETTE, np.uint8)[:, ::-1]
    np.testing.assert_array_equal(bgr, lut[m])
    assert [k for k, _ in _chunks(data)] == [b"IHDR", b"PLTE", b"IDAT", b"IEND"]


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8])
@pytest.mark.parametrize("deflate", ["default", "zlib"])
def test_grey_png_round_trips(dtype, deflate, monkeypatch):
    if deflate == "zlib":
        monkeypatch.setattr(png, "DEFLATE", zlib)
    m = _mask(dtype, np.iinfo(dtype).max)
    data = png.encode_png(m)
    back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, m)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), m)


def test_same_mask_same_bytes_and_small_files():
    m = _mask(np.uint16, 40)
    assert png.encode_png(m) == png.encode_png(m.copy())
    assert len(png.encode_png(np.zeros((384, 640), np.uint16))) < 2000  # runs deflate well


def test_bad_masks_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="2-D uint8 or uint16"):
        png.encode_png(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="2-D uint8 or uint16"):
        png.encode_png(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="no palette entry"):
        png.encode_png(np.full((4, 4), 9, np.uint8), [(0, 0, 0), (1, 1, 1)])
    with pytest.raises(ValueError, match="uint8 mask"):
        png.encode_png(np.zeros((4, 4), np.uint16), [(0, 0, 0)])
