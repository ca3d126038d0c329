"""Parameter and multiply-accumulate (MAC) counting for PyTorch models.

:func:`count_cost` runs one forward pass with hooks on ``Conv1d/2d/3d``, ``ConvTranspose2d`` and
``Linear`` and counts, per layer, ``MACs = output elements x (C_in / groups) x kernel area`` (one
multiply-add per weight use; bias, BN, activations and resampling are not counted, which is the
convention of most model papers). ``FLOPs = 2 x MACs``. :func:`flops_torch` cross-checks with
``torch.utils.flop_counter`` (which counts matmul-like ops only, also ``2 x MACs``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

import torch
from torch import nn


@dataclass
class ModelCost:
    """Parameters, MACs and the per-layer breakdown of one forward pass."""

    params: int
    macs: int
    layers: List[Tuple[str, str, int]] = field(default_factory=list)  # (name, type, MACs)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def summary(self) -> str:
        return (
            f"{self.params / 1e6:.3f} M params, {self.macs / 1e9:.3f} GMAC "
            f"({self.flops / 1e9:.3f} GFLOP)"
        )


def _conv_macs(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(m, nn.ConvTranspose2d):
        # every input element is multiplied by C_out/groups x k x k weights
        k = m.kernel_size[0] * m.kernel_size[1]
        return int(inp.numel() * (m.out_channels // m.groups) * k)
    k = 1
    for s in m.kernel_size:
        k *= s
    return int(out.numel() * (m.in_channels // m.groups) * k)


def count_cost(model: nn.Module, *inputs: torch.Tensor) -> ModelCost:
    """Params and MACs of ``model(*inputs)`` (counted for the given batch size)."""
    layers: List[Tuple[str, str, int]] = []
    hooks = []

    def make_hook(name: str):
        def hook(m: nn.Module, args: Tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            if isinstance(m, nn.Linear):
                macs = int(out.numel() * m.in_features)
            else:
                macs = _conv_macs(m, args[0], out)
            layers.append((name, type(m).__name__, macs))

        return hook

    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)
    for name, m in model.named_modules():
        if isinstance(m, kinds):
            hooks.append(m.register_forward_hook(make_hook(name)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return ModelCost(params=params, macs=sum(x[2] for x in layers), layers=layers)


def flops_torch(model: nn.Module, *inputs: torch.Tensor) -> int:
    """FLOPs reported by ``torch.utils.flop_counter.FlopCounterMode`` (2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return int(counter.get_total_flops())
