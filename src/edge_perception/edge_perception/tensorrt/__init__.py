"""TensorRT deployment: engine builder, precision policies, INT8 calibration, engine cache.

Submodules (import them directly; nothing here imports TensorRT):

* :mod:`.policy` - layer-name regex -> precision rules, presets (yolact, rtdetr, lane)
* :mod:`.calibrator` - calibration frames, calibration cache, INT8 calibrators
* :mod:`.cache` - engine key, sidecar JSON, validation
* :mod:`.builder` - ONNX -> engine (``build_engine``, ``ensure_engine``)
* :mod:`.cuda` - device memory / streams through cuda-python, pycuda or torch
* :mod:`.cli` - ``edge-perception trt-build``
"""

from __future__ import annotations

INSTALL_HINT = (
    "TensorRT's Python package is not importable. On a Jetson it comes with JetPack "
    "(apt: python3-libnvinfer; in a container: an l4t image with TensorRT); on a desktop GPU: "
    "pip install tensorrt. Without an NVIDIA GPU use the onnxruntime backend."
)


class TensorRTUnavailableError(ImportError):
    """TensorRT cannot be used here; the message says how to get it."""


def tensorrt_available() -> bool:
    """True when the real TensorRT bindings import (type stubs alone, which make ``tensorrt``
    an empty namespace package, do not count)."""
    try:
        import tensorrt
    except ImportError:
        return False
    return hasattr(tensorrt, "Builder") and hasattr(tensorrt, "Runtime")


def require_tensorrt() -> None:
    """Raise :class:`TensorRTUnavailableError` unless :func:`tensorrt_available`."""
    if not tensorrt_available():
        raise TensorRTUnavailableError(INSTALL_HINT)
