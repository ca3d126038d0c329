"""Per-component precision policies: layer-name regex patterns -> precision.

A policy is an ordered list of rules ``(pattern, precision)``; the first rule whose regex
``re.search``-es a layer name decides that layer's precision (``fp32``, ``fp16`` or ``int8``).
Layers no rule matches get ``default`` (``None`` = TensorRT picks among the enabled precisions).

The TensorRT ONNX parser names each layer after the ONNX node it comes from (a node that becomes
several layers gives them the node name plus a suffix). The TorchScript exporter
(``torch.onnx.export(..., dynamo=False)``) names nodes after the module path
(``/backbone/layer1/layer1.0/conv1/Conv``); the dynamo exporter (the default since torch 2.9)
names them ``node_conv2d_3`` and keeps the module path in the node's ``namespace`` metadata.
:func:`with_scoped_names` renames such nodes to ``/backbone/layer1/.../node_conv2d_3`` and the
builder parses that renamed graph, so the same patterns work for both exporters. A rule can thus be
checked without TensorRT against the ONNX graph: :func:`resolve_onnx` says which node every rule
selects, and the builder applies the same :meth:`PrecisionPolicy.precision_for` to the layers.

Policies come from a preset name (:data:`PRESETS`), a YAML file or a dict::

    name: my-policy
    default: fp16          # optional
    strict: true           # OBEY (true) or PREFER (false) precision constraints
    rules:
      - {pattern: "^/backbone/", precision: int8}
      - {pattern: "head", precision: fp16}

Runtime module: Python 3.8 compatible.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

PRECISIONS = ("fp32", "fp16", "int8")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


class PolicyError(ValueError):
    """A policy file, preset name or rule is invalid; the message names the fix."""


@dataclass(frozen=True)
class Rule:
    """One ``pattern -> precision`` rule; ``pattern`` is a Python regex searched in layer names."""

    pattern: str
    precision: str

    def matches(self, name: str) -> bool:
        return re.search(self.pattern, name) is not None


@dataclass(frozen=True)
class PrecisionPolicy:
    """Ordered rules (first match wins), a default for unmatched layers and the constraint mode.

    ``strict`` selects ``BuilderFlag.OBEY_PRECISION_CONSTRAINTS`` (a layer that cannot run in its
    precision fails the build) over ``PREFER_PRECISION_CONSTRAINTS`` (TensorRT may deviate).
    """

    name: str
    rules: Tuple[Rule, ...]
    default: Optional[str] = None
    strict: bool = True
    description: str = field(default="", compare=False)

    def precision_for(self, layer_name: str) -> Optional[str]:
        """Precision of the first rule matching ``layer_name``, else :attr:`default`."""
        for rule in self.rules:
            if rule.matches(layer_name):
                return rule.precision
        return self.default

    def precisions(self) -> List[str]:
        """All precisions this policy can assign (drives the FP16 / INT8 builder flags)."""
        found = {r.precision for r in self.rules}
        if self.default:
            found.add(self.default)
        return [p for p in PRECISIONS if p in found]

    @property
    def needs_int8(self) -> bool:
        return "int8" in self.precisions()

    def to_dict(self) -> Dict[str, Any]:
        """Canonical, JSON-serialisable form (what the engine-cache key records)."""
        return {
            "name": self.name,
            "default": self.default,
            "strict": self.strict,
            "rules": [{"pattern": r.pattern, "precision": r.precision} for r in self.rules],
        }

    def digest(self) -> str:
        """sha256 of :meth:`to_dict` in canonical JSON; equal policies give equal digests."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _rules(pairs: Sequence[Tuple[str, str]]) -> Tuple[Rule, ...]:
    return tuple(Rule(p, prec) for p, prec in pairs)


