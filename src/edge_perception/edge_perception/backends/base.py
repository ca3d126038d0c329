"""The inference backend protocol every runtime honours (ONNX Runtime, PyTorch, TensorRT).

A backend maps named input arrays to named output arrays::

    outputs = backend({"images": batch})      # dict[str, ndarray] -> dict[str, ndarray]

The names and shapes come from the model itself (ONNX graph, the nn.Module ``deploy()``
contract, TensorRT engine), never from the caller, so pipelines and nodes stay
backend-agnostic: a new backend drops in by implementing this protocol and registering itself in
:mod:`edge_perception.backends.factory`. Heavy libraries are imported lazily inside the backend.

Written for Python 3.8 (the Jetson Xavier runtime): no ``X | Y`` unions, no builtin generics at run
time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import numpy as np

Arrays = Dict[str, np.ndarray]


class BackendError(RuntimeError):
    """A model could not be loaded or run; the message says which file and why."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model input or output.

    ``shape`` holds ``-1`` (or a symbolic name as str) for dynamic dimensions.
    """

    name: str
    shape: Tuple[object, ...]
    dtype: str


@dataclass
class BackendInfo:
    """What a backend reports for diagnostics (shown in the nodes' ``/diagnostics``)."""

    kind: str
    model_path: str
    precision: str = "fp32"
    device: str = "cpu"
    extra: Dict[str, str] = field(default_factory=dict)


class InferenceBackend:
    """Base class of all backends. Subclasses fill ``inputs``/``outputs`` from the model."""

    kind = "abstract"

    def __init__(self) -> None:
        self.inputs: List[TensorSpec] = []
        self.outputs: List[TensorSpec] = []
        self.info = BackendInfo(kind=self.kind, model_path="")

    @property
    def input_names(self) -> List[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> List[str]:
        return [t.name for t in self.outputs]

    def __call__(self, feeds: Arrays) -> Arrays:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise BackendError(
                f"{self.kind} backend ({self.info.model_path}): missing input(s) {missing}; "
                f"the model expects {self.input_names}"
            )
        return self.run(feeds)

    def run(self, feeds: Arrays) -> Arrays:  # pragma: no cover - abstract
        raise NotImplementedError

    def warmup(self, runs: int = 2) -> None:
        """Run on zero inputs of the model's static shapes (dynamic dims become 1)."""
        feeds = {t.name: np.zeros(static_shape(t.shape), dtype=t.dtype) for t in self.inputs}
        for _ in range(runs):
            self.run(feeds)

    def close(self) -> None:
        """Release sessions, engines and device memory. Safe to call twice."""


def static_shape(shape: Sequence[object], fill: int = 1) -> Tuple[int, ...]:
    """Replace dynamic dimensions (negative, None or symbolic) by ``fill``."""
    return tuple(d if isinstance(d, int) and d > 0 else fill for d in shape)
