"""Inspection and clean-up of QDQ ONNX graphs."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Dict, Optional

import numpy as np

if TYPE_CHECKING:
    import onnx


def op_histogram(path: str) -> Dict[str, int]:
    """``{op_type: count}`` of a model's nodes (e.g. to assert QDQ nodes are present)."""
    import onnx

    return dict(Counter(n.op_type for n in onnx.load(path).graph.node))


def quantized_conv_fraction(path: str) -> float:
    """Fraction of Conv nodes whose weight input comes from a DequantizeLinear node."""
    import onnx

    g = onnx.load(path).graph
    dq_out = {o for n in g.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = [n for n in g.node if n.op_type == "Conv"]
    if not convs:
        return 0.0
    return sum(1 for n in convs if n.input[1] in dq_out) / len(convs)


def fold_weight_quantizers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace ``QuantizeLinear(constant float W)`` by a constant INT8 tensor feeding the DQ.

    The PyTorch exporter writes fake-quantised weights as float initializer -> Q -> DQ; ONNX
    Runtime and TensorRT expect INT8 initializer -> DQ (and the file shrinks ~4x). Unused float
    initializers are removed.
    """
    import onnx
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consts = {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t)
        for n in g.node
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"
    }

    producers = {o: n for n in g.node for o in n.output}

    def value(name: str) -> Optional[np.ndarray]:
        """Constant value of a tensor: initializer, Constant, or Cast/Identity of a constant."""
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in consts:
            return consts[name]
        node = producers.get(name)
        if node is not None and node.op_type in ("Cast", "Identity"):
            v = value(node.input[0])
            if v is None or node.op_type == "Identity":
                return v
            to = next(a.i for a in node.attribute if a.name == "to")
            return v.astype(onnx.helper.tensor_dtype_to_np_dtype(to))
        return None

    remove = []
    for node in g.node:
        if node.op_type != "QuantizeLinear" or value(node.input[0]) is None:
            continue
        w, scale = value(node.input[0]), value(node.input[1])
        zp = value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if w is None or scale is None:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * w.ndim
        if scale.ndim == 1 and scale.size > 1:
            shape[axis] = scale.size
        s = scale.reshape(shape) if scale.ndim else scale
        dtype = zp.dtype if zp is not None else np.uint8
        info = np.iinfo(dtype)
        z = zp.reshape(shape).astype(np.int64) if zp is not None and zp.ndim else int(zp or 0)
        q = np.clip(np.rint(w / s) + z, info.min, info.max).astype(dtype)
        qname = node.input[0] + "_quantized"
        g.initializer.append(numpy_helper.from_array(q, qname))
        if zp is not None and len(node.input) > 2:
            zname = node.input[0] + "_zero_point"
            g.initializer.append(numpy_helper.from_array(zp.astype(dtype), zname))
            for other in g.node:
                if other.op_type == "DequantizeLinear" and other.input[0] == node.output[0]:
                    other.input[2] = zname
                    if node.input[1] not in inits:
                        sname = node.input[0] + "_scale"
                        g.initializer.append(
                            numpy_helper.from_array(scale.astype(np.float32), sname)
                        )
                        other.input[1] = sname
        for other in g.node:
            for k, name in enumerate(other.input):
                if name == node.output[0]:
                    other.input[k] = qname
        remove.append(node)
    for node in remove:
        g.node.remove(node)
    # drop nodes whose outputs nobody reads any more (the Cast/Identity feeding removed Qs)
    graph_outputs = {o.name for o in g.output}
    changed = True
    while changed:
        used_now = {i for n in g.node for i in n.input} | graph_outputs
        dead = [n for n in g.node if not any(o in used_now for o in n.output)]
        changed = bool(dead)
        for n in dead:
            g.node.remove(n)
    used = {i for n in g.node for i in n.input}
    for init in list(g.initializer):
        if init.name not in used and init.name not in {o.name for o in g.output}:
            g.initializer.remove(init)
    onnx.checker.check_model(model)
    return model
