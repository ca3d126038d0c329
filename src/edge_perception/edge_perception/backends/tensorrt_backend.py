"""TensorRT backend (TensorRT 8.5 - 10.x, name-based tensor API) for Jetson and desktop GPUs.

``TensorRTBackend(model_path, **options)`` takes an ``.onnx`` model (the engine is looked up in the
validated cache and built when missing or stale, see :func:`edge_perception.tensorrt.builder.
ensure_engine`) or a ready ``.engine`` (checked against this machine's TensorRT version and GPU
through its sidecar). I/O names, shapes and dtypes come from the engine
(``num_io_tensors`` / ``get_tensor_name`` / ``get_tensor_mode`` / ``get_tensor_shape`` /
``get_tensor_dtype``); device buffers are allocated once for the optimisation profile's maximum
shapes; a call copies inputs host->device, ``execute_async_v3`` on the backend's own CUDA stream,
copies outputs back and synchronises once.

Inputs may also be **torch CUDA tensors** (contiguous, of the engine's dtype): their device memory
is bound directly (zero-copy). Outputs are NumPy arrays in the dtypes of the ONNX contract (an
engine output that TensorRT narrowed, e.g. int64 -> int32 on 8.5, is widened back).

Options (all keyword): ``precision`` (fp32/fp16/int8, default fp16), ``policy`` (preset name, YAML
path or dict), ``dla_core`` (int; -1/None = GPU), ``build_if_missing`` (default True),
``cache_dir`` (engine folder; default beside the model), ``cuda_api`` (auto/cuda-python/pycuda/
torch), ``device`` (GPU index), ``verify_engine`` (check a given .engine's sidecar, default True)
and the build options of :class:`~edge_perception.tensorrt.builder.BuildOptions` (``calib_data``,
``shapes``, ``workspace_mb``, ...).

Runtime module: Python 3.8 compatible; tensorrt / CUDA bindings / torch imported lazily.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np

from .base import Arrays, BackendError, BackendInfo, InferenceBackend, TensorSpec

if TYPE_CHECKING:  # annotations only: TensorRT is imported lazily at run time
    import tensorrt as trt

_BACKEND_OPTIONS = ("build_if_missing", "cache_dir", "cuda_api", "device", "verify_engine")


def _dims(dims: trt.Dims) -> Tuple[int, ...]:
    """A ``trt.Dims`` as a tuple of ints (-1 = dynamic)."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def _torch_cuda_tensor(value: Any) -> bool:
    return bool(getattr(value, "is_cuda", False)) and hasattr(value, "data_ptr")


