"""Segmentation metrics against values worked out by hand on tiny masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from edge_perception.metrics.segmentation import (
    SegmentationMeter,
    confusion_matrix,
    iou_per_class,
    line_match_counts,
    mean_iou,
)


def test_confusion_matrix_and_iou_by_hand():
    gt = np.array([[0, 0, 1], [1, 1, 2]], dtype=np.uint8)
    pred = np.array([[0, 1, 1], [1, 0, 2]], dtype=np.uint8)
    cm = confusion_matrix(pred, gt, num_classes=4)
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[0, 0] = 1  # (0,0)
    expected[0, 1] = 1  # (0,1)
    expected[1, 1] = 2  # (0,2), (1,0)
    expected[1, 0] = 1  # (1,1)
    expected[2, 2] = 1  # (1,2)
    np.testing.assert_array_equal(cm, expected)
    iou = iou_per_class(cm)
    # class 0: TP 1, FP 1 (gt1->0), FN 1 (0->1): 1/3 ; class 1: TP 2, FP 1, FN 1: 2/4
    assert iou[0] == pytest.approx(1 / 3)
    assert iou[1] == pytest.approx(0.5)
    assert iou[2] == pytest.approx(1.0)
    assert math.isnan(iou[3])  # absent from both -> excluded
    assert mean_iou(cm) == pytest.approx((1 / 3 + 0.5 + 1.0) / 3)


def test_class_only_in_prediction_counts_as_zero():
    gt = np.zeros((2, 2), dtype=np.int64)
    pred = np.array([[0, 0], [0, 3]])
    iou = iou_per_class(confusion_matrix(pred, gt, 4))
    assert iou[3] == 0.0
    assert iou[0] == pytest.approx(3 / 4)


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int), 4)
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.full((2, 2), 5), np.zeros((2, 2), int), 4)
    with pytest.raises(TypeError, match="argmax"):
        confusion_matrix(np.zeros((2, 2), np.float32), np.zeros((2, 2), int), 4)
    cm = confusion_matrix(np.zeros((2, 2), int), np.array([[255, 0], [0, 0]]), 4, ignore_index=255)
    assert cm.sum() == 3


def test_line_f1_with_tolerance():
    gt = np.zeros((10, 10), dtype=np.uint8)
    gt[:, 3] = 2  # a vertical GT line, 10 pixels
    pred = np.zeros_like(gt)
    pred[:, 5] = 3  # predicted 2 px to the right (type confusion still counts as a line)
    pred[0:2, 9] = 2  # 2 stray pixels, 6 px away
    c = line_match_counts(pred, gt, tol=2)
    assert (c.pred_matched, c.pred_total, c.gt_matched, c.gt_total) == (10, 12, 10, 10)
    assert c.precision == pytest.approx(10 / 12)
    assert c.recall == 1.0
    assert c.f1 == pytest.approx(2 * (10 / 12) / (10 / 12 + 1))
    tight = line_match_counts(pred, gt, tol=1)
    assert tight.pred_matched == 0 and tight.gt_matched == 0 and tight.f1 == 0.0
    # diagonal distance: sqrt(2) <= 1.5
    g2 = np.zeros((5, 5), np.uint8)
    g2[2, 2] = 2
    p2 = np.zeros_like(g2)
    p2[3, 3] = 2
    assert line_match_counts(p2, g2, tol=1.5).pred_matched == 1
    assert line_match_counts(p2, g2, tol=1.4).pred_matched == 0


def test_meter_accumulates_counts_not_ratios():
    meter = SegmentationMeter(["background", "drivable", "lane_solid", "lane_dashed"], tol=0)
    gt1 = np.array([[0, 2]], np.uint8)
    pred1 = np.array([[0, 2]], np.uint8)
    gt2 = np.array([[0, 0, 0, 2]], np.uint8)[:, :2].repeat(2, 0)  # 2x2, line in col 1
    pred2 = np.zeros_like(gt2)
    meter.update(pred1, gt1)
    meter.update(pred2[None], gt2[None])
    out = meter.compute()
    # lane_solid: TP 1, FN 0 (frame1) + FN 0?  gt2 has no 2 -> only frame 1 lines
    assert out["frames"] == 2
    assert out["iou"]["drivable"] is None and out["iou"]["lane_dashed"] is None
    assert out["iou"]["lane_solid"] == pytest.approx(1.0)
    assert out["line_f1"] == pytest.approx(1.0)
    gt3 = np.array([[2, 2, 2]], np.uint8)
    pred3 = np.array([[2, 0, 0]], np.uint8)
    meter.update(pred3, gt3)
    out = meter.compute()
    # lane_solid over all frames: TP 2, FN 2 -> 0.5; line recall 2/4, precision 1
    assert out["iou"]["lane_solid"] == pytest.approx(0.5)
    assert out["line_recall"] == pytest.approx(0.5)
    assert out["line_precision"] == pytest.approx(1.0)
    assert out["line_f1"] == pytest.approx(2 * 0.5 / 1.5)
