"""Datasets in the layout of docs/CONTRACTS.md: generation (writer) and readers.

``VALIDATION_SPLIT`` is the one validation split every benchmark uses: its sequences have the
fixed scenario seeds ``1_000_000_000 + i`` and the default scenario, frame rate included (only
image size, backend and CARLA connection follow the training scenario, see
``generate.validation_scenario``);
train seeds (``seed * 100_000 + i``, ``seed`` below 10_000) never reach them.
"""

from carla_bridge.dataset.reader import (
    DatasetFrame,
    iter_frames,
    load_coco,
    load_lanes,
    load_manifest,
    load_ytvis,
)
from carla_bridge.dataset.writer import VAL_BASE_SEED, SplitSpec, train_split

VALIDATION_SPLIT = SplitSpec(
    name="val", base_seed=VAL_BASE_SEED, sequences=8, frames_per_sequence=30
)

from carla_bridge.dataset.generate import generate_dataset  # noqa: E402 - needs VALIDATION_SPLIT

__all__ = [
    "VALIDATION_SPLIT",
    "DatasetFrame",
    "SplitSpec",
    "generate_dataset",
    "iter_frames",
    "load_coco",
    "load_lanes",
    "load_manifest",
    "load_ytvis",
    "train_split",
]
