"""ONNX Runtime post-training quantisation (static QDQ and dynamic) with calibration readers.

Static PTQ choices, and why:
- ``QuantFormat.QDQ``: the graph keeps float ops wrapped by QuantizeLinear/DequantizeLinear pairs,
  which ONNX Runtime fuses into integer kernels on CPU and TensorRT consumes directly (explicit
  quantisation), so one file serves both back-ends.
- activations ``QUInt8``, weights ``QInt8``: on x86 AVX2 without VNNI, ONNX Runtime's fastest
  integer GEMM/conv kernels take unsigned 8-bit activations and signed 8-bit weights (the
  ``vpmaddubsw`` instruction multiplies u8 by s8).
- per-channel weights: depthwise and 1x1 convs have very different ranges per output channel;
  per-tensor scales would crush the small channels.
- calibration ``minmax`` (default), ``entropy`` or ``percentile`` over 50-100 training images.
"""

from __future__ import annotations

import os
import tempfile
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

CALIBRATION_METHODS: Dict[str, CalibrationMethod] = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


class ArrayCalibrationReader(CalibrationDataReader):
    """Feeds batches of an in-memory float32 array to ``quantize_static`` under one input name."""

    def __init__(self, input_name: str, data: np.ndarray, batch_size: int = 1) -> None:
        if data.ndim < 2 or len(data) == 0:
            raise ValueError(f"calibration data must be a non-empty batch, got shape {data.shape}")
        self.input_name = input_name
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        self.batch_size = batch_size
        self._it: Optional[Iterator[Dict[str, np.ndarray]]] = None

    def _batches(self) -> Iterator[Dict[str, np.ndarray]]:
        for i in range(0, len(self.data), self.batch_size):
            yield {self.input_name: self.data[i : i + self.batch_size]}

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self._it is None:
            self._it = self._batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


def quantize_static_qdq(
    fp32_path: str,
    out_path: str,
    reader: CalibrationDataReader,
    method: str = "minmax",
    per_channel: bool = True,
    nodes_to_exclude: Optional[Sequence[str]] = None,
    op_types_to_exclude: Optional[Iterable[str]] = None,
    op_types_to_quantize: Optional[Sequence[str]] = None,
    preprocess: bool = True,
    extra_options: Optional[Dict[str, object]] = None,
    symmetric_activations: bool = False,
) -> str:
    """Static QDQ INT8 model of ``fp32_path`` at ``out_path`` (written atomically); returns it.

    ``nodes_to_exclude`` (node names) and ``op_types_to_exclude`` (e.g. ``{"Softmax"}``) stay in
    float: the mixed-precision policy. ``preprocess`` runs ORT's shape inference + graph
    optimisation first, as the quantiser recommends. By default activations are asymmetric UINT8
    (the fast choice for ONNX Runtime on AVX2 CPUs without VNNI); ``symmetric_activations=True``
    makes them signed INT8 with zero point 0, the only form TensorRT builds, so one artifact
    serves ONNX Runtime and ``edge-perception trt-build`` alike.
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; use {list(CALIBRATION_METHODS)}")
    if not os.path.isfile(fp32_path):
        raise FileNotFoundError(f"FP32 model {fp32_path} does not exist; export it first")
    import onnx

    ops = list(op_types_to_quantize) if op_types_to_quantize else None
    if op_types_to_exclude:
        model_ops = {n.op_type for n in onnx.load(fp32_path, load_external_data=False).graph.node}
        base = set(ops) if ops else model_ops
        ops = sorted(base - set(op_types_to_exclude))
    options: Dict[str, object] = {
        "ActivationSymmetric": bool(symmetric_activations),
        "WeightSymmetric": True,
    }
    if method == "percentile":
        options["CalibPercentile"] = 99.99
    options.update(extra_options or {})
    folder = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = fp32_path
        if preprocess:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            src = os.path.join(tmp, "pre.onnx")
            quant_pre_process(fp32_path, src, skip_symbolic_shape=True)
        out_tmp = os.path.join(tmp, "int8.onnx")
        quantize_static(
            src,
            out_tmp,
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8 if symmetric_activations else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            calibrate_method=CALIBRATION_METHODS[method],
            nodes_to_exclude=list(nodes_to_exclude or []),
            op_types_to_quantize=ops,
            extra_options=options,
        )
        _move(out_tmp, out_path)
    return out_path


def quantize_dynamic_int8(fp32_path: str, out_path: str) -> str:
    """Dynamic quantisation (INT8 weights, activations quantised at run time) for comparison.

    ORT's dynamic path targets MatMul/Gemm (and ConvInteger, which many CPU builds run slowly); a
    conv net mostly stays in float, which the comparison table makes visible.
    """
    if not os.path.isfile(fp32_path):
        raise FileNotFoundError(f"FP32 model {fp32_path} does not exist; export it first")
    with tempfile.TemporaryDirectory() as tmp:
        out_tmp = os.path.join(tmp, "dyn.onnx")
        quantize_dynamic(fp32_path, out_tmp, weight_type=QuantType.QInt8, per_channel=True)
        _move(out_tmp, out_path)
    return out_path


def _move(src: str, dst: str) -> None:
    """Copy a finished model next to ``dst`` then ``os.replace`` it (tmp may be another device)."""
    from edge_perception.export import atomic_write_bytes

    with open(src, "rb") as f:
        atomic_write_bytes(dst, f.read())


def image_batch(paths: List[str], size: Sequence[int]) -> np.ndarray:
    """float32 N x 3 x H x W RGB in [0, 1] from image files (calibration input)."""
    from edge_perception.lane.data import stack_images

    return stack_images(paths, (int(size[0]), int(size[1])))
