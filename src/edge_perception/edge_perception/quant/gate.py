"""The INT8 accuracy gate: promote a quantised model only if it stays within a metric budget.

Metrics are fractions in [0, 1] (mIoU, mAP); the budget is in *points* of a percentage, so the
default ``max_drop_points=1.0`` allows ``fp32 - int8 <= 0.010``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from typing import Dict, Optional

from edge_perception.export import atomic_write_bytes, manifest_path, write_json


@dataclass
class GateDecision:
    """Outcome of :func:`accuracy_gate`."""

    passed: bool
    metric: str
    fp32: float
    int8: float
    drop_points: float  # (fp32 - int8) * 100, positive = INT8 is worse
    max_drop_points: float
    reason: str

    def as_dict(self) -> Dict[str, object]:
        return asdict(self)


def accuracy_gate(
    fp32: float, int8: float, metric: str = "miou", max_drop_points: float = 1.0
) -> GateDecision:
    """Pass iff ``(fp32 - int8) * 100 <= max_drop_points``; NaN metrics never pass."""
    drop = (float(fp32) - float(int8)) * 100.0
    if drop != drop:  # NaN
        return GateDecision(False, metric, fp32, int8, drop, max_drop_points, "metric is NaN")
    passed = drop <= max_drop_points
    verdict = "within" if passed else "exceeds"
    reason = (
        f"INT8 {metric} {int8:.4f} vs FP32 {fp32:.4f}: drop {drop:.2f} points {verdict} the"
        f" {max_drop_points:.2f}-point budget"
    )
    return GateDecision(passed, metric, float(fp32), float(int8), drop, max_drop_points, reason)


def promote(
    decision: GateDecision,
    int8_path: str,
    dest_path: str,
    manifest: Optional[Dict[str, object]] = None,
) -> bool:
    """Copy ``int8_path`` to ``dest_path`` (+ sidecar manifest with the gate) iff it passed.

    On failure nothing is written and a stale ``dest_path`` from an earlier run is removed, so
    ``models/`` never holds an INT8 model that did not pass the current gate. Returns passed.
    """
    if not decision.passed:
        for p in (dest_path, manifest_path(dest_path)):
            if os.path.exists(p):
                os.unlink(p)
        return False
    with open(int8_path, "rb") as f:
        atomic_write_bytes(dest_path, f.read())
    data = dict(manifest or {})
    data["gate"] = decision.as_dict()
    write_json(manifest_path(dest_path), data)
    return True


def copy_model(src: str, dest: str) -> None:
    """Plain copy of a model file (FP32 promotion needs no gate)."""
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    shutil.copyfile(src, dest + ".tmp")
    os.replace(dest + ".tmp", dest)
