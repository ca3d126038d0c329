"""INT8 calibration data: image discovery, batches, set hash, cache file, the feeder logic."""

from __future__ import annotations

import ctypes
import os

import cv2
import numpy as np
import pytest
from edge_perception.tensorrt.calibrator import (
    CalibrationBatchSource,
    CalibrationError,
    CalibrationFeeder,
    calibration_set_hash,
    find_calibration_images,
    make_calibrator,
    read_cache,
    write_cache,
)
from edge_perception.tensorrt.cuda import CudaApi


def write_dataset(root, n_seq=2, per_seq=5, split="train", size=(24, 32)):
    """The carla_bridge layout: <root>/<split>/images/<seq>/<idx:06d>.jpg; frame k is grey k*10
    with a red top-left pixel block."""
    paths = []
    k = 0
    for s in range(n_seq):
        folder = root / split / "images" / ("seq%02d" % s)
        folder.mkdir(parents=True)
        for i in range(per_seq):
            img = np.full(size + (3,), k * 10, np.uint8)
            img[:8, :8] = (0, 0, 255)  # BGR red
            path = folder / ("%06d.jpg" % i)
            cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 100])
            paths.append(str(path))
            k += 1
    return paths


def test_find_images_in_dataset_layout_evenly_and_deterministically(tmp_path):
    paths = write_dataset(tmp_path)
    (tmp_path / "train" / "images" / "seq00" / "notes.txt").write_text("x")
    assert find_calibration_images(str(tmp_path)) == sorted(paths)
    picked = find_calibration_images(str(tmp_path), limit=5)
    assert picked == sorted(paths)[::2]  # spread over both sequences, not the first five
    assert picked == find_calibration_images(str(tmp_path), limit=5)
    # a plain folder of images works too
    assert len(find_calibration_images(str(tmp_path / "train" / "images" / "seq01"))) == 5


def test_find_images_errors_name_the_layout(tmp_path):
    with pytest.raises(CalibrationError, match="does not exist"):
        find_calibration_images(str(tmp_path / "missing"))
    (tmp_path / "train" / "images").mkdir(parents=True)
    with pytest.raises(CalibrationError, match="train/images/<seq>"):
        find_calibration_images(str(tmp_path))
    with pytest.raises(CalibrationError, match="positive"):
        find_calibration_images(str(tmp_path), limit=0)


def test_batches_are_preprocessed_rgb_nchw_in_unit_range(tmp_path):
    files = sorted(write_dataset(tmp_path, n_seq=1, per_seq=7))
    src = CalibrationBatchSource(files, (3, 3, 12, 16))
    assert (len(src), src.batch_size, src.nbytes) == (2, 3, 3 * 3 * 12 * 16 * 4)
    batches = list(src)
    assert len(batches) == 2  # 7 images, batch 3: the partial last batch is dropped
    for b in batches:
        assert b.shape == (3, 3, 12, 16) and b.dtype == np.float32
        assert 0.0 <= b.min() and b.max() <= 1.0
    first = batches[0][0]
    assert first[0, 0, 0] > 0.9 and first[2, 0, 0] < 0.1  # red block: R high, B low (RGB)
    assert abs(float(batches[1][0][1, -1, -1]) - 30 / 255) < 0.02  # 4th frame grey 30
    with pytest.raises(CalibrationError, match="fewer than one batch"):
        CalibrationBatchSource(files[:2], (3, 3, 12, 16))
    with pytest.raises(CalibrationError, match="must be static"):
        CalibrationBatchSource(files, (-1, 3, 12, 16))


def test_unreadable_image_is_named(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(CalibrationError, match="bad.jpg"):
        list(CalibrationBatchSource([str(bad)], (1, 3, 8, 8)))


def test_calibration_set_hash(tmp_path):
    files = sorted(write_dataset(tmp_path, n_seq=1, per_seq=3))
    h = calibration_set_hash(files)
    assert h == calibration_set_hash(list(files))
    assert h != calibration_set_hash(files[:2])
    with open(files[1], "ab") as f:
        f.write(b"\0")
    assert h != calibration_set_hash(files)
    # the same images under another root hash the same (names are relative)
    other = tmp_path / "copy"
    other.mkdir()
    copies = []
    for p in files:
        dst = other / os.path.basename(p)
        dst.write_bytes(open(p, "rb").read())
        copies.append(str(dst))
    assert calibration_set_hash(copies) == calibration_set_hash(files)


def test_cache_file_round_trip_is_atomic(tmp_path):
    path = str(tmp_path / "sub" / "m.calib")
    assert read_cache(path) is None and read_cache(None) is None
    write_cache(path, b"TRT-8502-EntropyCalibration2\nimages: 3c010a14\n")
    assert read_cache(path) == b"TRT-8502-EntropyCalibration2\nimages: 3c010a14\n"
    assert os.listdir(tmp_path / "sub") == ["m.calib"]
    write_cache(path, b"")
    assert read_cache(path) is None  # an empty cache counts as none


class HostMemory(CudaApi):
    """Test double for the CUDA binding: "device" buffers are host ctypes buffers. Only the
    calibrator's data logic is under test here; real CUDA is exercised by the GPU tests."""

    name = "host"

    def __init__(self) -> None:
        self.buffers = {}

    def malloc(self, nbytes: int) -> int:
        buf = ctypes.create_string_buffer(nbytes)
        self.buffers[ctypes.addressof(buf)] = buf
        return ctypes.addressof(buf)

    def free(self, ptr: int) -> None:
        del self.buffers[ptr]

    def memcpy_htod(self, dst: int, src: np.ndarray) -> None:
        ctypes.memmove(dst, np.ascontiguousarray(src).ctypes.data, src.nbytes)

    def read(self, ptr: int, shape, dtype=np.float32) -> np.ndarray:
        buf = self.buffers[ptr]
        return np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


def test_feeder_serves_each_batch_once_then_signals_the_end(tmp_path):
    files = sorted(write_dataset(tmp_path, n_seq=1, per_seq=4))
    src = CalibrationBatchSource(files, (2, 3, 12, 16))
    mem = HostMemory()
    feeder = CalibrationFeeder(src, str(tmp_path / "c.calib"), mem)
    expected = list(src)
    for batch in expected:
        ptrs = feeder.next_batch(["images"])
        assert len(ptrs) == 1
        np.testing.assert_array_equal(mem.read(ptrs[0], batch.shape), batch)
    assert feeder.next_batch(["images"]) == [] and feeder.batches_served == 2
    other = CalibrationFeeder(src, None, mem)
    with pytest.raises(CalibrationError, match="one image input"):
        other.next_batch(["images", "orig_size"])
    assert feeder.read() is None
    feeder.write(memoryview(b"scales"))
    assert feeder.read() == b"scales"
    feeder.close()
    other.close()
    assert mem.buffers == {}  # device buffers released


def test_cache_only_feeder_serves_no_batches(tmp_path):
    write_cache(str(tmp_path / "c.calib"), b"scales")
    feeder = CalibrationFeeder(None, str(tmp_path / "c.calib"), HostMemory())
    assert feeder.next_batch(["images"]) == [] and feeder.read() == b"scales"


def test_make_calibrator_needs_images_or_a_cache(tmp_path):
    with pytest.raises(CalibrationError, match="--calib-data"):
        make_calibrator(None, str(tmp_path / "none.calib"))
    with pytest.raises(CalibrationError, match="percentile"):
        make_calibrator(None, None, algorithm="percentile")
