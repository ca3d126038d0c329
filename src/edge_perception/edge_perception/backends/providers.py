"""ONNX Runtime execution-provider selection: TensorRT EP / CUDA EP where available, else CPU.

The ONNX Runtime backend calls::

    providers = select("auto", available=ort.get_available_providers(), cache_dir=...)
    session = ort.InferenceSession(path, sess_options, providers=providers)

:func:`select` returns ONNX Runtime's ``providers=`` list of ``(name, options)`` pairs, best first
and always ending with ``CPUExecutionProvider``, so a session created with it runs anywhere (ORT
assigns the nodes a provider cannot take to the next one). ``preference`` is ``auto`` (TensorRT >
CUDA > CPU), ``tensorrt``, ``cuda`` or ``cpu`` (or a list of those); asking for a provider this
ONNX Runtime build lacks raises :class:`ProviderError` naming the package to install, unless
``strict=False`` (then it is skipped with :func:`describe` telling what was chosen).

Runtime module: Python 3.8 compatible; onnxruntime is imported only when ``available`` is omitted.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

TENSORRT_EP = "TensorrtExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
NAMES = {"tensorrt": TENSORRT_EP, "cuda": CUDA_EP, "cpu": CPU_EP}
AUTO_ORDER = ("tensorrt", "cuda", "cpu")

Provider = Tuple[str, Dict[str, str]]


class ProviderError(ValueError):
    """A requested execution provider is unknown or missing from this ONNX Runtime build."""


def _flag(value: bool) -> str:
    return "True" if value else "False"


def tensorrt_options(
    device_id: int = 0,
    fp16: bool = True,
    int8: bool = False,
    dla_core: Optional[int] = None,
    cache_dir: Optional[str] = None,
    workspace_mb: int = 1024,
    calibration_table: Optional[str] = None,
) -> Dict[str, str]:
    """TensorRT EP options (values as strings, as ONNX Runtime's Python API accepts them).

    With ``cache_dir`` the EP caches its engines and timing cache there (first run builds them;
    minutes on a Jetson). ``dla_core`` >= 0 enables that DLA core (Jetson Xavier: 0 or 1).
    """
    opts = {
        "device_id": str(device_id),
        "trt_max_workspace_size": str(int(workspace_mb) << 20),
        "trt_fp16_enable": _flag(fp16 or int8),
        "trt_int8_enable": _flag(int8),
    }
    if int8 and calibration_table:
        opts["trt_int8_calibration_table_name"] = calibration_table
    if dla_core is not None and dla_core >= 0:
        opts["trt_dla_enable"] = "True"
        opts["trt_dla_core"] = str(dla_core)
    if cache_dir:
        opts["trt_engine_cache_enable"] = "True"
        opts["trt_engine_cache_path"] = cache_dir
        opts["trt_timing_cache_enable"] = "True"
        opts["trt_timing_cache_path"] = cache_dir
    return opts


def cuda_options(device_id: int = 0, conv_search: str = "HEURISTIC") -> Dict[str, str]:
    """CUDA EP options; ``conv_search``: EXHAUSTIVE, HEURISTIC (default: fast start) or DEFAULT."""
    if conv_search not in ("EXHAUSTIVE", "HEURISTIC", "DEFAULT"):
        raise ProviderError(
            "cudnn conv search %r is not EXHAUSTIVE/HEURISTIC/DEFAULT" % conv_search
        )
    return {
        "device_id": str(device_id),
        "cudnn_conv_algo_search": conv_search,
        "do_copy_in_default_stream": "True",
    }


def _wanted(preference: Union[str, Sequence[str]]) -> List[str]:
    items = [preference] if isinstance(preference, str) else list(preference)
    out: List[str] = []
    for item in items:
        key = str(item).strip().lower()
        keys = list(AUTO_ORDER) if key == "auto" else [key]
        for k in keys:
            if k not in NAMES:
                raise ProviderError(
                    "unknown execution provider %r; use auto, tensorrt, cuda or cpu" % item
                )
            if k not in out:
                out.append(k)
    if "cpu" not in out:
        out.append("cpu")
    return out


def select(
    preference: Union[str, Sequence[str]] = "auto",
    available: Optional[Sequence[str]] = None,
    device_id: int = 0,
    precision: str = "fp16",
    dla_core: Optional[int] = None,
    cache_dir: Optional[str] = None,
    workspace_mb: int = 1024,
    strict: Optional[bool] = None,
) -> List[Provider]:
    """The ``providers=`` list for ``onnxruntime.InferenceSession``.

    ``available`` defaults to ``onnxruntime.get_available_providers()``. ``precision`` (fp32 /
    fp16 / int8) configures the TensorRT EP; ``strict`` (default: True unless ``preference`` is
    ``auto``) makes a missing explicitly requested provider an error instead of a skip.
    """
    if precision not in ("fp32", "fp16", "int8"):
        raise ProviderError("precision %r is not fp32, fp16 or int8" % precision)
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    if strict is None:
        strict = preference != "auto"
    have = set(available)
    chosen: List[Provider] = []
    for key in _wanted(preference):
        name = NAMES[key]
        if name not in have:
            if strict and key != "cpu":
                raise ProviderError(
                    "%s was requested but this onnxruntime has only %s. Fix: install "
                    "onnxruntime-gpu (desktop) or the Jetson Zoo onnxruntime-gpu wheel for "
                    "JetPack, or use provider 'cpu'" % (name, ", ".join(sorted(have)) or "none")
                )
            continue
        if key == "tensorrt":
            opts = tensorrt_options(
                device_id,
                fp16=precision in ("fp16", "int8"),
                int8=precision == "int8",
                dla_core=dla_core,
                cache_dir=cache_dir,
                workspace_mb=workspace_mb,
            )
        elif key == "cuda":
            opts = cuda_options(device_id)
        else:
            opts = {}
        chosen.append((name, opts))
    if not any(n == CPU_EP for n, _ in chosen):
        chosen.append((CPU_EP, {}))  # ORT always has it; keep the fallback explicit
    return chosen


def describe(providers: Sequence[Any]) -> str:
    """Short text for diagnostics: ``"TensorrtExecutionProvider(fp16) > CPUExecutionProvider"``."""
    parts = []
    for item in providers:
        name, opts = (item, {}) if isinstance(item, str) else (item[0], dict(item[1]))
        label = name
        if name == TENSORRT_EP:
            prec = (
                "int8"
                if opts.get("trt_int8_enable") == "True"
                else ("fp16" if opts.get("trt_fp16_enable") == "True" else "fp32")
            )
            label += "(%s%s)" % (
                prec,
                ",dla" + opts["trt_dla_core"] if "trt_dla_core" in opts else "",
            )
        parts.append(label)
    return " > ".join(parts)


def device_of(providers: Sequence[Any]) -> str:
    """``cuda`` when the first provider is a GPU one, else ``cpu`` (for ``BackendInfo.device``)."""
    if not providers:
        return "cpu"
    first = providers[0] if isinstance(providers[0], str) else providers[0][0]
    return "cuda" if first in (TENSORRT_EP, CUDA_EP) else "cpu"
