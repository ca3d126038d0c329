"""ROS parameters <-> typed configs (:mod:`edge_perception.config`), in one place.

:func:`declare_config` declares one parameter per config field with a descriptor (description
with the allowed values, ranges, types); :func:`read_config` reads and validates them into the
dataclass (``ValueError`` names the parameter and what is allowed); :func:`install_validator`
rejects a bad value set at run time with that reason (``SetParametersResult.reason``) and hands
the accepted config to a callback.

Python 3.8 compatible.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Type, TypeVar, cast

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.parameter import Parameter

from edge_perception.config import config_from_dict

C = TypeVar("C")

_LIST_TYPES = {
    int: ParameterType.PARAMETER_INTEGER_ARRAY,
    str: ParameterType.PARAMETER_STRING_ARRAY,
}


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[operator]


def descriptor_for(f: dataclasses.Field) -> ParameterDescriptor:
    """Parameter descriptor of one config field (description, constraints, ranges, type)."""
    rules = f.metadata
    default = _default(f)
    desc = ParameterDescriptor(name=f.name, description=str(rules.get("help", "")))
    constraints: List[str] = []
    for key in ("choices", "item_choices"):
        if key in rules:
            constraints.append("one of: " + ", ".join(str(c) for c in rules[key]))
    if "length" in rules:
        constraints.append(f"exactly {rules['length']} values")
    if isinstance(default, bool):
        desc.type = ParameterType.PARAMETER_BOOL
    elif isinstance(default, int):
        desc.type = ParameterType.PARAMETER_INTEGER
        if "min" in rules and "max" in rules:
            desc.integer_range = [
                IntegerRange(from_value=int(rules["min"]), to_value=int(rules["max"]), step=0)
            ]
    elif isinstance(default, float):
        desc.type = ParameterType.PARAMETER_DOUBLE
        # An integer in a params file (period: 1) is accepted and converted by the config.
        desc.dynamic_typing = True
        if "min" in rules and "max" in rules:
            desc.floating_point_range = [
                FloatingPointRange(
                    from_value=float(rules["min"]), to_value=float(rules["max"]), step=0.0
                )
            ]
    elif isinstance(default, str):
        desc.type = ParameterType.PARAMETER_STRING
    elif isinstance(default, list):
        desc.type = _LIST_TYPES[rules.get("item", str)]
        # rclpy would type an empty default list as a byte array: let the config check types.
        desc.dynamic_typing = not default
    for key, word in (("min", ">="), ("max", "<=")):
        if key in rules and not (desc.integer_range or desc.floating_point_range):
            constraints.append(f"{word} {rules[key]}")
    desc.additional_constraints = "; ".join(constraints)
    return desc


def declare_config(node: Node, cls: Type[Any]) -> None:
    """Declare every field of ``cls`` as a parameter of ``node`` (overrides apply)."""
    for f in dataclasses.fields(cls):
        if node.has_parameter(f.name):
            continue
        desc = descriptor_for(f)
        node.declare_parameter(f.name, _default(f), desc)


def _python_value(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "tolist"):  # array.array / numpy arrays from the parameter layer
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value


def current_values(node: Node, cls: Type[Any]) -> Dict[str, Any]:
    """``name -> python value`` of every declared field of ``cls``."""
    return {
        f.name: _python_value(node.get_parameter(f.name).value) for f in dataclasses.fields(cls)
    }


def read_config(node: Node, cls: Type[C]) -> C:
    """The validated config from the node's current parameters (``ValueError`` when bad)."""
    return config_from_dict(cls, current_values(node, cls))


def install_validator(
    node: Node, cls: Type[C], on_accepted: Optional[Callable[[C], None]] = None
) -> Callable[[List[Parameter]], SetParametersResult]:
    """Reject parameter changes that make the config invalid; call ``on_accepted`` otherwise.

    Returns the registered callback (for ``remove_on_set_parameters_callback``).
    """
    names = {f.name for f in dataclasses.fields(cast(Any, cls))}

    def check(params: List[Parameter]) -> SetParametersResult:
        proposed = None
        try:
            values = current_values(node, cls)
            for p in params:
                if p.name in names:
                    values[p.name] = _python_value(p.value)
            proposed = config_from_dict(cls, values)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if on_accepted is not None:
            on_accepted(proposed)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(check)
    return check
