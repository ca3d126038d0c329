"""Post-processing on hand-drawn class masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from edge_perception.lane.postprocess import ego_lines, extract_lines

H, W = 120, 200


def _road() -> np.ndarray:
    """Left solid line (20,119)->(90,30), dashed centre (100,119)->(100,30),
    right solid line (180,119)->(110,30), drivable road between them."""
    m = np.zeros((H, W), np.uint8)
    cv2.fillPoly(m, [np.array([[20, 119], [90, 30], [110, 30], [180, 119]], np.int32)], 1)
    cv2.line(m, (20, 119), (90, 30), 2, 3)
    cv2.line(m, (180, 119), (110, 30), 2, 3)
    for y0 in range(119, 30, -20):  # 10-row dashes, 10-row gaps
        cv2.line(m, (100, y0), (100, max(30, y0 - 9)), 3, 3)
    return m


def test_three_lines_with_types_positions_and_order():
    lines = extract_lines(_road())
    assert [ln.type for ln in lines] == ["solid", "dashed", "solid"]
    left, centre, right = lines
    # points ordered bottom to top, on the drawn geometry
    assert left.points[0, 1] > left.points[-1, 1]
    for ln, (x0, x1) in ((left, (20, 90)), (centre, (100, 100)), (right, (180, 110))):
        true_x = x0 + (x1 - x0) * (119 - ln.points[:, 1]) / (119 - 30)
        assert np.max(np.abs(ln.points[:, 0] - true_x)) < 2.0
        assert ln.points[0, 1] == pytest.approx(119, abs=2) and ln.points[-1, 1] < 40
    # 12-row painted dashes (3 px pen) every 20 rows: ~40 % gaps before the 3x3 close
    assert 0.2 < centre.gap_ratio < 0.45 and left.gap_ratio < 0.05
    assert ego_lines(lines, 210) == (1, 2)  # ego centre x=105: dashed centre left, solid right
    assert ego_lines(lines, 60) == (0, 1)
    assert ego_lines([], 60) == (-1, -1)


def test_solid_labelled_but_gapped_line_is_dashed_and_scale_applies():
    m = np.zeros((H, W), np.uint8)
    for y0 in range(119, 20, -24):  # labelled solid but with regular gaps (mislabelled dashes)
        cv2.line(m, (60, y0), (60, y0 - 11), 2, 3)
    (ln,) = extract_lines(m, scale=(2.0, 2.0))
    assert ln.type == "dashed"
    assert np.allclose(ln.points[:, 0], 120.0, atol=1.0)  # x scaled by 2
    assert ln.points[0, 1] == pytest.approx(238, abs=3)


def test_confidence_from_probabilities():
    m = np.zeros((H, W), np.uint8)
    cv2.line(m, (50, 119), (50, 20), 2, 3)
    probs = np.zeros((4, H, W), np.float32)
    probs[0] = 1.0
    probs[2][m == 2] = 0.7
    probs[0][m == 2] = 0.3
    (ln,) = extract_lines(m, probs=probs)
    assert ln.confidence == pytest.approx(0.7, abs=1e-5)
    assert ln.type == "solid"


def test_empty_noise_and_bad_input():
    assert extract_lines(np.zeros((H, W), np.uint8)) == []
    noise = np.zeros((H, W), np.uint8)
    noise[60:63, 40:43] = 2  # a 3-row speck is below min_rows
    assert extract_lines(noise) == []
    with pytest.raises(ValueError, match="mask"):
        extract_lines(np.zeros((1, H, W), np.uint8))


def test_solid_line_with_one_occlusion_stays_solid():
    m = np.zeros((H, W), np.uint8)
    cv2.line(m, (80, 119), (80, 20), 2, 3)
    m[60:80] = 0  # a car hides 20 rows: one interruption is not a dash pattern
    (ln,) = extract_lines(m)
    assert ln.type == "solid" and ln.gap_ratio > 0.15


def test_a_line_interrupted_longer_than_max_gap_is_joined_again():
    """A solid line hidden for 40 rows (an occluding car) stays one line; separate lines don't."""
    m = np.zeros((H, W), np.uint8)
    cv2.line(m, (40, 119), (61, 80), 2, 3)  # x = 40 + (119 - y) * 0.54: lower piece
    cv2.line(m, (83, 40), (94, 20), 2, 3)  # upper piece of the same line after 40 hidden rows
    cv2.line(m, (170, 119), (150, 60), 2, 3)  # another line, far to the right
    joined = extract_lines(m)
    split = extract_lines(m, merge_gap=0)
    assert len(split) == 3 and len(joined) == 2
    left = joined[0]
    assert left.points[0, 1] == pytest.approx(119, abs=2) and left.points[-1, 1] < 25
    true_x = 40 + (119 - left.points[:, 1]) * (21 / 39)
    assert np.max(np.abs(left.points[:, 0] - true_x)) < 3.0
    assert joined[1].points[-1, 1] > 55  # the right line was not extended by the left one


def test_a_line_stopping_above_the_bottom_is_continued_down_to_it():
    """A dashed line whose lowest dash ends 40 rows above the image bottom, and a steep line that
    would leave the image sideways, are continued along their straight fit (bounded by
    ``extend`` x the traced height); ``extend=0`` keeps the traced part only."""
    m = np.zeros((H, W), np.uint8)
    for y0 in range(79, 10, -20):  # dashes from row 79 up: nothing below row 79
        cv2.line(m, (60 + (79 - y0) // 4, y0), (60 + (79 - y0 + 9) // 4, y0 - 9), 3, 3)
    cv2.line(m, (190, 90), (160, 30), 2, 3)  # continued, it leaves the image at x = W - 1, y 108
    kept = extract_lines(m, extend=0.0)
    grown = extract_lines(m)  # default extend
    assert len(kept) == len(grown) == 2
    (d0, s0), (d1, s1) = kept, grown
    assert d0.points[0, 1] < 82 and d1.points[0, 1] == pytest.approx(H - 1, abs=1.0)
    # the continuation follows the line's slope (x = 60 + (79 - y) / 4 extended below row 79)
    assert d1.points[0, 0] == pytest.approx(60 - (H - 1 - 79) / 4, abs=1.5)
    np.testing.assert_allclose(d1.points[-len(d0.points) :], d0.points)  # traced part unchanged
    assert s1.points[:, 0].max() <= W - 1 and s1.points[0, 1] > s0.points[0, 1]
    assert s1.points[0, 1] < H - 1  # stopped at the image side, not the bottom
    assert d1.bottom_x == pytest.approx(float(d1.points[0, 0]))
    short = extract_lines(m, extend=0.25)[0]  # at most a quarter of the traced height
    traced = d0.points[0, 1] - d0.points[-1, 1]
    assert short.points[0, 1] - d0.points[0, 1] <= 0.25 * traced + 1.0
