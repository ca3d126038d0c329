"""ONNX model I/O and input-shape handling for engine builds (TensorRT-free).

:func:`onnx_io` reads input/output names, shapes and dtypes of an ONNX file; :func:`resolve_shapes`
turns them (plus ``--shape`` arguments, parsed by :func:`parse_shape_arg`) into the
``[min, opt, max]`` optimisation-profile shapes that go into the engine and its cache key.

Runtime module: Python 3.8 compatible.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

Shape = Tuple[int, ...]


class BuildError(RuntimeError):
    """The engine could not be built; the message says why and what to change."""


_ONNX_DTYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
}


def onnx_model(model_path: str) -> Any:
    """The ONNX ModelProto (graph only; external weights stay on disk)."""
    import onnx

    return onnx.load(model_path, load_external_data=False)


def onnx_io(model_path: str) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """``{"inputs": {name: {"shape", "dtype"}}, "outputs": {...}}`` of an ONNX model.

    Dynamic dimensions are ``-1``. Initializers listed as graph inputs are excluded.
    """
    import onnx

    graph = onnx.load(model_path, load_external_data=False).graph
    inits = {i.name for i in graph.initializer}

    def spec(v: Any) -> Dict[str, Any]:
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        return {"shape": dims, "dtype": _ONNX_DTYPES.get(t.elem_type, str(t.elem_type))}

    return {
        "inputs": {v.name: spec(v) for v in graph.input if v.name not in inits},
        "outputs": {v.name: spec(v) for v in graph.output},
    }


def resolve_shapes(
    inputs: Dict[str, Dict[str, Any]], shapes: Dict[str, Tuple[Shape, Shape, Shape]]
) -> Dict[str, List[List[int]]]:
    """``[min, opt, max]`` per input: given ``shapes`` for dynamic inputs, the static shape x3
    otherwise. A dynamic batch dimension alone defaults to 1; other dynamic dimensions must be
    given (:class:`BuildError` names the ``--shape`` to add)."""
    unknown = sorted(set(shapes) - set(inputs))
    if unknown:
        raise BuildError(
            "--shape given for unknown input(s) %s; inputs are %s" % (unknown, sorted(inputs))
        )
    out: Dict[str, List[List[int]]] = {}
    for name, spec in inputs.items():
        dims = [int(d) for d in spec["shape"]]
        if name in shapes:
            triple = [[int(d) for d in s] for s in shapes[name]]
            for s in triple:
                if len(s) != len(dims) or any(g != d for g, d in zip(s, dims) if d > 0):
                    raise BuildError(
                        "shape %s for input %r does not fit the model's %s" % (s, name, dims)
                    )
            lo, opt, hi = triple
            if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
                raise BuildError("input %r: need min <= opt <= max, got %s" % (name, triple))
            out[name] = triple
            continue
        if any(d <= 0 for d in dims[1:]):
            raise BuildError(
                "input %r has dynamic dimensions %s; give them, e.g. --shape %s:1x3x384x640"
                % (name, dims, name)
            )
        static = [1 if d <= 0 else d for d in dims]
        out[name] = [list(static), list(static), list(static)]
    return out


def parse_shape_arg(text: str) -> Tuple[str, Tuple[Shape, Shape, Shape]]:
    """``name:1x3x384x640`` (static) or ``name:1x3x384x640,4x3x384x640,8x3x384x640``
    (min,opt,max) -> ``(name, (min, opt, max))``. Raises ``ValueError`` on bad syntax."""
    if ":" not in text:
        raise ValueError("expected NAME:DIMS (e.g. images:1x3x384x640), got %r" % text)
    name, spec = text.rsplit(":", 1)
    parts = spec.split(",")
    if len(parts) not in (1, 3) or not name:
        raise ValueError("expected NAME:DIMS or NAME:MIN,OPT,MAX, got %r" % text)
    try:
        shapes = [tuple(int(d) for d in p.lower().split("x")) for p in parts]
    except ValueError:
        raise ValueError("dimensions must be integers joined by 'x', got %r" % text) from None
    if any(d <= 0 for s in shapes for d in s):
        raise ValueError("dimensions must be positive, got %r" % text)
    if len(shapes) == 1:
        shapes = shapes * 3
    return name, (shapes[0], shapes[1], shapes[2])
