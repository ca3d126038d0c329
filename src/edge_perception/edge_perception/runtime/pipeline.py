"""Pipeline base: preprocess (reused buffers) -> backend call -> postprocess, timed per stage.

A pipeline owns one backend and turns an RGB ``uint8`` HxWx3 camera frame into a result record
(:mod:`edge_perception.runtime.results`). It is ROS-free, so benchmarks, evaluation and the nodes
share it. Subclasses implement :meth:`Pipeline.postprocess`; video pipelines may also override
:meth:`Pipeline.preprocess` / :meth:`Pipeline.infer`, keep state between frames, report
``keyframe`` per frame and clear state in :meth:`Pipeline.reset`.

Python 3.8 compatible.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

from edge_perception.backends.base import Arrays, BackendError, InferenceBackend
from edge_perception.runtime.preprocess import Preprocessor, Transform


@dataclass
class StageTimes:
    """Wall-clock milliseconds of the three stages of one frame."""

    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.inference_ms + self.postprocess_ms


@dataclass
class FrameOutput:
    """What :meth:`Pipeline.process` returns for one frame."""

    result: Any
    times: StageTimes
    keyframe: bool = True


def _image_input(backend: InferenceBackend) -> Tuple[str, Tuple[object, ...], str]:
    for spec in backend.inputs:
        if spec.name == "images":
            return spec.name, tuple(spec.shape), spec.dtype
    four_d = [s for s in backend.inputs if len(s.shape) == 4]
    if len(four_d) == 1:
        return four_d[0].name, tuple(four_d[0].shape), four_d[0].dtype
    raise BackendError(
        f"{backend.info.model_path}: no 'images' input (inputs: {backend.input_names})"
    )


def resolve_input_size(
    model_shape: Tuple[object, ...], requested: Optional[Tuple[int, int]]
) -> Tuple[int, int]:
    """Input (H, W): the model's static size, else ``requested``; a conflict is an error."""
    dims = [d if isinstance(d, int) and d > 0 else None for d in model_shape[-2:]]
    req = tuple(int(v) for v in requested) if requested and all(requested) else None
    if dims[0] and dims[1]:
        if req and req != (dims[0], dims[1]):
            raise ValueError(
                f"input_size {list(req)} conflicts with the model's static input "
                f"{[dims[0], dims[1]]}; use [0, 0] or the model's size"
            )
        return int(dims[0]), int(dims[1])
    if req is None:
        raise ValueError("the model has a dynamic input size: set input_size [height, width]")
    return req  # type: ignore[return-value]


class Pipeline:
    """Base class; see the module docstring."""

    task = "generic"

    def __init__(
        self,
        backend: InferenceBackend,
        input_size: Optional[Tuple[int, int]] = None,
        resize: str = "stretch",
        interpolation: str = "area",
    ) -> None:
        self.backend = backend
        name, shape, dtype = _image_input(backend)
        self.input_name = name
        self.input_hw = resolve_input_size(shape, input_size)
        dt = np.float16 if dtype == "float16" else np.float32
        self.preprocessor = Preprocessor(self.input_hw, resize, dt, interpolation)
        self.frames = 0

    # -- stages ------------------------------------------------------------------------------
    def preprocess(self, rgb: np.ndarray) -> Tuple[Arrays, Transform]:
        """Frame -> feeds (the reused input buffer) and the camera<->input transform."""
        buf, transform = self.preprocessor(rgb)
        return {self.input_name: buf}, transform

    def infer(self, feeds: Arrays) -> Arrays:
        return self.backend(feeds)

    def postprocess(self, outputs: Arrays, transform: Transform) -> Any:  # pragma: no cover
        raise NotImplementedError

    @property
    def keyframe(self) -> bool:
        """Whether the last processed frame was a full (keyframe) pass; image models: True."""
        return True

    # -- driver ------------------------------------------------------------------------------
    def process(self, rgb: np.ndarray) -> FrameOutput:
        """Run all three stages on one RGB uint8 HxWx3 frame."""
        t0 = time.perf_counter()
        feeds, transform = self.preprocess(rgb)
        t1 = time.perf_counter()
        outputs = self.infer(feeds)
        t2 = time.perf_counter()
        result = self.postprocess(outputs, transform)
        t3 = time.perf_counter()
        self.frames += 1
        times = StageTimes((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
        return FrameOutput(result, times, self.keyframe)

    def warmup(self, runs: int = 1) -> None:
        """Run the model on a grey input so first-frame costs (allocation, tuning) are paid."""
        for _ in range(int(runs)):
            self.process(np.full(self.input_hw + (3,), 114, np.uint8))
        self.reset()

    def reset(self) -> None:
        """Forget state carried between frames (none for image models)."""

    def describe(self) -> Dict[str, str]:
        """Key facts for diagnostics."""
        info = self.backend.info
        d = {
            "task": self.task,
            "backend": info.kind,
            "model": info.model_path,
            "precision": info.precision,
            "device": info.device,
            "input_size": f"{self.input_hw[0]}x{self.input_hw[1]}",
            "resize": self.preprocessor.mode,
            "interpolation": self.preprocessor.interpolation,
        }
        d.update(info.extra)
        return d

    def close(self) -> None:
        self.backend.close()
