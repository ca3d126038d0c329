"""INT8 calibration: a TensorRT-free batch source and cache, and the TensorRT calibrators.

The data side (:func:`find_calibration_images`, :class:`CalibrationBatchSource`,
:func:`calibration_set_hash`, :func:`read_cache` / :func:`write_cache`) needs only NumPy and
OpenCV and is unit-tested here. :func:`make_calibrator` wraps a source in
``trt.IInt8EntropyCalibrator2`` (default) or ``trt.IInt8MinMaxCalibrator``; TensorRT is imported
only there.

Frames are preprocessed exactly as the deployed models expect (docs/CONTRACTS.md): RGB, resized to
the input H x W, scaled to [0, 1], float32 NCHW; normalisation is inside the graph.

Runtime module: Python 3.8 compatible.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
DEFAULT_NUM_IMAGES = 100
MIN_RECOMMENDED_IMAGES = 50
ALGORITHMS = ("entropy", "minmax")


class CalibrationError(RuntimeError):
    """Calibration data is missing or unusable; the message names the fix."""


def find_calibration_images(
    root: str, split: str = "train", limit: int = DEFAULT_NUM_IMAGES
) -> List[str]:
    """Up to ``limit`` images for calibration, spread evenly over the sorted file list.

    ``root`` is a dataset root (JPEGs under ``<root>/<split>/images/<seq>/``, the layout of
    docs/CONTRACTS.md) or any folder of images (searched recursively). The choice is deterministic,
    so the calibration-set hash is stable between runs.
    """
    if limit <= 0:
        raise CalibrationError("calibration image limit must be positive, got %d" % limit)
    base = os.path.join(root, split, "images")
    if not os.path.isdir(base):
        base = root
    if not os.path.isdir(base):
        raise CalibrationError(
            "calibration data %s does not exist; pass a dataset root with %s/images/ "
            "(carla-bridge generate) or a folder of JPEG/PNG images" % (root, split)
        )
    files: List[str] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        files.extend(
            os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(IMAGE_EXTS)
        )
    files.sort()
    if not files:
        raise CalibrationError(
            "no images (%s) under %s; expected <root>/%s/images/<seq>/<idx>.jpg"
            % ("/".join(IMAGE_EXTS), base, split)
        )
    if len(files) <= limit:
        return files
    step = len(files) / float(limit)
    return [files[int(i * step)] for i in range(limit)]


def calibration_set_hash(files: Sequence[str]) -> str:
    """sha256 over the file names (basename chain relative to their common folder) and bytes.

    Part of the engine-cache key: a different set of images gives a different INT8 engine.
    """
    h = hashlib.sha256()
    common = os.path.commonpath([os.path.abspath(f) for f in files]) if files else ""
    if files and len(files) == 1:
        common = os.path.dirname(os.path.abspath(files[0]))
    for path in files:
        rel = os.path.relpath(os.path.abspath(path), common) if common else path
        h.update(rel.replace(os.sep, "/").encode("utf-8") + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\1")
    return h.hexdigest()


def load_image(path: str, height: int, width: int) -> np.ndarray:
    """One frame as float32 CHW RGB in [0, 1], resized to ``height x width`` (bilinear)."""
    import cv2

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise CalibrationError("cannot read image %s (corrupt or not an image)" % path)
    if bgr.shape[0] != height or bgr.shape[1] != width:
        bgr = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_LINEAR)
    rgb = bgr[:, :, ::-1].astype(np.float32) / 255.0
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


class CalibrationBatchSource:
    """Fixed-size float32 NCHW batches of preprocessed frames, in file order.

    ``input_shape`` is the model's ``(N, 3, H, W)``; ``N`` is the calibration batch size. A last
    partial batch is dropped (TensorRT calibrates with one batch size). ``loader`` maps
    ``(path, H, W)`` to a CHW array and defaults to :func:`load_image`.
    """

    def __init__(
        self,
        files: Sequence[str],
        input_shape: Sequence[int],
        loader: Optional[Callable[[str, int, int], np.ndarray]] = None,
    ) -> None:
        shape = tuple(int(d) for d in input_shape)
        if len(shape) != 4 or min(shape) <= 0:
            raise CalibrationError(
                "calibration input shape must be static (N, C, H, W), got %s; give the model "
                "input shape explicitly (trt-build --shape images:1x3xHxW)" % (tuple(input_shape),)
            )
        self.files = list(files)
        self.shape: Tuple[int, int, int, int] = (shape[0], shape[1], shape[2], shape[3])
        self._loader = loader or load_image
        if len(self.files) < self.batch_size:
            raise CalibrationError(
                "%d calibration image(s) is fewer than one batch of %d"
                % (len(self.files), self.batch_size)
            )

    @property
    def batch_size(self) -> int:
        return self.shape[0]

    @property
    def num_batches(self) -> int:
        return len(self.files) // self.batch_size

    @property
    def nbytes(self) -> int:
        """Size of one batch in bytes (the device buffer the calibrator allocates)."""
        return int(np.prod(self.shape)) * 4

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[np.ndarray]:
        n, c, h, w = self.shape
        for b in range(self.num_batches):
            batch = np.empty(self.shape, dtype=np.float32)
            for i, path in enumerate(self.files[b * n : (b + 1) * n]):
                img = self._loader(path, h, w)
                if img.shape != (c, h, w):
                    raise CalibrationError(
                        "image %s gave shape %s, expected %s" % (path, img.shape, (c, h, w))
                    )
                batch[i] = img
            yield batch


def read_cache(path: Optional[str]) -> Optional[bytes]:
    """Bytes of a calibration cache, or ``None`` when there is none (or it is empty)."""
    if not path or not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        data = f.read()
    return data or None


def write_cache(path: str, data: bytes) -> None:
    """Write a calibration cache atomically (temp file in the same folder + ``os.replace``)."""
    from ..export import atomic_write_bytes

    atomic_write_bytes(path, data)


class CalibrationFeeder:
    """The logic behind the TensorRT calibrators, separate from the ``trt`` subclasses.

    It copies one batch at a time into a device buffer obtained from ``cuda`` (a
    :class:`edge_perception.tensorrt.cuda.CudaApi`) and returns its address; the cache methods
    read/write ``cache_path``. With ``source=None`` only the cache is used (calibration from an
    existing cache file, no images needed).
    """

    def __init__(
        self, source: Optional[CalibrationBatchSource], cache_path: Optional[str], cuda: Any
    ) -> None:
        self.source = source
        self.cache_path = cache_path
        self._cuda = cuda
        self._iter: Optional[Iterator[np.ndarray]] = iter(source) if source is not None else None
        self._device_ptr = cuda.malloc(source.nbytes) if source is not None else 0
        self.batches_served = 0

    @property
    def batch_size(self) -> int:
        return self.source.batch_size if self.source is not None else 1

    def next_batch(self, names: Sequence[str]) -> List[int]:
        if self._iter is None:
            return []
        if len(names) != 1:
            raise CalibrationError(
                "calibration feeds one image input, the network asks for %s" % list(names)
            )
        batch = next(self._iter, None)
        if batch is None:
            return []
        self._cuda.memcpy_htod(self._device_ptr, batch)
        self.batches_served += 1
        return [self._device_ptr]

    def read(self) -> Optional[bytes]:
        return read_cache(self.cache_path)

    def write(self, cache: Any) -> None:
        if self.cache_path:
            write_cache(self.cache_path, memoryview(cache).tobytes())

    def close(self) -> None:
        if self._device_ptr:
            self._cuda.free(self._device_ptr)
            self._device_ptr = 0


def make_calibrator(
    source: Optional[CalibrationBatchSource],
    cache_path: Optional[str],
    algorithm: str = "entropy",
    cuda: Any = None,
) -> Any:
    """A TensorRT INT8 calibrator (``IInt8EntropyCalibrator2`` or ``IInt8MinMaxCalibrator``).

    Keep a reference to the returned object until the build has finished (TensorRT does not own
    it). ``cuda`` defaults to :func:`edge_perception.tensorrt.cuda.get_cuda_api`.
    """
    if algorithm not in ALGORITHMS:
        raise CalibrationError(
            "calibration algorithm %r is not one of %s" % (algorithm, ", ".join(ALGORITHMS))
        )
    if source is None and read_cache(cache_path) is None:
        raise CalibrationError(
            "INT8 calibration needs images (--calib-data DIR) or an existing calibration cache "
            "(--calib-cache FILE); neither was given / found"
        )
    from . import require_tensorrt

    require_tensorrt()
    import tensorrt as trt

    from .cuda import get_cuda_api

    feeder = CalibrationFeeder(source, cache_path, cuda if cuda is not None else get_cuda_api())

    class _FeederMethods:
        """The calibrator callbacks, shared by both TensorRT calibrator bases below."""

        def get_batch_size(self) -> int:
            return feeder.batch_size

        def get_batch(self, names: List[str]) -> List[int]:
            return feeder.next_batch(names)

        # TensorRT documents None as "no cache" (the stubs say only 'buffer').
        def read_calibration_cache(self) -> Optional[bytes]:
            return feeder.read()

        def write_calibration_cache(self, cache: Any) -> None:
            feeder.write(cache)

    class EntropyCalibrator(_FeederMethods, trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.feeder = feeder

    class MinMaxCalibrator(_FeederMethods, trt.IInt8MinMaxCalibrator):
        def __init__(self) -> None:
            trt.IInt8MinMaxCalibrator.__init__(self)
            self.feeder = feeder

    if algorithm == "minmax":
        return MinMaxCalibrator()
    return EntropyCalibrator()
