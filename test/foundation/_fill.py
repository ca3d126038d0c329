"""Deterministic, type-driven filling of any ROS 2 message (every field non-default)."""

from __future__ import annotations

import importlib
from typing import Any

_SCALARS = {
    "boolean": lambda i: i % 2 == 0,
    "octet": lambda i: bytes([i % 256]),
    "char": lambda i: i % 128,
    "byte": lambda i: bytes([i % 256]),
    "float": lambda i: 0.5 + i,
    "double": lambda i: 0.25 + i,
    "int8": lambda i: -(i % 100),
    "uint8": lambda i: i % 256,
    "int16": lambda i: -i,
    "uint16": lambda i: 1000 + i,
    "int32": lambda i: -70000 - i,
    "uint32": lambda i: 70000 + i,
    "int64": lambda i: -(2**40) - i,
    "uint64": lambda i: 2**40 + i,
    "string": lambda i: "s%d" % i,
    "wstring": lambda i: "w%d" % i,
}


def _msg_class(type_name: str):
    pkg, name = type_name.split("/")
    return getattr(importlib.import_module(pkg + ".msg"), name)


def _value(type_str: str, seed: int) -> Any:
    if type_str.startswith("sequence<"):
        inner = type_str[len("sequence<") : -1].split(",")[0]
        return [_value(inner, seed + k) for k in range(2)]
    if "[" in type_str and type_str.endswith("]"):
        inner, n = type_str[:-1].split("[")
        return [_value(inner, seed + k) for k in range(int(n))]
    if type_str.startswith("string<"):
        return _SCALARS["string"](seed)
    if type_str in _SCALARS:
        return _SCALARS[type_str](seed)
    return fill(_msg_class(type_str)(), seed)


def fill(msg: Any, seed: int = 1) -> Any:
    """Set every field of ``msg`` (recursively) to a value derived from ``seed``."""
    for k, (name, type_str) in enumerate(msg.get_fields_and_field_types().items()):
        value = _value(type_str, seed * 7 + k)
        if type_str.startswith("sequence<octet"):
            value = b"".join(value)
        setattr(msg, name, value)
    return msg
