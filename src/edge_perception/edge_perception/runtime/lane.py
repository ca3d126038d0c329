"""Lane segmentation pipeline (model contract: input ``images``, outputs ``logits`` / ``mask``).

The class mask (argmax, ``mask`` output, or computed from ``logits`` when a model exports only
those) is mapped back to camera pixels. Lane lines come from
:func:`edge_perception.lane.postprocess.extract_lines` (imported lazily; when that module is not
installed the pipeline still runs and returns no lines, ``lines_available`` says so), traced on
the model-resolution mask and scaled to camera pixels.

Python 3.8 compatible.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from edge_perception.backends.base import Arrays, BackendError, InferenceBackend
from edge_perception.config import LANE_CLASS_NAMES, LINE_EXTEND
from edge_perception.runtime.pipeline import Pipeline
from edge_perception.runtime.preprocess import Transform
from edge_perception.runtime.results import LaneLineResult, LaneResult


def _load_line_extractor() -> Optional[Callable[..., Any]]:
    try:
        module = importlib.import_module("edge_perception.lane.postprocess")
    except ImportError:
        return None
    return getattr(module, "extract_lines", None)


def _as_line(obj: Any, index: int) -> LaneLineResult:
    if isinstance(obj, LaneLineResult):
        return obj

    def get(name: str, default: Any) -> Any:
        return obj.get(name, default) if isinstance(obj, dict) else getattr(obj, name, default)

    return LaneLineResult(
        points=np.asarray(get("points", []), np.float32).reshape(-1, 2),
        type=get("type", "unknown"),
        color=get("color", "unknown"),
        confidence=float(get("confidence", 1.0)),
        id=int(get("id", index)),
    )


class LanePipeline(Pipeline):
    """RGB frame -> :class:`LaneResult` (camera-size class mask + lane lines)."""

    task = "lane"

    def __init__(
        self,
        backend: InferenceBackend,
        input_size: Optional[Tuple[int, int]] = None,
        resize: str = "stretch",
        class_names: Sequence[str] = LANE_CLASS_NAMES,
        extract_lines: bool = True,
        line_row_step: int = 1,
        line_extend: float = LINE_EXTEND,
        interpolation: str = "area",
    ) -> None:
        super().__init__(backend, input_size, resize, interpolation)
        names = backend.output_names
        if "mask" not in names and "logits" not in names:
            raise BackendError(
                f"{backend.info.model_path}: a lane model needs a 'mask' or 'logits' output, "
                f"has {names}"
            )
        self.class_names: List[str] = list(class_names)
        for spec in backend.outputs:
            classes = spec.shape[1] if spec.name == "logits" and len(spec.shape) == 4 else None
            if isinstance(classes, int) and classes > 0 and classes != len(self.class_names):
                raise ValueError(
                    f"{backend.info.model_path} predicts {classes} classes but class_names has "
                    f"{len(self.class_names)}: {self.class_names}"
                )
        self._extract = _load_line_extractor() if extract_lines else None
        self.lines_available = self._extract is not None
        if int(line_row_step) < 1:
            raise ValueError(f"line_row_step must be >= 1, got {line_row_step}")
        self.line_row_step = int(line_row_step)
        if not line_extend >= 0.0:
            raise ValueError(f"line_extend must be >= 0, got {line_extend}")
        self.line_extend = float(line_extend)

    def postprocess(self, outputs: Arrays, transform: Transform) -> LaneResult:
        if "mask" in outputs:
            mask = np.asarray(outputs["mask"])
        else:
            mask = np.asarray(outputs["logits"]).argmax(axis=1)
        if mask.ndim == 3:
            mask = mask[0]
        if mask.ndim != 2:
            raise BackendError(f"lane model mask has shape {mask.shape}; expected [N, H, W]")
        mask = mask.astype(np.uint8, copy=False)
        class_mask = transform.mask_to_source(mask)
        lines: List[LaneLineResult] = []
        if self._extract is not None:
            # Lines are traced at model resolution (cheaper) and scaled to camera pixels.
            content = transform.content(mask)
            scale = (1.0 / transform.scale_x, 1.0 / transform.scale_y)
            found = self._extract(
                np.ascontiguousarray(content),
                scale=scale,
                row_step=self.line_row_step,
                extend=self.line_extend,
            )
            lines = [_as_line(ln, i) for i, ln in enumerate(found)]
        return LaneResult(class_mask=class_mask, class_names=self.class_names, lines=lines)
