"""PyTorch backend: a TorchScript file, or a ``.pt`` checkpoint rebuilt through a model factory.

Checkpoint layout (a ``dict`` saved with ``torch.save``)::

    {"model_factory": "package.module:function",   # importable; called as function(**model_kwargs)
     "model_kwargs": {...},                         # optional
     "state_dict": {...},
     "input_names": ["images"], "output_names": ["logits", "mask"],   # optional, see below
     "input_shape": [1, 3, 384, 640], "task": "lane"}                 # optional

After loading, ``model.deploy()`` is called when the model has it (the export contract), then
``eval()``. I/O names are taken, in this order, from: the ``input_names``/``output_names`` options,
the checkpoint, the model's ``input_names``/``output_names`` attributes, the sidecar manifest
(``<model>.json`` with ``inputs``/``outputs`` or ``io_names``), and the task contract
(:data:`TASK_CONTRACTS`, from the ``task`` option or checkpoint/sidecar key). A training
checkpoint of ``lane-train`` / ``det-train`` (``config`` + ``model`` weights, no factory) is
rebuilt by :data:`CHECKPOINT_LOADERS` when the task is known (``task="lane"``); its
``input_size`` gives the input shape. Output dtypes and
shapes are filled by one dry run when the input shape is static.

Loading a checkpoint unpickles it (``weights_only=False``): only load files you trust.
Python 3.8 compatible; ``torch`` is imported when a backend is created.
"""

from __future__ import annotations

import importlib
import json
import os
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge_perception.backends.base import (
    Arrays,
    BackendError,
    InferenceBackend,
    TensorSpec,
    static_shape,
)

# docs/CONTRACTS.md "ONNX I/O names": task -> (input names, output names)
TASK_CONTRACTS: Dict[str, Tuple[List[str], List[str]]] = {
    "lane": (["images"], ["logits", "mask"]),
    "detection": (["images"], ["boxes", "scores", "labels"]),
}


