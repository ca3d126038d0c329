"""Lane segmentation: U-Net model, losses, data, training, evaluation, export, post-processing.

Only :mod:`edge_perception.lane.postprocess` is a runtime module (Python 3.8, NumPy 1.x, no torch);
the rest is training / tooling and imports torch.

``LANE_CLASSES`` repeats the table of ``carla_bridge.classes`` (edge_perception never imports
carla_bridge, see docs/CONTRACTS.md); datasets carry the table in their manifest and
:mod:`edge_perception.lane.data` checks that it matches.
"""

from __future__ import annotations

from typing import Tuple

LANE_CLASSES: Tuple[str, ...] = ("background", "drivable", "lane_solid", "lane_dashed")
LINE_CLASSES: Tuple[int, ...] = (2, 3)  # indices of the lane-line classes
