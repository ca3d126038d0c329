"""Create an inference backend by kind name; backends are imported only when used.

``create_backend("onnxruntime", "models/lane_small.onnx", intra_op_threads=2)``. The kind
``"auto"`` picks by file extension (``.onnx`` -> onnxruntime, ``.engine``/``.plan``/``.trt`` ->
tensorrt, ``.pt``/``.pth``/``.ts``/``.torchscript`` -> pytorch). A new backend registers itself by
adding ``kind -> "module:Class"`` to :data:`BACKENDS`; the class takes ``(model_path, **options)``.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Dict

from edge_perception.backends.base import BackendError, InferenceBackend

BACKENDS: Dict[str, str] = {
    "onnxruntime": "edge_perception.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "pytorch": "edge_perception.backends.torch_backend:TorchBackend",
    "tensorrt": "edge_perception.backends.tensorrt_backend:TensorRTBackend",
}
_EXTENSIONS = {
    ".onnx": "onnxruntime",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
    ".trt": "tensorrt",
    ".pt": "pytorch",
    ".pth": "pytorch",
    ".ts": "pytorch",
    ".torchscript": "pytorch",
}
KINDS = tuple(BACKENDS) + ("auto",)


def kind_for_path(model_path: str) -> str:
    """Backend kind implied by a model file's extension; ValueError when it implies none."""
    ext = os.path.splitext(str(model_path))[1].lower()
    if ext not in _EXTENSIONS:
        raise ValueError(
            f"cannot tell the backend of {model_path!r} from its extension; "
            f"known: {sorted(_EXTENSIONS)} (or name the backend: {list(BACKENDS)})"
        )
    return _EXTENSIONS[ext]


def create_backend(kind: str, model_path: str, **options: Any) -> InferenceBackend:
    """Load ``model_path`` with the backend ``kind`` (one of :data:`KINDS`).

    Raises:
        ValueError: unknown kind.
        BackendError: the backend's library is missing, or the model is missing / corrupt (the
            message names the file and the cause).
    """
    if kind == "auto":
        kind = kind_for_path(model_path)
    if kind not in BACKENDS:
        raise ValueError(f"unknown backend kind {kind!r}; allowed: {list(KINDS)}")
    module_name, _, cls_name = BACKENDS[kind].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(
            f"{kind} backend is not available on this machine ({exc}); model {model_path}"
        ) from exc
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise BackendError(f"{kind} backend: {module_name} defines no {cls_name}")
    return cls(str(model_path), **options)