def _lane_from_checkpoint(ckpt: Dict[str, Any]) -> Any:
    from edge_perception.lane.model import LaneUNet, config_from_dict

    model = LaneUNet(config_from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    return model


def _detection_from_checkpoint(ckpt: Dict[str, Any]) -> Any:
    from edge_perception.detection.model import model_from_checkpoint

    return model_from_checkpoint(ckpt)


# task -> rebuild a model from that task's training checkpoint (``lane-train`` / ``det-train``:
# {"config": ..., "model": state_dict, "input_size": [H, W], ...}) when it has no model_factory.
CHECKPOINT_LOADERS: Dict[str, Callable[[Dict[str, Any]], Any]] = {
    "lane": _lane_from_checkpoint,
    "detection": _detection_from_checkpoint,
}


def sidecar_manifest(model_path: str) -> Dict[str, Any]:
    """The exported model's ``.json`` manifest (``model.onnx.json`` or ``model.json``), or {}."""
    stem = os.path.splitext(model_path)[0]
    for cand in (model_path + ".json", stem + ".json"):
        if cand != model_path and os.path.isfile(cand):
            try:
                with open(cand, encoding="utf-8") as fh:
                    data = json.load(fh)
            except (OSError, ValueError) as exc:
                raise BackendError(f"model manifest {cand}: cannot be read: {exc}") from exc
            return data if isinstance(data, dict) else {}
    return {}


def _import_factory(spec: str, path: str) -> Callable[..., Any]:
    module, _, func = spec.partition(":")
    if not module or not func:
        raise BackendError(
            f"PyTorch model {path}: model factory {spec!r} is not 'module:function'"
        )
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise BackendError(f"PyTorch model {path}: cannot import factory {spec!r}: {exc}") from exc


def _manifest_names(man: Dict[str, Any]) -> Tuple[Optional[List[str]], Optional[List[str]]]:
    io = man.get("io_names", man)
    ins, outs = io.get("inputs"), io.get("outputs")
    if ins and isinstance(ins[0], dict):
        ins = [d.get("name") for d in ins]
    if outs and isinstance(outs[0], dict):
        outs = [d.get("name") for d in outs]
    return (list(ins) if ins else None, list(outs) if outs else None)


class TorchBackend(InferenceBackend):
    """A PyTorch module (TorchScript or factory + state dict) behind the backend protocol."""

    kind = "pytorch"

    def __init__(
        self,
        model_path: str,
        device: str = "cpu",
        precision: str = "fp32",
        threads: int = 0,
        input_names: Optional[Sequence[str]] = None,
        output_names: Optional[Sequence[str]] = None,
        input_shape: Optional[Sequence[int]] = None,
        task: Optional[str] = None,
        model_factory: Optional[str] = None,
        **unused: Any,
    ) -> None:
        super().__init__()
        path = str(model_path)
        self._model: Any = None
        if unused:
            raise BackendError(f"pytorch backend: unknown option(s) {sorted(unused)} for {path}")
        if precision not in ("fp32", "fp16"):
            raise BackendError(f"pytorch backend: precision {precision!r} is not fp32 or fp16")
        if not os.path.isfile(path):
            raise BackendError(f"PyTorch model {path}: file not found")
        try:
            import torch
        except ImportError as exc:  # pragma: no cover
            raise BackendError(f"PyTorch model {path}: torch is not installed ({exc})") from exc
        self._torch = torch
        if threads:
            torch.set_num_threads(int(threads))
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"PyTorch model {path}: device {device!r} but CUDA is unavailable")
        if precision == "fp16" and not device.startswith("cuda"):
            raise BackendError(f"PyTorch model {path}: fp16 needs a CUDA device, not {device!r}")
        self._device = torch.device(device)
        ckpt: Dict[str, Any] = {}
        self._task = task
        model = self._load(path, model_factory, ckpt)
        if hasattr(model, "deploy") and callable(model.deploy):
            model.deploy()
        model.eval()
        model.to(self._device)
        if precision == "fp16":
            model.half()
        self._model = model
        self._half = precision == "fp16"

        man = sidecar_manifest(path)
        task = task or ckpt.get("task") or man.get("task")
        m_in, m_out = _manifest_names(man)
        contract = TASK_CONTRACTS.get(str(task), (None, None)) if task else (None, None)
        ins = _first(
            input_names,
            ckpt.get("input_names"),
            getattr(model, "input_names", None),
            m_in,
            contract[0],
        )
        outs = _first(
            output_names,
            ckpt.get("output_names"),
            getattr(model, "output_names", None),
            m_out,
            contract[1],
        )
        if not ins or not outs:
            raise BackendError(
                f"PyTorch model {path}: no I/O names; give input_names/output_names, a 'task' "
                f"({sorted(TASK_CONTRACTS)}) or a sidecar manifest"
            )
        shape = input_shape or ckpt.get("input_shape") or man.get("input_shape")
        size = ckpt.get("input_size") or man.get("input_size")
        if not shape and size and len(size) == 2:
            shape = [1, 3, int(size[0]), int(size[1])]
        in_shape: Tuple[object, ...] = tuple(int(d) for d in shape) if shape else (-1, 3, -1, -1)
        self.inputs = [TensorSpec(n, in_shape, "float32") for n in ins]
        self.outputs = [TensorSpec(n, (), "unknown") for n in outs]
        self.info.kind = self.kind
        self.info.model_path = path
        self.info.precision = precision
        self.info.device = str(self._device)
        self.info.extra = {"torch": str(torch.__version__), "task": str(task or "")}
        if all(isinstance(d, int) and d > 0 for d in in_shape):
            out = self.run({n: np.zeros(static_shape(in_shape), np.float32) for n in ins})
            self.outputs = [TensorSpec(n, tuple(out[n].shape), str(out[n].dtype)) for n in outs]

    def _load(self, path: str, factory: Optional[str], ckpt: Dict[str, Any]) -> Any:
        torch = self._torch
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(path, map_location=self._device)
        except Exception:  # noqa: BLE001 - not TorchScript: try a checkpoint next
            pass
        try:
            obj = torch.load(path, map_location=self._device, weights_only=False)
        except Exception as exc:
            raise BackendError(
                f"PyTorch model {path}: neither TorchScript nor a torch checkpoint: {exc}"
            ) from exc
        if isinstance(obj, torch.nn.Module):
            return obj
        if not isinstance(obj, dict):
            raise BackendError(f"PyTorch model {path}: checkpoint is a {type(obj).__name__}")
        ckpt.update(obj)
        spec = factory or obj.get("model_factory")
        task = self._task or obj.get("task")
        if not spec and task in CHECKPOINT_LOADERS and "config" in obj:
            try:
                return CHECKPOINT_LOADERS[str(task)](obj)
            except (KeyError, ValueError, RuntimeError, ImportError) as exc:
                raise BackendError(
                    f"PyTorch model {path}: not a {task} checkpoint: {exc}"
                ) from exc
        if not spec:
            raise BackendError(
                f"PyTorch model {path}: checkpoint has no 'model_factory' (module:function); "
                f"pass model_factory=... or task= one of {sorted(CHECKPOINT_LOADERS)} for a "
                "training checkpoint"
            )
        model = _import_factory(str(spec), path)(**dict(obj.get("model_kwargs") or {}))
        state = obj.get("state_dict")
        if state is not None:
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                raise BackendError(f"PyTorch model {path}: state_dict mismatch: {exc}") from exc
        return model

    def run(self, feeds: Arrays) -> Arrays:
        """Run the module under ``inference_mode``; tuple/list/dict/tensor outputs are named."""
        if self._model is None:
            raise BackendError(f"PyTorch model {self.info.model_path}: backend is closed")
        torch = self._torch
        args = []
        for t in self.inputs:
            x = torch.from_numpy(np.ascontiguousarray(feeds[t.name])).to(self._device)
            args.append(x.half() if self._half and x.is_floating_point() else x)
        try:
            with torch.inference_mode():
                out = self._model(*args)
        except Exception as exc:
            raise BackendError(f"PyTorch model {self.info.model_path}: run failed: {exc}") from exc
        names = [t.name for t in self.outputs]
        if isinstance(out, dict):
            values = [out[n] for n in names]
        elif isinstance(out, (tuple, list)):
            values = list(out)
        else:
            values = [out]
        if len(values) != len(names):
            raise BackendError(
                f"PyTorch model {self.info.model_path}: {len(values)} outputs but names {names}"
            )
        result = {}
        for n, v in zip(names, values):
            v = v.detach().cpu()
            if v.dtype == torch.float16:
                v = v.float()
            result[n] = v.numpy()
        return result

    def close(self) -> None:
        self._model = None


def _first(*candidates: Any) -> Optional[List[str]]:
    for c in candidates:
        if c:
            return [str(x) for x in c]
    return None
