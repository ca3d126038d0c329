"""ONNX -> TensorRT engine: builder configuration, precision policies, INT8, DLA, engine cache.

:func:`build_engine` parses the ONNX file with ``trt.OnnxParser``, configures the builder
(workspace pool limit, timing cache file, FP16 / INT8 flags, optimisation profile, per-layer
precision constraints from a :class:`~edge_perception.tensorrt.policy.PrecisionPolicy`, optional
DLA core with GPU fallback), serialises the engine with ``build_serialized_network`` and stores it
with its validated key (:mod:`edge_perception.tensorrt.cache`).

INT8 comes two ways: *implicit* (calibration with ``IInt8EntropyCalibrator2`` / ``MinMax`` over
preprocessed frames, the cache written next to the engine) or *explicit* (an ONNX model with
QuantizeLinear/DequantizeLinear nodes, as the ``*-quantize`` commands write: no calibration).

:func:`ensure_engine` is what a runtime calls: compute the expected key, reuse a matching cached
engine, else build it (or raise :class:`~edge_perception.tensorrt.cache.EngineCacheError` when
building is disabled). Everything up to the key is TensorRT-free and unit-tested.

Runtime module: Python 3.8 compatible; TensorRT and CUDA bindings are imported lazily.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from ..export import atomic_write_bytes
from . import cache as cache_mod
from .calibrator import (
    ALGORITHMS,
    DEFAULT_NUM_IMAGES,
    CalibrationBatchSource,
    calibration_set_hash,
    find_calibration_images,
    make_calibrator,
    read_cache,
)
from .policy import (
    PRECISIONS,
    PrecisionPolicy,
    is_qdq_model,
    load_policy,
    qdq_problems,
    with_scoped_names,
)
from .shapes import (
    BuildError,
    Shape,
    onnx_io,
    onnx_model,
    parse_shape_arg,
    resolve_shapes,
)

if TYPE_CHECKING:  # annotations only: TensorRT is imported lazily at run time
    import tensorrt as trt

LOG = logging.getLogger(__name__)
# Layer types whose outputs are not activations: never constrained by a policy.
_SKIP_LAYER_TYPES = ("CONSTANT", "SHAPE", "ASSERTION", "IDENTITY", "CAST")
# Layer types given an INT8 constraint (the compute layers with INT8 kernels); the layers between
# them follow TensorRT's choice, which keeps OBEY_PRECISION_CONSTRAINTS builds feasible.
_INT8_LAYER_TYPES = ("CONVOLUTION", "DECONVOLUTION", "MATRIX_MULTIPLY", "POOLING")


@dataclass
class BuildOptions:
    """How to build. ``precision`` is the widest set of kernels allowed (``fp32``, ``fp16`` or
    ``int8`` = INT8 + FP16); a ``policy`` then pins layers to precisions by name.

    ``shapes`` maps input name -> ``(min, opt, max)`` shapes for dynamic inputs (static inputs
    need nothing). ``calib_data`` is a dataset root or image folder; ``calib_cache`` defaults to
    ``<engine>.calib``. ``timing_cache`` defaults to ``timing.cache`` in the engine's folder
    (shared by all engines of a device, since it only speeds up tactic selection).
    """

    precision: str = "fp16"
    policy: Optional[PrecisionPolicy] = None
    dla_core: Optional[int] = None
    gpu_fallback: bool = True
    workspace_mb: int = 1024
    timing_cache: Optional[str] = None
    calib_data: Optional[str] = None
    calib_split: str = "train"
    calib_images: int = DEFAULT_NUM_IMAGES
    calib_batch: int = 8
    calib_algorithm: str = "entropy"
    calib_cache: Optional[str] = None
    shapes: Dict[str, Tuple[Shape, Shape, Shape]] = field(default_factory=dict)
    optimization_level: Optional[int] = None
    verbose: bool = False

    def validate(self) -> None:
        """Raise :class:`BuildError` for inconsistent options (checked before any TensorRT use)."""
        if self.precision not in PRECISIONS:
            raise BuildError(
                "precision %r is not one of %s" % (self.precision, ", ".join(PRECISIONS))
            )
        if self.policy is not None and self.policy.needs_int8 and self.precision != "int8":
            raise BuildError(
                "policy %r assigns INT8 layers but precision is %s; use --precision int8"
                % (self.policy.name, self.precision)
            )
        if self.policy is not None and self.precision == "fp32":
            raise BuildError("a precision policy needs --precision fp16 or int8, not fp32")
        if self.dla_core is not None and (self.dla_core < 0 or self.precision == "fp32"):
            raise BuildError(
                "DLA needs a core index >= 0 and FP16 or INT8 precision (got core %s, %s)"
                % (self.dla_core, self.precision)
            )
        if self.workspace_mb <= 0:
            raise BuildError("workspace must be positive (MiB), got %d" % self.workspace_mb)
        if self.calib_algorithm not in ALGORITHMS:
            raise BuildError(
                "calibration algorithm %r is not one of %s"
                % (self.calib_algorithm, ", ".join(ALGORITHMS))
            )
        if self.calib_batch <= 0 or self.calib_images <= 0:
            raise BuildError("calibration batch and image count must be positive")


@dataclass
class BuildReport:
    """What a build did: engine path and key, seconds, layer precisions, DLA fallback."""

    engine_path: str
    key: cache_mod.EngineKey
    seconds: float = 0.0
    int8_mode: str = "none"  # none / calibration / calibration-cache / qdq
    calibration_batches: int = 0
    layer_precisions: Dict[str, int] = field(default_factory=dict)
    gpu_fallback_layers: List[str] = field(default_factory=list)
    timing_cache: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "seconds": round(self.seconds, 2),
            "int8_mode": self.int8_mode,
            "calibration_batches": self.calibration_batches,
            "layer_precisions": self.layer_precisions,
            "gpu_fallback_layers": self.gpu_fallback_layers,
            "timing_cache": self.timing_cache,
        }


# ---------------------------------------------------------------- TensorRT-free part


def calibration_plan(
    onnx_path: str, options: BuildOptions, engine_path: str
) -> Tuple[str, Optional[str], List[str]]:
    """How INT8 scales are obtained: ``(mode, key_value, image_files)``.

    ``mode`` is none / qdq / calibration / calibration-cache; ``key_value`` goes into the
    engine key's ``calibration`` field. TensorRT-free.
    """
    needs_int8 = options.precision == "int8"
    if not needs_int8:
        return "none", None, []
    if is_qdq_model(onnx_path):
        problems = qdq_problems(onnx_path)
        if problems:
            raise BuildError(
                "%s has asymmetric Q/DQ nodes, which TensorRT cannot build (it supports only "
                "symmetric INT8, zero point 0): %s%s. Fix: quantize for TensorRT with signed "
                "symmetric activations (onnxruntime quantize_static: activation_type=QInt8, "
                "extra_options={'ActivationSymmetric': True, 'WeightSymmetric': True}), or "
                "build the FP32 model with --calib-data (implicit INT8)"
                % (
                    onnx_path,
                    "; ".join(problems[:3]),
                    " (+%d more)" % (len(problems) - 3) if len(problems) > 3 else "",
                )
            )
        return "qdq", "qdq", []
    if options.calib_data:
        files = find_calibration_images(
            options.calib_data, options.calib_split, options.calib_images
        )
        if len(files) < 50:
            LOG.warning("only %d calibration images; 50-100 are recommended", len(files))
        return "calibration", "images:" + calibration_set_hash(files), files
    cache_file = options.calib_cache or engine_path + ".calib"
    data = read_cache(cache_file)
    if data is not None:
        import hashlib

        return "calibration-cache", "cache:" + hashlib.sha256(data).hexdigest(), []
    raise BuildError(
        "INT8 needs calibration: pass --calib-data <dataset root or image folder>, an existing "
        "--calib-cache, or a QDQ model from lane-quantize / det-quantize (%s has no Q/DQ nodes)"
        % onnx_path
    )


def expected_key(
    onnx_path: str,
    options: BuildOptions,
    platform: Dict[str, Any],
    calibration: Optional[str],
    input_shapes: Dict[str, List[List[int]]],
) -> cache_mod.EngineKey:
    """The key an engine built from ``onnx_path`` with ``options`` on ``platform`` must carry.

    ``platform`` holds ``tensorrt_version``, ``gpu`` and ``compute_capability``
    (:func:`~edge_perception.tensorrt.cache.runtime_fields`).
    """
    return cache_mod.EngineKey(
        onnx_sha256=cache_mod.sha256_file(onnx_path),
        tensorrt_version=str(platform["tensorrt_version"]),
        gpu=str(platform["gpu"]),
        compute_capability=str(platform["compute_capability"]),
        precision=options.precision,
        dla_core=options.dla_core,
        policy=options.policy.to_dict() if options.policy is not None else None,
        calibration=calibration,
        input_shapes=input_shapes,
    )


def rebuild_command(onnx_path: str, options: BuildOptions) -> str:
    """The ``edge-perception trt-build`` command line that rebuilds this engine."""
    parts = ["edge-perception trt-build", onnx_path, "--precision", options.precision]
    if options.policy is not None:
        parts += ["--policy", options.policy.name]
    if options.dla_core is not None:
        parts += ["--dla-core", str(options.dla_core)]
    if options.calib_data:
        parts += ["--calib-data", options.calib_data]
    for name, (lo, opt, hi) in sorted(options.shapes.items()):
        dims = ",".join("x".join(str(d) for d in s) for s in (lo, opt, hi))
        parts += ["--shape", "%s:%s" % (name, dims)]
    return " ".join(parts)


# ---------------------------------------------------------------- TensorRT part


def _network_flags() -> int:
    """Explicit batch: a required flag before TensorRT 10, deprecated (and implied) since."""
    import tensorrt as trt

    major = int(str(trt.__version__).split(".")[0])
    if major >= 10:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def _apply_policy(network: trt.INetworkDefinition, policy: PrecisionPolicy) -> Dict[str, int]:
    """Set ``layer.precision`` (and intermediate output types for FP16/FP32) by layer name."""
    import tensorrt as trt

    dtypes = {"fp32": trt.DataType.FLOAT, "fp16": trt.DataType.HALF, "int8": trt.DataType.INT8}
    floats = (trt.DataType.FLOAT, trt.DataType.HALF)
    counts: Dict[str, int] = {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        prec = policy.precision_for(layer.name)
        ltype = str(layer.type.name)
        outs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if prec is None or ltype in _SKIP_LAYER_TYPES or any(t.dtype not in floats for t in outs):
            counts["auto"] = counts.get("auto", 0) + 1
            continue
        if prec == "int8" and ltype not in _INT8_LAYER_TYPES:
            counts["auto"] = counts.get("auto", 0) + 1
            continue
        layer.precision = dtypes[prec]
        if prec != "int8":
            for j, tensor in enumerate(outs):
                if not tensor.is_network_output:
                    layer.set_output_type(j, dtypes[prec])
        counts[prec] = counts.get(prec, 0) + 1
    return counts


def _load_timing_cache(config: trt.IBuilderConfig, path: Optional[str]) -> trt.ITimingCache:
    """Attach the timing cache stored at ``path`` (or a new one); returns the attached cache,
    which the caller keeps alive until the build is over."""
    data = b""
    if path and os.path.isfile(path):
        with open(path, "rb") as f:
            data = f.read()
    tcache = config.create_timing_cache(data)
    if not config.set_timing_cache(tcache, False):
        LOG.warning("timing cache %s does not fit this TensorRT/GPU; starting a new one", path)
        tcache = config.create_timing_cache(b"")
        config.set_timing_cache(tcache, True)
    return tcache


def build_engine(
    onnx_path: str, engine_path: str, options: BuildOptions, cuda: Any = None
) -> BuildReport:
    """Build ``onnx_path`` into ``engine_path`` (+ sidecar key, calibration and timing caches).

    Needs TensorRT and a GPU (or the Jetson's DLA). Raises :class:`BuildError` with the parser's
    or builder's messages when TensorRT refuses the model.
    """
    options.validate()
    if not os.path.isfile(onnx_path):
        raise BuildError("ONNX model %s does not exist" % onnx_path)
    io = onnx_io(onnx_path)
    shapes = resolve_shapes(io["inputs"], options.shapes)
    mode, calib_key, calib_files = calibration_plan(onnx_path, options, engine_path)

    from . import require_tensorrt

    require_tensorrt()
    import tensorrt as trt

    from .cuda import get_cuda_api

    cuda = cuda or get_cuda_api()
    platform = cache_mod.runtime_fields(cuda, options.dla_core)
    key = expected_key(onnx_path, options, platform, calib_key, shapes)
    start = time.monotonic()
    logger = trt.Logger(trt.Logger.VERBOSE if options.verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags())
    parser = trt.OnnxParser(network, logger)
    model = onnx_model(onnx_path)
    scoped = with_scoped_names(model)
    if scoped is model:
        parsed = parser.parse_from_file(os.path.abspath(onnx_path))
    else:  # renamed nodes (dynamo export): parse from memory, weights relative to the file
        parsed = parser.parse(scoped.SerializeToString(), os.path.abspath(onnx_path))
    if not parsed:
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BuildError("TensorRT could not parse %s:\n  %s" % (onnx_path, "\n  ".join(errors)))

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    if options.optimization_level is not None:
        if hasattr(config, "builder_optimization_level"):  # TensorRT >= 8.6
            config.builder_optimization_level = options.optimization_level
        else:
            LOG.warning("TensorRT %s has no builder optimisation level; ignored", trt.__version__)
    timing_path = options.timing_cache or os.path.join(
        os.path.dirname(os.path.abspath(engine_path)), "timing.cache"
    )
    timing_cache = _load_timing_cache(config, timing_path)  # alive until the build ends

    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, trt.Dims(lo), trt.Dims(opt), trt.Dims(hi))
    config.add_optimization_profile(profile)

    report = BuildReport(
        engine_path=engine_path, key=key, int8_mode=mode, timing_cache=timing_path
    )
    if options.precision in ("fp16", "int8"):
        if not builder.platform_has_fast_fp16:
            LOG.warning("this GPU has no fast FP16; the engine may be slower than FP32")
        config.set_flag(trt.BuilderFlag.FP16)
    calibrator = None
    if options.precision == "int8":
        if not builder.platform_has_fast_int8:
            LOG.warning("this GPU has no fast INT8 kernels")
        config.set_flag(trt.BuilderFlag.INT8)
        if mode != "qdq":
            cache_file = options.calib_cache or engine_path + ".calib"
            source = None
            if calib_files:
                name = next(iter(shapes))
                dynamic_batch = int(io["inputs"][name]["shape"][0]) <= 0
                batch = options.calib_batch if dynamic_batch else shapes[name][1][0]
                calib_shape = [batch] + shapes[name][1][1:]
                source = CalibrationBatchSource(calib_files, calib_shape)
                if dynamic_batch:  # calibrate at the calibration batch size
                    cprof = builder.create_optimization_profile()
                    cshape = trt.Dims(calib_shape)
                    cprof.set_shape(name, cshape, cshape, cshape)
                    config.set_calibration_profile(cprof)
            calibrator = make_calibrator(source, cache_file, options.calib_algorithm, cuda)
            config.int8_calibrator = calibrator
    if options.policy is not None:
        report.layer_precisions = _apply_policy(network, options.policy)
        strict = trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS
        config.set_flag(
            strict if options.policy.strict else trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS
        )

    if options.dla_core is not None:
        if options.dla_core >= builder.num_DLA_cores:
            raise BuildError(
                "DLA core %d requested but this device has %d DLA core(s) (Xavier: 0 and 1)"
                % (options.dla_core, builder.num_DLA_cores)
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        fallback = [
            network.get_layer(i).name
            for i in range(network.num_layers)
            if not config.can_run_on_DLA(network.get_layer(i))
        ]
        report.gpu_fallback_layers = fallback
        if options.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        elif fallback:
            raise BuildError(
                "%d layer(s) cannot run on DLA and GPU fallback is off: %s"
                % (len(fallback), ", ".join(fallback[:20]))
            )

    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            report.calibration_batches = calibrator.feeder.batches_served
            calibrator.feeder.close()
    if serialized is None:
        raise BuildError(
            "TensorRT failed to build %s (see its log above); with a strict policy try "
            "strict: false, or a larger --workspace-mb" % onnx_path
        )
    report.seconds = time.monotonic() - start
    atomic_write_bytes(timing_path, memoryview(timing_cache.serialize()).tobytes())
    cache_mod.write_engine(
        engine_path,
        serialized,
        key,
        {"onnx_path": os.path.abspath(onnx_path), "onnx_io": io, "build": report.to_dict()},
    )
    return report


def ensure_engine(
    model_path: str,
    options: BuildOptions,
    engine_path: Optional[str] = None,
    build_if_missing: bool = True,
    cuda: Any = None,
    platform: Optional[Dict[str, Any]] = None,
) -> Tuple[str, cache_mod.EngineKey, str]:
    """A valid engine for ``model_path`` (ONNX): ``(engine_path, key, how)``; ``how`` is
    ``cached`` or ``built``.

    A missing, unverified or mismatching engine is rebuilt when ``build_if_missing``; otherwise
    :class:`~edge_perception.tensorrt.cache.EngineCacheError` says what differs and the command
    that rebuilds it. Without calibration images to hash (``calib_data``), an INT8 engine's
    recorded calibration is accepted as is.
    """
    options.validate()
    engine_path = engine_path or cache_mod.engine_path_for(
        model_path, options.precision, options.dla_core
    )
    io = onnx_io(model_path)
    shapes = resolve_shapes(io["inputs"], options.shapes)
    ignore: Sequence[str] = ()
    try:
        mode, calib_key, _ = calibration_plan(model_path, options, engine_path)
    except BuildError:  # no images and no cache here: accept the engine's own calibration
        mode, calib_key = "unknown", None
    if mode in ("unknown", "calibration-cache"):
        # Only images given now can contradict the engine's calibration; a cache file beside
        # the engine is the one its own build wrote.
        ignore = ("calibration",)
    if platform is None:
        platform = cache_mod.runtime_fields(cuda, options.dla_core)
    key = expected_key(model_path, options, platform, calib_key, shapes)
    status = cache_mod.check_engine(engine_path, key, ignore)
    if status.ok:
        return engine_path, status.found or key, "cached"
    if not build_if_missing:
        raise cache_mod.mismatch_error(status, rebuild_command(model_path, options))
    LOG.warning("%s: building a new engine (minutes on a Jetson)", status.explain())
    report = build_engine(model_path, engine_path, options, cuda)
    return engine_path, report.key, "built"


def build_only(
    model_path: str, cache_dir: Optional[str] = None, force: bool = False, **options: Any
) -> Tuple[str, cache_mod.EngineKey, str]:
    """Build (or validate) the engine of ``model_path`` without loading it for inference.

    The offline step on the target (``scripts/build_engines.sh``, provisioning): same options as
    the TensorRT backend, same engine path and key, so a node started afterwards finds the engine
    ``cached``. ``force`` rebuilds a valid engine. Returns ``(engine_path, key, how)``.
    """
    opts = options_from_kwargs(**options)
    engine_path = cache_mod.engine_path_for(model_path, opts.precision, opts.dla_core, cache_dir)
    if force:
        report = build_engine(model_path, engine_path, opts)
        return engine_path, report.key, "built"
    return ensure_engine(model_path, opts, engine_path, build_if_missing=True)


def options_from_kwargs(**kwargs: Any) -> BuildOptions:
    """:class:`BuildOptions` from loose keyword options (the backend's / node parameters'
    spelling): ``policy`` may be a preset name, file or dict; ``shapes`` a dict or ROS-friendly
    ``["images:1x3x384x640", ...]``; ``""`` means unset for paths and ``dla_core=-1`` no DLA;
    ``workspace`` is an alias of ``workspace_mb``. Unknown names raise :class:`BuildError`
    listing the accepted ones."""
    allowed = set(BuildOptions.__dataclass_fields__)
    aliases = {
        "workspace": "workspace_mb",
        "calibration_data": "calib_data",
        "calibration_cache": "calib_cache",
        "calibrator": "calib_algorithm",
    }
    clean: Dict[str, Any] = {}
    for k, v in kwargs.items():
        k = aliases.get(k, k)
        if k not in allowed:
            raise BuildError(
                "unknown TensorRT build option %r; accepted: %s" % (k, ", ".join(sorted(allowed)))
            )
        clean[k] = v
    for name in ("timing_cache", "calib_data", "calib_cache"):
        if clean.get(name) == "":
            clean[name] = None  # ROS string parameters cannot be None: "" means unset
    if isinstance(clean.get("shapes"), (str, list, tuple)):
        specs = [clean["shapes"]] if isinstance(clean["shapes"], str) else clean["shapes"]
        try:
            clean["shapes"] = dict(parse_shape_arg(str(t)) for t in specs if str(t))
        except ValueError as exc:
            raise BuildError("shapes: %s" % exc) from exc
    if "policy" in clean:
        clean["policy"] = load_policy(clean["policy"])
    if clean.get("dla_core") is not None and int(clean["dla_core"]) < 0:
        clean["dla_core"] = None  # ROS parameters cannot be None: -1 means "no DLA"
    opts = BuildOptions(**clean)
    opts.validate()
    return opts
