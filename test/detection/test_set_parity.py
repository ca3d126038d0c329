"""check_set_parity (YOLOX export): ties at the top-K cut-off are a float-rounding tie-break,
so the candidates that swap there are not counted; a swap above the cut-off is."""

from __future__ import annotations

from typing import Any, List

import numpy as np
import torch
from edge_perception.detection.yolox import check_set_parity
from torch import nn

from edge_perception import export as export_mod

K = 10


class _Fixed(nn.Module):
    """Ten detections per image: scores 0.9, 0.8, ... (last three tied at 0.2 within 1e-5)."""

    def forward(self, x: torch.Tensor) -> Any:
        b = x.shape[0]
        scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.20002, 0.20001, 0.2])
        boxes = torch.arange(K * 4, dtype=torch.float32).reshape(K, 4) * 3.0
        labels = torch.zeros(K, dtype=torch.int64)
        return boxes.expand(b, K, 4), scores.expand(b, K), labels.expand(b, K)


class _Session:
    """An ORT session stand-in returning the model's outputs with rows replaced."""

    def __init__(self, replace: List[int]) -> None:
        self.replace = replace

    def run(self, names: Any, feeds: Any) -> Any:
        boxes, scores, labels = (t.numpy().copy() for t in _Fixed()(torch.zeros(1, 1)))
        for k in self.replace:
            boxes[:, k] += 100.0  # another candidate with the same score
        return boxes, scores, labels


def _report(monkeypatch, replace: List[int]) -> Any:
    monkeypatch.setattr(export_mod, "ort_session", lambda path: _Session(replace))
    return check_set_parity(
        _Fixed(), "unused.onnx", torch.zeros(1, 3, 8, 8), atol=1e-3, max_unmatched=0.0
    )


def test_identical_sets_match(monkeypatch):
    rep = _report(monkeypatch, [])
    assert rep.ok and rep.mismatch["unmatched"] == 0


def test_swaps_among_cutoff_ties_are_excused(monkeypatch):
    rep = _report(monkeypatch, [7, 8, 9])  # the three scores within 1e-4 of the lowest kept
    assert rep.ok and rep.mismatch["unmatched"] == 0


def test_swap_above_the_cutoff_counts(monkeypatch):
    rep = _report(monkeypatch, [2, 9])  # score 0.7 is no tie with the cut-off
    assert not rep.ok and np.isclose(rep.mismatch["unmatched"], 1 / K)
