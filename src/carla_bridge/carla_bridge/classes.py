"""The project's class tables, shared by the generator, the datasets and every model.

Object ids are COCO category ids (1-based, in this order). Lane-segmentation mask values are
indices into ``LANE_CLASSES``. A dataset's manifest repeats the tables it was written with.
"""

from __future__ import annotations

from typing import Dict, Tuple

OBJECT_CLASSES: Tuple[str, ...] = (
    "car",
    "truck",
    "bus",
    "motorcycle",
    "bicycle",
    "pedestrian",
    "traffic_sign",
)

LANE_CLASSES: Tuple[str, ...] = ("background", "drivable", "lane_solid", "lane_dashed")

# PNG palette for lane class masks (RGB per index) so a person can open the masks.
LANE_PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (0, 0, 0),
    (128, 64, 128),
    (255, 255, 255),
    (255, 200, 0),
)


def category_id(name: str) -> int:
    """COCO category id of an object class name; raises ValueError naming the valid names."""
    try:
        return OBJECT_CLASSES.index(name) + 1
    except ValueError:
        raise ValueError(
            "unknown object class {!r}; known classes: {}".format(name, ", ".join(OBJECT_CLASSES))
        ) from None


def category_table() -> Dict[int, str]:
    return {i + 1: n for i, n in enumerate(OBJECT_CLASSES)}
