"""``edge-perception --help`` says what each sub-command does (not "see ... --help")."""

from __future__ import annotations

import pytest
from edge_perception.cli import SUBCOMMANDS, SUMMARIES, main


def test_every_subcommand_has_a_summary():
    assert set(SUMMARIES) == set(SUBCOMMANDS)
    assert all(10 < len(text) <= 80 for text in SUMMARIES.values())


def test_top_level_help_lists_the_summaries(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "see edge-perception" not in out
    for name, text in SUMMARIES.items():
        assert name in out and text.split(",")[0][:30] in " ".join(out.split())