class TensorRTBackend(InferenceBackend):
    """InferenceBackend over a TensorRT engine; see the module docstring for the options."""

    kind = "tensorrt"

    def __init__(self, model_path: str, **options: Any) -> None:
        super().__init__()
        from ..tensorrt import builder as trt_builder
        from ..tensorrt import cache as cache_mod
        from ..tensorrt.calibrator import CalibrationError
        from ..tensorrt.cuda import CudaUnavailableError, get_cuda_api
        from ..tensorrt.policy import PolicyError

        backend_opts = {k: options.pop(k) for k in list(options) if k in _BACKEND_OPTIONS}
        # options first: a misconfiguration is reported on any machine
        try:
            build_opts = trt_builder.options_from_kwargs(**options)
        except (trt_builder.BuildError, PolicyError, ValueError) as exc:
            raise BackendError("tensorrt backend: %s" % exc) from exc
        from ..tensorrt import TensorRTUnavailableError, require_tensorrt

        try:
            require_tensorrt()
        except TensorRTUnavailableError as exc:
            raise BackendError("tensorrt backend: %s" % exc) from None
        self._closed = True
        self._engine: Optional[trt.ICudaEngine] = None
        self._context: Optional[trt.IExecutionContext] = None
        self._runtime: Optional[trt.Runtime] = None
        try:
            self._cuda = get_cuda_api(
                backend_opts.get("cuda_api"), int(backend_opts.get("device", 0))
            )
        except CudaUnavailableError as exc:
            raise BackendError("tensorrt backend: %s" % exc) from exc

        expected_dtypes: Dict[str, str] = {}
        if not os.path.isfile(model_path):
            raise BackendError(
                "tensorrt backend: model %s does not exist (an .onnx model or a built .engine)"
                % model_path
            )
        if model_path.endswith(".onnx"):
            try:
                engine_path, key, how = trt_builder.ensure_engine(
                    model_path,
                    build_opts,
                    engine_path=cache_mod.engine_path_for(
                        model_path,
                        build_opts.precision,
                        build_opts.dla_core,
                        backend_opts.get("cache_dir"),
                    ),
                    build_if_missing=bool(backend_opts.get("build_if_missing", True)),
                    cuda=self._cuda,
                )
            except (trt_builder.BuildError, CalibrationError, PolicyError) as exc:
                raise BackendError("tensorrt backend: %s" % exc) from exc
            extra = key.diagnostics()
            extra["engine_source"] = how
        else:
            engine_path = model_path
            extra = self._check_engine_file(
                engine_path, build_opts.dla_core, bool(backend_opts.get("verify_engine", True))
            )
        doc = cache_mod.read_sidecar(engine_path)
        if doc is not None:
            for name, spec in doc.get("onnx_io", {}).get("outputs", {}).items():
                expected_dtypes[name] = str(spec.get("dtype"))

        dla_core = build_opts.dla_core
        if dla_core is None and extra.get("dla_core", "none") != "none":
            dla_core = int(extra["dla_core"])  # a DLA engine given as .engine
        self._load(engine_path, dla_core, expected_dtypes)
        self.info = BackendInfo(
            kind=self.kind,
            model_path=engine_path,
            precision=build_opts.precision
            if model_path.endswith(".onnx")
            else extra.get("precision", "unknown"),
            device=("dla%d" % dla_core) if dla_core is not None else "cuda",
            extra=extra,
        )
        self.info.extra["cuda_api"] = self._cuda.name

    # ------------------------------------------------------------ loading

    def _check_engine_file(
        self, engine_path: str, dla_core: Optional[int], verify: bool
    ) -> Dict[str, str]:
        """Sidecar check of a ready engine against this machine (TensorRT version, GPU)."""
        from ..tensorrt import cache as cache_mod

        doc = cache_mod.read_sidecar(engine_path)
        if doc is None:
            if verify:
                raise cache_mod.EngineCacheError(
                    "engine %s has no sidecar %s, so it cannot be checked against this TensorRT "
                    "and GPU. Fix: rebuild it with `edge-perception trt-build <model.onnx>` or "
                    "pass verify_engine=false if you know it matches"
                    % (engine_path, cache_mod.sidecar_path(engine_path))
                )
            return {"engine_key": "unverified"}
        found = cache_mod.EngineKey.from_dict(doc["key"])
        here = cache_mod.runtime_fields(
            self._cuda, found.dla_core if dla_core is None else dla_core
        )
        diffs = [
            "%s: engine has %s, this machine %s" % (k, getattr(found, k), v)
            for k, v in sorted(here.items())
            if getattr(found, k) != v
        ]
        if diffs and verify:
            raise cache_mod.EngineCacheError(
                "engine %s was built elsewhere: %s. Fix: rebuild on this device with "
                "`edge-perception trt-build %s`"
                % (engine_path, "; ".join(diffs), doc.get("onnx_path", "<model.onnx>"))
            )
        return found.diagnostics()

    def _load(
        self, engine_path: str, dla_core: Optional[int], expected_dtypes: Dict[str, str]
    ) -> None:
        import tensorrt as trt

        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        if dla_core is not None:
            runtime.DLA_core = dla_core
        with open(engine_path, "rb") as f:
            engine = runtime.deserialize_cuda_engine(f.read())
        if engine is None:
            raise BackendError(
                "tensorrt backend: could not deserialize %s (built by another TensorRT version or "
                "GPU?); rebuild it with edge-perception trt-build" % engine_path
            )
        context = engine.create_execution_context()
        self._runtime, self._engine, self._context = runtime, engine, context
        self._cuda.push()
        try:
            self._stream = self._cuda.create_stream()
            self._allocate(engine, context, expected_dtypes)
        finally:
            self._cuda.pop()
        self._closed = False

    def _allocate(
        self,
        engine: trt.ICudaEngine,
        context: trt.IExecutionContext,
        expected_dtypes: Dict[str, str],
    ) -> None:
        """One device buffer + one (pinned) host buffer per I/O tensor, at the profile's max."""
        import tensorrt as trt

        self._device: Dict[str, int] = {}
        self._host: Dict[str, np.ndarray] = {}
        self._dtypes: Dict[str, Any] = {}
        self._out_cast: Dict[str, Any] = {}
        self._dynamic: List[str] = []
        in_specs: List[TensorSpec] = []
        out_specs: List[TensorSpec] = []
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        for name in inputs + [n for n in names if n not in inputs]:  # inputs first
            is_input = name in inputs
            shape: Tuple[int, ...] = _dims(engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            max_shape = shape
            if any(d < 0 for d in shape):
                if is_input:
                    self._dynamic.append(name)
                    max_shape = _dims(engine.get_tensor_profile_shape(name, 0)[2])
                else:
                    max_shape = self._max_output_shape(engine, context, name)
            nbytes = int(np.prod(max_shape)) * dtype.itemsize
            self._device[name] = self._cuda.malloc(nbytes)
            self._host[name] = self._cuda.host_empty((max(nbytes, 1),), np.uint8)
            self._dtypes[name] = dtype
            context.set_tensor_address(name, self._device[name])
            if is_input:
                in_specs.append(TensorSpec(name, shape, dtype.name))
            else:
                want = np.dtype(expected_dtypes.get(name, dtype.name))
                if want != dtype:
                    self._out_cast[name] = want
                out_specs.append(TensorSpec(name, shape, want.name))
        self.inputs, self.outputs = in_specs, out_specs

    def _max_output_shape(
        self, engine: trt.ICudaEngine, context: trt.IExecutionContext, name: str
    ) -> Tuple[int, ...]:
        """Output shape when every dynamic input is at its profile maximum."""
        for inp in self._dynamic:
            context.set_input_shape(inp, _dims(engine.get_tensor_profile_shape(inp, 0)[2]))
        shape = _dims(context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise BackendError(
                "tensorrt backend: output %r has a data-dependent shape %s; not supported"
                % (name, shape)
            )
        return shape

    # ------------------------------------------------------------ inference

    def run(self, feeds: Arrays) -> Arrays:
        if self._closed:
            raise BackendError("tensorrt backend: run() after close()")
        ctx, engine, cuda, stream = self._context, self._engine, self._cuda, self._stream
        assert ctx is not None and engine is not None
        torch_inputs = [n for n in self.input_names if _torch_cuda_tensor(feeds[n])]
        cuda.push()
        try:
            for spec in self.inputs:
                name, value = spec.name, feeds[spec.name]
                shape = tuple(int(d) for d in value.shape)
                if name in self._dynamic and not ctx.set_input_shape(name, shape):
                    raise BackendError(
                        "tensorrt backend: input %r shape %s is outside the engine's profile %s"
                        % (
                            name,
                            shape,
                            [_dims(d) for d in engine.get_tensor_profile_shape(name, 0)],
                        )
                    )
                if name not in self._dynamic and shape != tuple(spec.shape):
                    raise BackendError(
                        "tensorrt backend: input %r has shape %s, the engine expects %s"
                        % (name, shape, spec.shape)
                    )
                if name in torch_inputs:
                    self._bind_torch(ctx, name, value)
                    continue
                arr = np.ascontiguousarray(value, dtype=self._dtypes[name])
                staging = self._host[name][: arr.nbytes].view(arr.dtype).reshape(arr.shape)
                staging[...] = arr
                ctx.set_tensor_address(name, self._device[name])
                cuda.memcpy_htod_async(self._device[name], staging, stream)
            if torch_inputs:
                import torch

                torch.cuda.current_stream().synchronize()  # producer kernels done before we read
            if not ctx.execute_async_v3(stream):
                raise BackendError("tensorrt backend: execute_async_v3 failed (see TensorRT log)")
            views: Dict[str, np.ndarray] = {}
            for spec in self.outputs:
                name = spec.name
                shape = _dims(ctx.get_tensor_shape(name))
                dtype = self._dtypes[name]
                nbytes = int(np.prod(shape)) * dtype.itemsize
                view = self._host[name][:nbytes].view(dtype).reshape(shape)
                cuda.memcpy_dtoh_async(view, self._device[name], stream)
                views[name] = view
            cuda.synchronize(stream)
        finally:
            cuda.pop()
        out: Arrays = {}
        for name, view in views.items():
            want = self._out_cast.get(name)
            out[name] = view.astype(want) if want is not None else view.copy()
        return out

    def _bind_torch(self, ctx: trt.IExecutionContext, name: str, tensor: Any) -> None:
        want = self._dtypes[name]
        got = str(tensor.dtype).replace("torch.", "")
        if got != want.name or not tensor.is_contiguous():
            raise BackendError(
                "tensorrt backend: torch input %r must be a contiguous %s CUDA tensor, got %s%s"
                % (name, want.name, got, "" if tensor.is_contiguous() else " (non-contiguous)")
            )
        ctx.set_tensor_address(name, int(tensor.data_ptr()))

    def close(self) -> None:
        """Free device buffers, the stream, context and engine. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._cuda.push()
        try:
            for ptr in self._device.values():
                self._cuda.free(ptr)
            self._cuda.destroy_stream(self._stream)
        finally:
            self._cuda.pop()
        self._device.clear()
        self._host.clear()
        self._context = None
        self._engine = None
        self._runtime = None
        self._cuda.close()