# Module-path patterns of torch.onnx exports (``/<module>/<submodule>/.../<Op>``); each matches the
# attribute names the project's models use and their common aliases.
PRESETS: Dict[str, PrecisionPolicy] = {
    # What YolactEdge ships (its TensorRT config: backbone, protonet and flow net INT8; FPN and
    # prediction module FP16): the convolutional feature extractors tolerate INT8, the FPN / the
    # warping fuse and the prediction heads, whose outputs go straight into boxes, classes and
    # mask coefficients, stay FP16. Matches YOLACT module names and this project's VIS graphs
    # (det/backbone, protonet, flow_net; det/encoder, fuse, det/decoder, propagator, query_heads).
    "yolact": PrecisionPolicy(
        name="yolact",
        rules=_rules(
            [
                (r"(^|/)(backbone|proto_?net|protonet|proto|flow_?net|flownet)(/|\.|$)", "int8"),
                (r"(^|/)(fpn|neck|encoder|fuse|warp\w*)(/|\.|$)", "fp16"),
                (
                    r"(^|/)(prediction_layers?|pred_layers?|heads?|predict\w*|decoder|propagator|"
                    r"query_heads|semantic\w*)(/|\.|$)",
                    "fp16",
                ),
            ]
        ),
        default="fp16",
        description="backbone + protonet + flow net INT8; FPN / warping fuse + heads FP16",
    ),
    # RT-DETR: CNN backbone and the hybrid encoder INT8; transformer decoder and heads FP16.
    "rtdetr": PrecisionPolicy(
        name="rtdetr",
        rules=_rules(
            [
                (r"(^|/)(decoder|transformer|dec_\w+|\w*_head|heads?|query\w*)(/|\.|$)", "fp16"),
                (r"(^|/)(backbone|encoder|hybrid_encoder)(/|\.|$)", "int8"),
            ]
        ),
        default="fp16",
        description="backbone + encoder INT8; decoder + heads FP16",
    ),
    # Lane U-Net: everything INT8 except the final classification head.
    "lane": PrecisionPolicy(
        name="lane",
        rules=_rules([(r"(^|/)(head|outc|out_conv|final\w*|classifier)(/|\.|$)", "fp16")]),
        default="int8",
        description="all INT8 except the final head FP16",
    ),
}


def _check_precision(value: Any, where: str) -> str:
    if value not in PRECISIONS:
        raise PolicyError(
            "%s: precision %r is not one of %s" % (where, value, ", ".join(PRECISIONS))
        )
    return str(value)


def policy_from_dict(data: Mapping[str, Any], name: str = "custom") -> PrecisionPolicy:
    """Validate a policy mapping (the YAML layout in the module doc) into a policy.

    Raises :class:`PolicyError` for unknown keys, bad precisions and regexes that do not compile.
    """
    if not isinstance(data, Mapping):
        raise PolicyError(
            "policy %r: expected a mapping with 'rules', got %s" % (name, type(data))
        )
    unknown = set(data) - {"name", "default", "strict", "rules", "description"}
    if unknown:
        raise PolicyError(
            "policy %r: unknown key(s) %s; allowed: name, default, strict, rules, description"
            % (name, sorted(unknown))
        )
    pname = str(data.get("name", name))
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        raise PolicyError("policy %r: 'rules' must be a list of {pattern, precision}" % pname)
    rules: List[Rule] = []
    for i, item in enumerate(raw_rules):
        where = "policy %r rule %d" % (pname, i)
        if isinstance(item, Mapping) and set(item) == {"pattern", "precision"}:
            pattern, prec = item["pattern"], item["precision"]
        elif (
            isinstance(item, Mapping)
            and len(item) == 1
            and not set(item)
            & {
                "pattern",
                "precision",
            }
        ):  # short form {"<regex>": "<precision>"}
            pattern, prec = next(iter(item.items()))
        else:
            raise PolicyError(
                "%s: expected {pattern: <regex>, precision: <fp32|fp16|int8>}, got %r"
                % (where, item)
            )
        try:
            re.compile(str(pattern))
        except re.error as exc:
            raise PolicyError(
                "%s: pattern %r is not a valid regex: %s" % (where, pattern, exc)
            ) from exc
        rules.append(Rule(str(pattern), _check_precision(prec, where)))
    default = data.get("default")
    if default is not None:
        default = _check_precision(default, "policy %r default" % pname)
    strict = data.get("strict", True)
    if not isinstance(strict, bool):
        raise PolicyError("policy %r: 'strict' must be true or false, got %r" % (pname, strict))
    if not rules and default is None:
        raise PolicyError("policy %r: no rules and no default; it would change nothing" % pname)
    return PrecisionPolicy(
        name=pname,
        rules=tuple(rules),
        default=default,
        strict=strict,
        description=str(data.get("description", "")),
    )


