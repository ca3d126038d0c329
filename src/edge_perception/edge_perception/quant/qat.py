"""Quantisation-aware training with eager fake-quant modules, exported as QDQ ONNX.

:func:`prepare_qat` returns a copy of a float model in which every ``Conv2d`` (+ a following
``BatchNorm2d``, folded into it first) becomes a :class:`QConv2d`: its input activation is
fake-quantised to UINT8 (asymmetric, EMA min/max observer) and its weight to INT8 (symmetric, per
output channel) - the same scheme as the static PTQ in :mod:`.ptq`, so the two are comparable.
Fake-quant ops use a straight-through estimator, so the network learns to live with the rounding.

Folding BN before fine-tuning freezes the BN statistics; with the short, low-learning-rate
fine-tune used here (a few epochs from the FP32 weights) that is the usual, stable choice.

The exporter writes ``torch.fake_quantize_*`` as QuantizeLinear/DequantizeLinear pairs;
:func:`export_qat_onnx` then folds the weight quantisers into INT8 initializers
(:func:`.onnx_tools.fold_weight_quantizers`) so ORT / TensorRT see a standard QDQ graph.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Iterable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm


class ActFakeQuant(nn.Module):
    """UINT8 asymmetric fake quantiser with an exponential-moving-average min/max observer.

    The observer runs in training mode while ``observing`` is True (see :func:`freeze_observers`);
    the range always includes 0 so that zero padding is exact.
    """

    def __init__(self, momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = momentum
        self.observing = True
        self.register_buffer("min_val", torch.tensor(float("inf")))
        self.register_buffer("max_val", torch.tensor(float("-inf")))

    def qparams(self) -> Tuple[float, int]:
        lo = min(0.0, float(self.min_val))
        hi = max(0.0, float(self.max_val))
        scale = max((hi - lo) / 255.0, 1e-8)
        return scale, int(min(255, max(0, round(-lo / scale))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.observing:
            lo, hi = x.detach().min(), x.detach().max()
            if torch.isinf(self.min_val):
                self.min_val.copy_(lo)
                self.max_val.copy_(hi)
            else:
                self.min_val.lerp_(lo, self.momentum)
                self.max_val.lerp_(hi, self.momentum)
        if torch.isinf(self.min_val):
            return x  # never observed: pass through (calibrate first)
        scale, zp = self.qparams()
        return torch.fake_quantize_per_tensor_affine(x, scale, zp, 0, 255)


class QConv2d(nn.Module):
    """``Conv2d`` with fake-quantised input (UINT8) and per-channel symmetric INT8 weights."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv
        self.act = ActFakeQuant()
        out = conv.out_channels
        self.register_buffer("w_scale", torch.ones(out))
        self.register_buffer("w_zero", torch.zeros(out, dtype=torch.int32))
        self._refresh_scale()

    def _refresh_scale(self) -> None:
        with torch.no_grad():
            amax = self.conv.weight.abs().amax(dim=(1, 2, 3)).clamp(min=1e-8)
            self.w_scale.copy_(amax / 127.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        if self.training:
            self._refresh_scale()
        w = torch.fake_quantize_per_channel_affine(
            self.conv.weight, self.w_scale, self.w_zero, 0, -128, 127
        )
        c = self.conv
        return F.conv2d(x, w, c.bias, c.stride, c.padding, c.dilation, c.groups)


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new Conv2d (with bias) equal to ``bn(conv(x))`` in eval mode."""
    fused = copy.deepcopy(conv)
    with torch.no_grad():
        std = torch.sqrt(bn.running_var + bn.eps)
        gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
        factor = gamma / std
        fused.weight.copy_(conv.weight * factor.view(-1, 1, 1, 1))
        b = conv.bias if conv.bias is not None else torch.zeros_like(std)
        fused.bias = nn.Parameter((b - bn.running_mean) * factor + beta)
    return fused


def _convert_module(m: nn.Module, name: str) -> nn.Module:
    if isinstance(m, nn.Sequential):
        return _convert_seq(m)
    if isinstance(m, nn.Conv2d):
        return QConv2d(m)
    if isinstance(m, nn.BatchNorm2d):
        raise ValueError(
            f"BatchNorm2d {name!r} does not follow a Conv2d inside an nn.Sequential; "
            "wrap conv+bn in nn.Sequential so prepare_qat can fold it"
        )
    _convert(m)
    return m


def _convert_seq(seq: nn.Sequential) -> nn.Sequential:
    items = list(seq)
    merged, i = [], 0
    while i < len(items):
        m = items[i]
        nxt = items[i + 1] if i + 1 < len(items) else None
        if isinstance(m, nn.Conv2d) and isinstance(nxt, nn.BatchNorm2d):
            merged.append(QConv2d(fold_bn(m, nxt)))
            i += 2
            continue
        merged.append(_convert_module(m, str(i)))
        i += 1
    return nn.Sequential(*merged)


def _convert(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        setattr(module, name, _convert_module(child, name))


def prepare_qat(model: nn.Module) -> nn.Module:
    """Fake-quant copy of ``model`` (BN folded; the original is untouched)."""
    q = copy.deepcopy(model).eval()
    _convert(q)
    return q


def set_observers(model: nn.Module, observing: bool) -> None:
    """Turn the activation range observers on or off (off = frozen ranges)."""
    for m in model.modules():
        if isinstance(m, ActFakeQuant):
            m.observing = observing


def calibrate(model: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Run batches through the observers (no weight update) to initialise activation ranges."""
    model.train()
    set_observers(model, True)
    with torch.no_grad():
        for x in batches:
            model(x)


def qat_finetune(
    model: nn.Module,
    loader: Iterable[Tuple[torch.Tensor, torch.Tensor]],
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    epochs: int = 2,
    lr: float = 3e-4,
    calib_batches: int = 8,
    freeze_after: float = 0.5,
    progress: bool = True,
    set_epoch: Optional[Callable[[int], None]] = None,
) -> nn.Module:
    """Prepare, calibrate on ``calib_batches`` batches, then fine-tune ``epochs`` epochs.

    Observers are frozen after a fraction ``freeze_after`` of the steps, so the last steps train
    against fixed activation ranges (those exported). Returns the fake-quant model in eval mode.
    """
    qmodel = prepare_qat(model)
    calib = []
    for i, (x, _y) in enumerate(loader):
        if i >= calib_batches:
            break
        calib.append(x)
    calibrate(qmodel, calib)
    opt = torch.optim.AdamW(qmodel.parameters(), lr=lr, weight_decay=0.0)
    steps_per_epoch = max(1, len(loader)) if hasattr(loader, "__len__") else 1  # type: ignore
    total = max(1, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))
    )
    step = 0
    for epoch in range(epochs):
        if set_epoch is not None:
            set_epoch(epoch)
        qmodel.train()
        for x, y in tqdm(
            loader, desc=f"QAT {epoch + 1}/{epochs}", disable=not progress, leave=False
        ):
            if step >= freeze_after * total:
                set_observers(qmodel, False)
            loss = criterion(qmodel(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
    set_observers(qmodel, False)
    return qmodel.eval()


def export_qat_onnx(
    qmodel: nn.Module,
    example_inputs: Tuple[torch.Tensor, ...],
    path: str,
    input_names: Sequence[str],
    output_names: Sequence[str],
    opset: int = 17,
) -> str:
    """Export a fake-quant model to QDQ ONNX with INT8 weight initializers (written atomically)."""
    import os
    import tempfile

    import onnx

    from edge_perception.export import atomic_write_bytes, export_onnx
    from edge_perception.quant.onnx_tools import fold_weight_quantizers

    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "qat.onnx")
        export_onnx(qmodel.eval(), example_inputs, raw, input_names, output_names, opset)
        proto = fold_weight_quantizers(onnx.load(raw))
        atomic_write_bytes(path, proto.SerializeToString())
    return path
