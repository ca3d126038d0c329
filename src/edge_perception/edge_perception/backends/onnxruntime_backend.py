"""ONNX Runtime backend: CPU by default, CUDA / TensorRT execution providers when available.

I/O names, shapes and dtypes are read from the session. Options (all keyword arguments of
:class:`OnnxRuntimeBackend`, also reachable through
:func:`edge_perception.backends.factory.create_backend`):

- ``intra_op_threads`` / ``inter_op_threads``: 0 lets ONNX Runtime choose.
- ``graph_optimization``: ``disable``, ``basic``, ``extended`` or ``all``.
- ``providers``: ``"auto"`` (TensorRT EP > CUDA EP > CPU, those this onnxruntime build has), or
  ``tensorrt`` / ``cuda`` / ``cpu`` (or a list of them); an explicitly requested provider that is
  missing is a :class:`BackendError` (selection: :mod:`edge_perception.backends.providers`). CPU
  is always the last resort.
- ``precision``: reported in diagnostics; configures the TensorRT EP (fp16 / int8).
- ``trt_cache_dir``: engine cache folder for the TensorRT EP (default: ``.trt`` beside the model).
- ``dla_core``: Jetson DLA core for the TensorRT EP (None = GPU).
- ``model_bytes``: a serialized model to run instead of the file's (e.g. a graph assembled at
  load time: ``runtime.vis.fuse_head``); ``model_path`` still names it in messages and places
  the TensorRT EP's cache.

Python 3.8 compatible; ``onnxruntime`` is imported when a backend is created.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

import edge_perception
from edge_perception.backends import providers as providers_mod
from edge_perception.backends.base import Arrays, BackendError, InferenceBackend, TensorSpec

GRAPH_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
# ONNX tensor type strings -> NumPy dtype names
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
    "tensor(uint16)": "uint16",
    "tensor(int16)": "int16",
}


_TELEMETRY_WARNED: list = []


def _warn_telemetry_once() -> None:
    """Log once when ORT's telemetry could not be switched off (see edge_perception.__init__)."""
    problem = edge_perception.ort_telemetry_problem()
    if problem and not _TELEMETRY_WARNED:
        _TELEMETRY_WARNED.append(True)
        logging.getLogger(__name__).warning(problem)


def _dims(shape: Sequence[Any]) -> Tuple[object, ...]:
    return tuple(
        d if isinstance(d, int) else (d if isinstance(d, str) and d else -1) for d in shape
    )


class OnnxRuntimeBackend(InferenceBackend):
    """An ``onnxruntime.InferenceSession`` behind the backend protocol."""

    kind = "onnxruntime"

    def __init__(
        self,
        model_path: str,
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
        graph_optimization: str = "all",
        providers: Union[str, Sequence[str]] = "auto",
        precision: str = "fp32",
        trt_cache_dir: Optional[str] = None,
        dla_core: Optional[int] = None,
        model_bytes: Optional[bytes] = None,
        **unused: Any,
    ) -> None:
        super().__init__()
        self._session: Any = None
        path = str(model_path)
        if unused:
            raise BackendError(
                f"onnxruntime backend: unknown option(s) {sorted(unused)} for {path}"
            )
        if graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
            raise BackendError(
                f"onnxruntime backend: graph_optimization {graph_optimization!r} is not one of "
                f"{list(GRAPH_OPTIMIZATION_LEVELS)}"
            )
        for name, val in (
            ("intra_op_threads", intra_op_threads),
            ("inter_op_threads", inter_op_threads),
        ):
            if int(val) < 0:
                raise BackendError(f"onnxruntime backend: {name} must be >= 0, got {val}")
        if model_bytes is None and os.path.isdir(path):
            raise BackendError(f"ONNX model {path}: is a directory, not an .onnx file")
        if model_bytes is None and not os.path.isfile(path):
            raise BackendError(f"ONNX model {path}: file not found")
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - the runtime ships onnxruntime
            raise BackendError(f"ONNX model {path}: onnxruntime is not installed ({exc})") from exc
        _warn_telemetry_once()

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(intra_op_threads)
        opts.inter_op_num_threads = int(inter_op_threads)
        opts.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[graph_optimization]
        if not isinstance(providers, str) and list(providers) in ([], ["auto"]):
            providers = "auto"
        cache = trt_cache_dir or os.path.join(os.path.dirname(os.path.abspath(path)), ".trt")
        try:
            provider_args = providers_mod.select(
                providers,
                available=ort.get_available_providers(),
                precision=precision,
                dla_core=dla_core,
                cache_dir=cache,
            )
        except providers_mod.ProviderError as exc:
            raise BackendError(f"ONNX model {path}: {exc}") from exc
        try:
            self._session = ort.InferenceSession(
                path if model_bytes is None else model_bytes,
                sess_options=opts,
                providers=provider_args,
            )
        except Exception as exc:  # onnxruntime raises its own (Fail, InvalidGraph, ...) types
            raise BackendError(f"ONNX model {path}: cannot be loaded: {exc}") from exc

        self.inputs = [
            TensorSpec(i.name, _dims(i.shape), _ORT_TYPES.get(i.type, i.type))
            for i in self._session.get_inputs()
        ]
        self.outputs = [
            TensorSpec(o.name, _dims(o.shape), _ORT_TYPES.get(o.type, o.type))
            for o in self._session.get_outputs()
        ]
        used = list(self._session.get_providers())
        self._providers = provider_args
        self.info.kind = self.kind
        self.info.model_path = path
        self.info.precision = precision
        self.info.device = providers_mod.device_of(used)
        self.info.extra = {
            "providers": providers_mod.describe(
                [p for p in provider_args if (p if isinstance(p, str) else p[0]) in used]
            ),
            "onnxruntime": str(ort.__version__),
            "intra_op_threads": str(int(intra_op_threads)),
            "inter_op_threads": str(int(inter_op_threads)),
            "graph_optimization": graph_optimization,
        }
        self._output_names = [o.name for o in self.outputs]
        self._input_dtypes = {t.name: t.dtype for t in self.inputs}

    def run(self, feeds: Arrays) -> Arrays:
        """Run the session; inputs must already have the model's dtypes (checked, not cast)."""
        if self._session is None:
            raise BackendError(f"ONNX model {self.info.model_path}: backend is closed")
        inputs: Dict[str, np.ndarray] = {}
        for name, want in self._input_dtypes.items():
            arr = feeds[name]
            if str(arr.dtype) != want:
                raise BackendError(
                    f"ONNX model {self.info.model_path}: input {name!r} must be {want}, "
                    f"got {arr.dtype}"
                )
            inputs[name] = arr
        try:
            values = self._session.run(self._output_names, inputs)
        except Exception as exc:
            raise BackendError(f"ONNX model {self.info.model_path}: run failed: {exc}") from exc
        return dict(zip(self._output_names, values))

    def close(self) -> None:
        self._session = None
