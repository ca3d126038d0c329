"""ROS parameters <-> typed configs (:mod:`edge_perception.config`), in one place.

:func:`declare_config` declares one parameter per config field with a descriptor (description
with the allowed values, ranges, types); :func:`read_config` reads and validates them into the
dataclass (``ValueError`` names the parameter and what is allowed); :func:`install_validator`
rejects a bad value set at run time with that reason (``SetParametersResult.reason``) and hands
the accepted config to a callback; :func:`usage` is the ``--help`` text of a node.

Every parameter error, at start-up or live, is one line naming the parameter, the value and what
is allowed (``threads: -1 is below the minimum 0; allowed: an integer in 0..256``):

- parameters are declared with dynamic typing, so a value of the wrong type set live reaches the
  config check (rclpy's own message would name neither the parameter nor the value); live values
  outside a declared range get rclpy's range message, which names all three;
- a bad start-up value (``-p threads:=-1``, ``-p threads:=abc``) does not abort the node's
  construction (rclpy would raise from ``declare_parameter``): the parameter keeps the value, the
  node logs the error line at once, and configure fails with it until the value is changed.

Python 3.8 compatible.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, TypeVar, cast

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from edge_perception.config import allowed_text, check_value, config_from_dict

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
        desc.dynamic_typing = True  # a wrong type gets the config's message (module docstring)
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
    # Types are checked by the config (one message naming parameter, value and what is allowed);
    # rclpy's check would say only "Wrong parameter type". An empty default list would otherwise
    # be typed a byte array.
    desc.dynamic_typing = True
    for key, word in (("min", ">="), ("max", "<=")):
        if key in rules and not (desc.integer_range or desc.floating_point_range):
            constraints.append(f"{word} {rules[key]}")
    desc.additional_constraints = "; ".join(constraints)
    return desc


def declare_config(node: Node, cls: Type[Any]) -> List[str]:
    """Declare every field of ``cls`` as a parameter of ``node`` (overrides apply).

    A bad override (out of the declared range, wrong type, failing the config's checks) does not
    raise: the parameter is declared with it (without the range, which rclpy would enforce), one
    error line per problem is logged, and the lines are returned (configure fails until fixed).
    """
    for f in dataclasses.fields(cls):
        if node.has_parameter(f.name):
            continue
        desc = descriptor_for(f)
        try:
            node.declare_parameter(f.name, _default(f), desc)
        except (InvalidParameterValueException, InvalidParameterTypeException):
            # Keep the given value; the config check below reports it.
            loose = descriptor_for(f)
            loose.integer_range, loose.floating_point_range = [], []
            loose.dynamic_typing = True
            node.declare_parameter(f.name, _default(f), loose)
    errors = config_errors(node, cls)
    for line in errors:
        node.get_logger().error(
            "invalid parameter %s (configure fails until it is changed)" % line
        )
    return errors


def config_errors(node: Node, cls: Type[Any]) -> List[str]:
    """One line per invalid parameter of ``node`` (empty when the config is valid)."""
    values = current_values(node, cls)
    errors: List[str] = []
    for name, value in values.items():
        try:
            check_value(cls, name, value)
        except ValueError as exc:
            errors.append(str(exc))
    if not errors:
        try:
            config_from_dict(cls, values)
        except ValueError as exc:
            errors.append(str(exc))
    return errors


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

    A change is judged by the values it sets: while another parameter still holds a bad start-up
    value, a good value for this one is accepted (so bad values can be fixed one at a time), and
    ``on_accepted`` is called once the whole config is valid.
    Returns the registered callback (for ``remove_on_set_parameters_callback``).
    """
    names = {f.name for f in dataclasses.fields(cast(Any, cls))}

    def reject(params: List[Parameter], reason: str) -> SetParametersResult:
        _restore_types(node, cls, params)
        return SetParametersResult(successful=False, reason=reason)

    def check(params: List[Parameter]) -> SetParametersResult:
        values = current_values(node, cls)
        changed = [p.name for p in params if p.name in names]
        for p in params:
            if p.name in names:
                values[p.name] = _python_value(p.value)
        for name in changed:
            try:
                check_value(cls, name, values[name])
            except ValueError as exc:
                return reject(params, str(exc))
        others_bad = False
        for name in names.difference(changed):
            try:
                check_value(cls, name, values[name])
            except ValueError:
                others_bad = True
        if others_bad:  # accepted; the config becomes valid when the others are fixed too
            return SetParametersResult(successful=True)
        try:
            proposed = config_from_dict(cls, values)
        except ValueError as exc:
            return reject(params, str(exc))
        if on_accepted is not None:
            on_accepted(proposed)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(check)
    return check


def _restore_types(node: Node, cls: Type[Any], params: List[Parameter]) -> None:
    """Undo rclpy's dynamic-typing update of a rejected parameter's stored descriptor (rclpy
    sets the descriptor's type to the proposed value's before the callbacks run)."""
    names = {f.name for f in dataclasses.fields(cast(Any, cls))}
    for p in params:
        if p.name in names and node.has_parameter(p.name):
            current = node.get_parameter(p.name)
            node.describe_parameter(p.name).type = current.type_.value


def usage(
    cls: Type[Any], prog: str, summary: str = "", options: Optional[Dict[str, str]] = None
) -> str:
    """``--help`` text of a node: its options, then every parameter of config ``cls`` with its
    description, default and allowed values (from the dataclass metadata)."""
    opts = {"-h, --help": "print this text and exit"}
    opts.update(options or {})
    lines = [
        "usage: %s [%s] [--ros-args -p NAME:=VALUE ... | --params-file FILE]"
        % (prog, "] [".join(o.split(",")[0] for o in opts)),
        "",
    ]
    if summary:
        lines += [summary.strip(), ""]
    lines.append("options:")
    lines += ["  %-22s %s" % (o, text) for o, text in opts.items()]
    lines += ["", "parameters (ROS, --ros-args -p NAME:=VALUE):"]
    for f in dataclasses.fields(cls):
        default = _default(f)
        if isinstance(default, bool):
            shown = "true" if default else "false"
        elif isinstance(default, list):
            shown = "[" + ", ".join(str(v) for v in default) + "]"
        else:
            shown = repr(default) if isinstance(default, str) else str(default)
        lines.append("  %-22s %s" % (f.name, f.metadata.get("help", "")))
        lines.append("  %-22s default: %s; allowed: %s" % ("", shown, allowed_text(cls, f.name)))
    return "\n".join(lines) + "\n"


# name -> (default, kind, what is allowed); kind "float" accepts integers too.
MANAGER_PARAMETERS: Dict[str, Tuple[object, str, str]] = {
    "node_names": ([""], "list", "a list of node names"),
    "autostart": (True, "bool", "true or false"),
    "stop_on_failure": (True, "bool", "true or false"),
    "service_timeout_s": (20.0, "float", "a number of seconds > 0"),
    "transition_timeout_s": (30.0, "float", "a number of seconds > 0"),
    "diagnostics_period_s": (1.0, "float", "a number of seconds >= 0 (0 = off)"),
    "monitor_period_s": (2.0, "float", "a number of seconds >= 0 (0 = off)"),
}


def declare_manager_parameters(node: Node) -> Dict[str, object]:
    """Declare the lifecycle manager's parameters and return their checked values.

    Declared with dynamic typing so that a value of the wrong type (``-p autostart:=maybe``)
    reaches this check instead of aborting in rclpy; raises ValueError with one line naming the
    parameter, the value and what is allowed.
    """
    out: Dict[str, object] = {}
    for name, (default, kind, allowed) in MANAGER_PARAMETERS.items():
        desc = ParameterDescriptor(description=allowed, dynamic_typing=True)
        value = node.declare_parameter(name, default, desc).value
        if (
            kind == "list"
            and isinstance(value, (list, tuple))
            and all(isinstance(v, str) for v in value)
        ):
            out[name] = list(value)
        elif kind == "bool" and isinstance(value, bool):
            out[name] = value
        elif (
            kind == "float"
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
            and (
                value > 0 if name in ("service_timeout_s", "transition_timeout_s") else value >= 0
            )
        ):
            out[name] = float(value)
        else:
            raise ValueError(
                "lifecycle_manager: parameter %s:=%r is invalid; allowed: %s"
                % (name, value, allowed)
            )
    return out
