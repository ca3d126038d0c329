"""COCO uncompressed RLE and mask boxes, checked against pycocotools."""

from __future__ import annotations

import numpy as np
import pytest
from edge_perception.masks import (
    box_from_mask,
    box_from_rle,
    mask_area,
    mask_to_rle,
    mask_to_rle_counts,
    rle_counts_to_mask,
)

mask_api = pytest.importorskip("pycocotools.mask")


def _random_masks(seed: int = 0):
    rng = np.random.default_rng(seed)
    yield np.zeros((5, 7), np.uint8)
    yield np.ones((5, 7), np.uint8)
    one = np.zeros((4, 3), np.uint8)
    one[0, 0] = 1
    yield one
    last = np.zeros((4, 3), np.uint8)
    last[-1, -1] = 1
    yield last
    for _ in range(20):
        h, w = rng.integers(1, 40, size=2)
        yield (rng.random((h, w)) < rng.random()).astype(np.uint8)
    for _ in range(20):  # objects: background columns before / after them, or none
        h, w = rng.integers(1, 40, size=2)
        y0, y1 = sorted(rng.integers(0, h + 1, size=2))
        x0, x1 = sorted(rng.integers(0, w + 1, size=2))
        m = np.zeros((h, w), np.uint8)
        m[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.7
        yield m


def test_counts_match_pycocotools_decoding_and_area():
    for m in _random_masks():
        h, w = m.shape
        counts = mask_to_rle_counts(m)
        assert sum(counts) == h * w
        rle = mask_api.frPyObjects({"size": [h, w], "counts": counts}, h, w)
        np.testing.assert_array_equal(mask_api.decode(rle), m)
        assert int(mask_api.area(rle)) == int(m.sum()) == mask_area(counts)
        np.testing.assert_array_equal(rle_counts_to_mask(counts, h, w), m.astype(bool))


def test_counts_equal_pycocotools_encoding_runs():
    # pycocotools' own encoder gives compressed strings; decode its runs through frPyObjects
    # round trip: our counts -> pycocotools RLE must equal pycocotools' encoding of the mask.
    for m in _random_masks(1):
        h, w = m.shape
        ours = mask_api.frPyObjects({"size": [h, w], "counts": mask_to_rle_counts(m)}, h, w)
        theirs = mask_api.encode(np.asfortranarray(m))
        assert ours["counts"] == theirs["counts"]


def test_starts_with_zero_run_for_foreground_first_pixel():
    m = np.ones((2, 2), np.uint8)
    assert mask_to_rle_counts(m) == [0, 4]
    assert mask_to_rle(m) == {"size": [2, 2], "counts": [0, 4]}
    m[1, 0] = 0  # column-major: pixel order (0,0), (1,0), (0,1), (1,1)
    assert mask_to_rle_counts(m) == [0, 1, 1, 2]


def test_boxes_match_pycocotools_and_each_other():
    for m in _random_masks(2):
        h, w = m.shape
        box = box_from_mask(m)
        assert box_from_rle(mask_to_rle_counts(m), h, w) == box
        if m.any():
            rle = mask_api.encode(np.asfortranarray(m))
            x, y, bw, bh = mask_api.toBbox(rle)
            assert box == pytest.approx((x, y, x + bw, y + bh))
        else:
            assert box == (0.0, 0.0, 0.0, 0.0)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="2-D"):
        mask_to_rle_counts(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="sum to 5"):
        rle_counts_to_mask([2, 3], 2, 2)
    with pytest.raises(ValueError, match="non-negative"):
        rle_counts_to_mask([5, -1], 2, 2)
