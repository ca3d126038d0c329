"""Validated engine cache: ``<model>.<tag>.engine`` beside the ONNX file plus a sidecar JSON key.

A TensorRT engine is only valid for the exact model, TensorRT version, GPU (or DLA core),
precision policy, calibration set and input shapes it was built with. The builder records all of
that as an :class:`EngineKey` in ``<engine>.json``; loading recomputes the key and compares
field by field (:func:`check_engine`). A mismatch is either rebuilt or, when building is disabled,
raised as :class:`EngineCacheError` whose message lists every differing field and the command that
rebuilds the engine. :meth:`EngineKey.diagnostics` is what the nodes publish
(``BackendInfo.extra``).

Files are written atomically (temp file + ``os.replace``); the sidecar is written after the engine,
so an engine without a sidecar is treated as unverified, never as valid.

Runtime module: Python 3.8 compatible; no TensorRT import here except in
:func:`runtime_fields`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from ..backends.base import BackendError
from ..export import atomic_write_bytes

KEY_VERSION = 1
ENGINE_SUFFIX = ".engine"
SIDECAR_SUFFIX = ".json"


class EngineCacheError(BackendError):
    """A cached engine does not match what is needed and building is disabled (or impossible)."""


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on. Equal keys = the engine can be reused.

    ``calibration`` is ``"images:<sha256>"``, ``"cache:<sha256>"``, ``"qdq"`` (explicit INT8 from
    Q/DQ nodes) or ``None`` (no INT8). ``input_shapes`` maps input name -> ``[min, opt, max]``.
    """

    onnx_sha256: str
    tensorrt_version: str
    gpu: str
    compute_capability: str
    precision: str
    dla_core: Optional[int] = None
    policy: Optional[Dict[str, Any]] = None
    calibration: Optional[str] = None
    input_shapes: Dict[str, List[List[int]]] = field(default_factory=dict)
    key_version: int = KEY_VERSION

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> EngineKey:
        """Parse a sidecar's ``key``; unknown fields are ignored, missing ones fail clearly."""
        names = set(cls.__dataclass_fields__)
        missing = [
            n
            for n in ("onnx_sha256", "tensorrt_version", "gpu", "compute_capability", "precision")
            if n not in data
        ]
        if missing:
            raise EngineCacheError("engine sidecar key lacks field(s) %s" % missing)
        kwargs = {k: v for k, v in data.items() if k in names}
        shapes = kwargs.get("input_shapes") or {}
        kwargs["input_shapes"] = {
            str(k): [[int(d) for d in s] for s in v] for k, v in dict(shapes).items()
        }
        return cls(**kwargs)

    def digest(self) -> str:
        """sha256 of the canonical JSON of :meth:`to_dict`."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def diagnostics(self) -> Dict[str, str]:
        """Flat ``str -> str`` view for ``BackendInfo.extra`` / ROS diagnostics."""
        pol = self.policy.get("name", "custom") if self.policy else "none"
        return {
            "engine_key": self.digest()[:16],
            "onnx_sha256": self.onnx_sha256[:16],
            "tensorrt_version": self.tensorrt_version,
            "gpu": self.gpu,
            "compute_capability": self.compute_capability,
            "dla_core": "none" if self.dla_core is None else str(self.dla_core),
            "precision": self.precision,
            "precision_policy": str(pol),
            "calibration": self.calibration or "none",
            "input_shapes": json.dumps(self.input_shapes, sort_keys=True),
        }


def diff_keys(expected: EngineKey, found: EngineKey, ignore: Sequence[str] = ()) -> List[str]:
    """Human-readable differences ``"field: engine has X, expected Y"`` (empty = match).

    Fields in ``ignore`` are not compared (e.g. ``calibration`` when the loader has no images to
    hash: the engine's own calibration is then accepted).
    """
    exp, got = expected.to_dict(), found.to_dict()
    out = []
    for name in sorted(exp):
        if name in ignore:
            continue
        if exp[name] != got.get(name):
            out.append(
                "%s: engine has %s, expected %s" % (name, _short(got.get(name)), _short(exp[name]))
            )
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


def sha256_file(path: str) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def engine_path_for(
    model_path: str,
    precision: str,
    dla_core: Optional[int] = None,
    cache_dir: Optional[str] = None,
) -> str:
    """Where the engine of ``model_path`` lives: ``<dir>/<stem>.<precision>[.dla<N>].engine``.

    ``dir`` is ``cache_dir`` if given, else the model's folder (engines are stored beside the
    model). The name holds the precision and DLA core so FP16 / INT8 / DLA engines coexist; all
    other key fields are checked through the sidecar.
    """
    stem = os.path.splitext(os.path.basename(model_path))[0]
    tag = precision + ("" if dla_core is None else ".dla%d" % dla_core)
    folder = cache_dir or os.path.dirname(os.path.abspath(model_path))
    return os.path.join(folder, "%s.%s%s" % (stem, tag, ENGINE_SUFFIX))


def sidecar_path(engine_path: str) -> str:
    return engine_path + SIDECAR_SUFFIX


def write_sidecar(engine_path: str, key: EngineKey, extra: Optional[Dict[str, Any]] = None) -> str:
    """Write ``<engine>.json`` = ``{"key", "digest", "written_at", **extra}``; returns its path."""
    doc: Dict[str, Any] = dict(extra or {})
    doc.update(
        {
            "key": key.to_dict(),
            "digest": key.digest(),
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    path = sidecar_path(engine_path)
    atomic_write_bytes(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return path


def read_sidecar(engine_path: str) -> Optional[Dict[str, Any]]:
    """The sidecar document of an engine, or ``None`` when there is none.

    Raises :class:`EngineCacheError` when it exists but is not valid JSON with a ``key``.
    """
    path = sidecar_path(engine_path)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except ValueError as exc:
        raise EngineCacheError(
            "engine sidecar %s is not valid JSON (%s); delete it" % (path, exc)
        ) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("key"), dict):
        raise EngineCacheError("engine sidecar %s has no 'key' object; delete it" % path)
    return doc


def write_engine(
    engine_path: str, data: Any, key: EngineKey, extra: Optional[Dict[str, Any]] = None
) -> None:
    """Store serialized engine bytes and then its sidecar (both atomically)."""
    side = sidecar_path(engine_path)
    if os.path.exists(side):  # never leave an old key beside a new engine
        os.unlink(side)
    atomic_write_bytes(engine_path, memoryview(data).tobytes())
    write_sidecar(engine_path, key, extra)


@dataclass
class CacheStatus:
    """Outcome of :func:`check_engine`: ``state`` is hit / missing / unverified / mismatch."""

    state: str
    engine_path: str
    differences: List[str] = field(default_factory=list)
    found: Optional[EngineKey] = None

    @property
    def ok(self) -> bool:
        return self.state == "hit"

    def explain(self) -> str:
        if self.state == "hit":
            return "engine %s matches its key" % self.engine_path
        if self.state == "missing":
            return "no engine at %s" % self.engine_path
        if self.state == "unverified":
            return "engine %s has no sidecar %s, so its key is unknown" % (
                self.engine_path,
                sidecar_path(self.engine_path),
            )
        return "engine %s was built for something else: %s" % (
            self.engine_path,
            "; ".join(self.differences),
        )


def check_engine(engine_path: str, expected: EngineKey, ignore: Sequence[str] = ()) -> CacheStatus:
    """Compare the engine's sidecar key with ``expected`` (see :func:`diff_keys`)."""
    if not os.path.isfile(engine_path):
        return CacheStatus("missing", engine_path)
    doc = read_sidecar(engine_path)
    if doc is None:
        return CacheStatus("unverified", engine_path)
    found = EngineKey.from_dict(doc["key"])
    diffs = diff_keys(expected, found, ignore)
    return CacheStatus("mismatch" if diffs else "hit", engine_path, diffs, found)


def mismatch_error(status: CacheStatus, rebuild_hint: str) -> EngineCacheError:
    """The error a node turns into a configure FAILURE when it may not rebuild."""
    return EngineCacheError(
        "%s. Building is disabled (build_if_missing=false). Fix: rebuild on this device with "
        "`%s`, or enable building." % (status.explain(), rebuild_hint)
    )


def runtime_fields(cuda: Any = None, dla_core: Optional[int] = None) -> Dict[str, Any]:
    """TensorRT version and device of this machine: the key fields an engine file alone must
    match (``tensorrt_version``, ``gpu``, ``compute_capability``, ``dla_core``).

    Imports TensorRT; ``cuda`` is a :class:`~edge_perception.tensorrt.cuda.CudaApi` (default:
    the first importable binding).
    """
    from . import require_tensorrt

    require_tensorrt()
    import tensorrt as trt

    from .cuda import get_cuda_api

    info = (cuda or get_cuda_api()).device_info()
    return {
        "tensorrt_version": str(trt.__version__),
        "gpu": info["gpu"],
        "compute_capability": info["compute_capability"],
        "dla_core": dla_core,
    }
