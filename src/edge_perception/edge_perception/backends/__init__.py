"""Inference backends behind one protocol (:mod:`.base`), made by :func:`.factory.create_backend`.

Only the protocol is imported here; ONNX Runtime, PyTorch and TensorRT load lazily.
"""

from __future__ import annotations

from edge_perception.backends.base import (
    BackendError,
    BackendInfo,
    InferenceBackend,
    TensorSpec,
    static_shape,
)
from edge_perception.backends.factory import BACKENDS, KINDS, create_backend, kind_for_path

__all__ = [
    "BACKENDS",
    "KINDS",
    "BackendError",
    "BackendInfo",
    "InferenceBackend",
    "TensorSpec",
    "create_backend",
    "kind_for_path",
    "static_shape",
]
