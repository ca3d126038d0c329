"""Fixtures of the lane tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from lane_synth import write_dataset


@pytest.fixture(scope="session")
def lane_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Session-wide tiny data set (8 train + 4 val frames, 96 x 160)."""
    return write_dataset(tmp_path_factory.mktemp("lane_data"))