def load_policy(spec: Any) -> Optional[PrecisionPolicy]:
    """A policy from ``None`` (no policy), a preset name, a ``.yaml``/``.yml``/``.json`` path,
    a mapping, or an existing :class:`PrecisionPolicy`."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, PrecisionPolicy):
        return spec
    if isinstance(spec, Mapping):
        return policy_from_dict(spec)
    text = str(spec)
    if text in PRESETS:
        return PRESETS[text]
    if text.endswith((".yaml", ".yml", ".json")):
        if not os.path.isfile(text):
            raise PolicyError("precision policy file %s does not exist" % text)
        with open(text, encoding="utf-8") as f:
            if text.endswith(".json"):
                data = json.load(f)
            else:
                import yaml

                data = yaml.safe_load(f)
        return policy_from_dict(data, name=os.path.splitext(os.path.basename(text))[0])
    raise PolicyError(
        "unknown precision policy %r: use a preset (%s) or a .yaml/.json policy file"
        % (text, ", ".join(sorted(PRESETS)))
    )


def _load_model(model: Any) -> Any:
    import onnx

    if isinstance(model, (str, os.PathLike)):
        return onnx.load(str(model), load_external_data=False)
    return model


def _scope_of(node: Any) -> str:
    """Module path from the dynamo exporter's ``namespace`` metadata, e.g. ``/backbone/fpn``.

    The value looks like ``": pkg.Net/backbone: torch...Sequential/backbone.0: ...Conv2d/conv2d:
    aten.conv2d.default"``: ``/``-separated ``name: type`` pairs, the root first (empty name) and
    the ATen op last.
    """
    for prop in node.metadata_props:
        if prop.key == "namespace":
            parts = [p.split(":", 1)[0].strip() for p in prop.value.split("/")]
            scope = [p for p in parts[1:-1] if p]
            return "/" + "/".join(scope) if scope else ""
    return ""


def with_scoped_names(model: Any) -> Any:
    """The model with dynamo-exported nodes renamed ``<module path>/<node name>``.

    Returns the input object unchanged when no node needs it (TorchScript exports, hand-made
    graphs), else a renamed copy. Names stay unique (the original name is kept as the suffix).
    """
    model = _load_model(model)
    renames = {}
    for i, node in enumerate(model.graph.node):
        if "/" in node.name:
            continue
        scope = _scope_of(node)
        if scope:
            renames[i] = "%s/%s" % (scope, node.name or "%s_%d" % (node.op_type, i))
    if not renames:
        return model
    import copy

    out = copy.deepcopy(model)
    for i, name in renames.items():
        out.graph.node[i].name = name
    return out


def onnx_node_names(model: Any) -> List[str]:
    """Names of the nodes of an ONNX model (path or ``ModelProto``) as TensorRT will see them.

    Graph order; dynamo-exported nodes get their module path (:func:`with_scoped_names`);
    nodes without a name get ``<op_type>_<index>``.
    """
    graph = with_scoped_names(model).graph
    return [n.name or "%s_%d" % (n.op_type, i) for i, n in enumerate(graph.node)]


def resolve_onnx(policy: PrecisionPolicy, model: Any) -> Dict[str, Optional[str]]:
    """Precision the policy assigns to every ONNX node (``None`` = left to TensorRT)."""
    return {name: policy.precision_for(name) for name in onnx_node_names(model)}


def rule_matches(policy: PrecisionPolicy, names: Sequence[str]) -> List[Tuple[Rule, List[str]]]:
    """For each rule, the names it decides (first match wins, so later rules lose overlaps).

    A rule with an empty list matches nothing in this model: usually a wrong pattern.
    """
    out: List[Tuple[Rule, List[str]]] = [(r, []) for r in policy.rules]
    for name in names:
        for i, rule in enumerate(policy.rules):
            if rule.matches(name):
                out[i][1].append(name)
                break
    return out


def summarize(policy: PrecisionPolicy, names: Sequence[str]) -> Dict[str, int]:
    """Count of names per assigned precision (``"auto"`` for unassigned)."""
    counts: Dict[str, int] = {}
    for name in names:
        key = policy.precision_for(name) or "auto"
        counts[key] = counts.get(key, 0) + 1
    return counts


def is_qdq_model(model: Any) -> bool:
    """True when the ONNX graph holds QuantizeLinear/DequantizeLinear nodes (explicit INT8).

    Such models carry their own scales: TensorRT builds them without a calibrator.
    """
    graph = _load_model(model).graph
    return any(n.op_type in QDQ_OPS for n in graph.node)


def qdq_problems(model: Any) -> List[str]:
    """Why TensorRT would reject a Q/DQ model: it supports only symmetric INT8 (zero points 0).

    ONNX Runtime's default static quantisation (UINT8 activations, asymmetric) gives non-zero
    zero points, which the TensorRT ONNX parser refuses. Zero points stored as initializers or
    Constant nodes are checked; an all-zero UINT8 zero point is accepted (TensorRT reads it as
    INT8). Returns one line per offending node (empty = fine).
    """
    import numpy as np
    from onnx import numpy_helper

    graph = _load_model(model).graph
    values = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = node.attribute[0].t
    problems: List[str] = []
    for node in graph.node:
        if node.op_type not in QDQ_OPS or len(node.input) < 3 or not node.input[2]:
            continue
        tensor = values.get(node.input[2])
        if tensor is None:
            continue
        zero = numpy_helper.to_array(tensor)
        if np.any(zero != 0):
            problems.append(
                "%s (%s): zero point %s is not 0"
                % (node.name or node.output[0], node.op_type, zero.ravel()[:4].tolist())
            )
    return problems
