"""PyTorch -> ONNX export shared by every model, with an ONNX Runtime parity check and manifest.

- :func:`export_onnx` writes one self-contained ``.onnx`` file (no external-data side file) through
  a temporary file + ``os.replace``, so a failed export never leaves a half-written model. It
  uses the TorchScript-based exporter (single file, fast, stable op coverage for conv nets) and
  falls back to the ``torch.export`` (dynamo) exporter where the former is unavailable.
- :func:`check_parity` runs the model in PyTorch and in a real ONNX Runtime CPU session on the same
  inputs and compares every output (float: max abs error; integer: fraction of differing elements,
  since an arg-max may flip on exact ties).
- :func:`write_manifest` writes the sidecar ``<model>.json`` described in docs/CONTRACTS.md.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

ArrayLike = Union[torch.Tensor, np.ndarray]


def manifest_path(onnx_path: str) -> str:
    """Sidecar manifest path of a model: ``models/x.onnx`` -> ``models/x.json``."""
    base, _ = os.path.splitext(os.fspath(onnx_path))
    return base + ".json"


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder + ``os.replace``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; models and logs are shared files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str, obj: object) -> None:
    """Pretty JSON, written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8"))


def export_onnx(
    model: torch.nn.Module,
    example_inputs: Tuple[torch.Tensor, ...],
    path: str,
    input_names: Sequence[str],
    output_names: Sequence[str],
    opset: int = 17,
    dynamic_batch: bool = True,
) -> str:
    """Export ``model`` (already in eval/deploy mode) to ``path``; returns the path.

    ``dynamic_batch`` makes dimension 0 of every input and output symbolic (``N``); spatial sizes
    stay fixed to those of ``example_inputs`` (fixed shapes let ORT and TensorRT plan memory).
    The written graph is loaded and checked with ``onnx.checker`` before it replaces ``path``.
    """
    import onnx

    if not isinstance(example_inputs, tuple):
        raise TypeError("example_inputs must be a tuple of tensors, e.g. (images,)")
    if len(input_names) != len(example_inputs):
        raise ValueError(
            f"{len(input_names)} input names for {len(example_inputs)} example inputs"
        )
    model = model.eval()
    axes = {n: {0: "N"} for n in list(input_names) + list(output_names)} if dynamic_batch else None
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "model.onnx")
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            common = dict(
                input_names=list(input_names),
                output_names=list(output_names),
                opset_version=opset,
            )
            try:
                torch.onnx.export(
                    model,
                    example_inputs,
                    raw,
                    dynamic_axes=axes,
                    do_constant_folding=True,
                    dynamo=False,
                    **common,
                )
            except TypeError:  # a torch without the legacy exporter switch
                dyn = None
                if dynamic_batch:
                    batch = torch.export.Dim("N", min=1, max=1024)
                    dyn = {n: {0: batch} for n in input_names}
                torch.onnx.export(
                    model, example_inputs, raw, dynamic_shapes=dyn, dynamo=True, **common
                )
        proto = onnx.load(raw)  # pulls in external data if the exporter wrote any
        proto.producer_name = "edge_perception"
        onnx.checker.check_model(proto)
        atomic_write_bytes(path, proto.SerializeToString())
    return path


@dataclass
class ParityReport:
    """Per-output differences between PyTorch and ONNX Runtime."""

    max_abs: Dict[str, float] = field(default_factory=dict)  # float outputs
    mismatch: Dict[str, float] = field(default_factory=dict)  # integer outputs: fraction
    ok: bool = True

    def as_dict(self) -> Dict[str, object]:
        return {"max_abs": self.max_abs, "mismatch_fraction": self.mismatch, "ok": self.ok}


def _np(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def ort_session(path: str, threads: int = 1):  # -> onnxruntime.InferenceSession
    """CPU ONNX Runtime session with ``threads`` intra-op threads and full graph optimisation."""
    import onnxruntime as ort

    from edge_perception.datafiles import DataError, check_file

    check_file(path, "ONNX model", hint="export it first")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own (Fail, InvalidProtobuf, ...) types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(path, f"ONNX model cannot be loaded by ONNX Runtime: {first}") from exc


def check_parity(
    model: torch.nn.Module,
    onnx_path: str,
    inputs: Mapping[str, ArrayLike],
    atol: float = 1e-4,
    int_mismatch: float = 1e-3,
) -> ParityReport:
    """Compare ``model(*inputs.values())`` with ONNX Runtime on the same named inputs.

    Float outputs must agree within ``atol`` (max abs), integer outputs may differ on at most a
    fraction ``int_mismatch`` of elements. Outputs are matched by the session's output order.
    Returns the report; ``report.ok`` is False when a tolerance is exceeded.
    """
    sess = ort_session(onnx_path)
    feeds = {k: _np(v).astype(np.float32) for k, v in inputs.items()}
    ort_out = sess.run(None, feeds)
    with torch.no_grad():
        ref = model.eval()(*[torch.from_numpy(v) for v in feeds.values()])
    ref = ref if isinstance(ref, (tuple, list)) else (ref,)
    if len(ref) != len(ort_out):
        raise ValueError(f"PyTorch gives {len(ref)} outputs, ONNX Runtime {len(ort_out)}")
    report = ParityReport()
    for meta, r, o in zip(sess.get_outputs(), ref, ort_out):
        r = _np(r)
        if r.shape != o.shape:
            raise ValueError(f"output {meta.name}: PyTorch shape {r.shape} vs ONNX {o.shape}")
        if np.issubdtype(o.dtype, np.floating):
            err = float(np.max(np.abs(r.astype(np.float64) - o))) if o.size else 0.0
            report.max_abs[meta.name] = err
            report.ok &= err <= atol
        else:
            frac = float(np.mean(r != o)) if o.size else 0.0
            report.mismatch[meta.name] = frac
            report.ok &= frac <= int_mismatch
    return report


def write_manifest(onnx_path: str, info: Mapping[str, object]) -> str:
    """Write ``<model>.json`` with ``info`` plus file size, ONNX I/O read from the model itself."""
    import onnx

    proto = onnx.load(onnx_path, load_external_data=False)

    def io(values: object) -> list:
        out = []
        for v in values:  # type: ignore[attr-defined]
            dims = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            out.append({"name": v.name, "shape": dims, "elem_type": v.type.tensor_type.elem_type})
        return out

    data = dict(info)
    data.setdefault("file", os.path.basename(onnx_path))
    data["size_bytes"] = os.path.getsize(onnx_path)
    data["opset"] = max(
        (o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0
    )
    data["inputs"] = io(proto.graph.input)
    data["outputs"] = io(proto.graph.output)
    data.setdefault("python", sys.version.split()[0])
    data.setdefault("torch", torch.__version__)
    path = manifest_path(onnx_path)
    write_json(path, data)
    return path


def read_manifest(onnx_path: str) -> Optional[Dict[str, object]]:
    """The sidecar manifest of a model, or None if there is none."""
    path = manifest_path(onnx_path)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)
