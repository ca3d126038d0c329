"""Real ONNX graphs for the TensorRT tests, built with onnx.helper (checked with onnx.checker)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def conv_chain(
    path: Path,
    node_names: Sequence[str],
    shape: Sequence[object] = (1, 3, 16, 16),
    qdq: bool = False,
    zero_point: int = 0,
    zero_dtype: object = np.int8,
) -> Path:
    """A chain of 3x3 convolutions (3 channels each), one node per name, input ``images``,
    output ``logits``; with ``qdq`` a QuantizeLinear/DequantizeLinear pair precedes the first
    convolution (the explicit-INT8 layout of the quantization commands) with the given zero point
    (TensorRT accepts only 0; ONNX Runtime's default UINT8 activations give e.g. 128)."""
    rng = np.random.default_rng(0)
    nodes: List[onnx.NodeProto] = []
    inits: List[onnx.TensorProto] = []
    prev = "images"
    if qdq:
        inits += [
            numpy_helper.from_array(np.array(0.02, dtype=np.float32), "q_scale"),
            numpy_helper.from_array(np.array(zero_point, dtype=zero_dtype), "q_zero"),
        ]
        nodes.append(
            helper.make_node(
                "QuantizeLinear", [prev, "q_scale", "q_zero"], ["q"], name="/quant/QuantizeLinear"
            )
        )
        nodes.append(
            helper.make_node(
                "DequantizeLinear",
                ["q", "q_scale", "q_zero"],
                ["dq"],
                name="/quant/DequantizeLinear",
            )
        )
        prev = "dq"
    for i, name in enumerate(node_names):
        w = numpy_helper.from_array(rng.normal(size=(3, 3, 3, 3)).astype(np.float32), "w%d" % i)
        inits.append(w)
        out = "logits" if i == len(node_names) - 1 else "t%d" % i
        nodes.append(helper.make_node("Conv", [prev, w.name], [out], name=name, pads=[1, 1, 1, 1]))
        prev = out
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(shape))],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by the onnxruntime / TensorRT parsers of JetPack 5 too
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
