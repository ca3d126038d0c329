"""docs/parameters.md is what scripts/gen_parameters_doc.py makes from the config dataclasses."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("rclpy")  # the node modules are imported for their config_class

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location(
        "gen_parameters_doc", ROOT / "scripts" / "gen_parameters_doc.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parameters_doc_is_current():
    gen = _generator()
    current = (ROOT / "docs" / "parameters.md").read_text(encoding="utf-8")
    assert current == gen.render(), (
        "docs/parameters.md is stale: run python scripts/gen_parameters_doc.py"
    )


def test_parameters_doc_covers_every_node_and_field():
    import dataclasses

    gen = _generator()
    text = gen.render()
    for exe, target, _what in gen.NODES:
        assert f"## {exe} " in text
        for f in dataclasses.fields(gen._load(target)):
            assert f"| `{f.name}` |" in text, (exe, f.name)
    assert "`input_transport`" in text and "`camera_optical_frame`" in text.replace("'", "")
