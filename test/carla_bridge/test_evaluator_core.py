"""ClosedLoopEvaluator on tiny hand-made streams with known metrics (no ROS)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from carla_bridge.evaluation import ClosedLoopEvaluator, to_markdown, write_report
from edge_perception.masks import mask_to_rle
from edge_perception.runtime.results import Detections, Instances

H, W = 32, 48


def dets(boxes, labels, scores=None) -> Detections:
    n = len(boxes)
    return Detections(
        boxes_xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        scores=np.asarray(scores if scores is not None else [1.0] * n, np.float32),
        labels=np.asarray(labels, np.int64),
    )


def insts(masks, labels) -> Instances:
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    n = len(masks)
    return Instances(
        boxes_xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        scores=np.ones(n, np.float32),
        labels=np.asarray(labels, np.int64),
        track_ids=np.arange(n),
        ids=[str(i) for i in range(n)],
        rles=[mask_to_rle(m) for m in masks],
    )


def lane_mask(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = np.zeros((H, W), np.uint8)
    m[H // 2 :] = 1
    m[H // 2 :, 10:12] = 2
    m[H // 2 :, 30:32] = 3
    m[rng.integers(0, H, 5), rng.integers(0, W, 5)] = 0
    return m


def obj_mask(x0: int, y0: int, w: int, h: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0 : y0 + h, x0 : x0 + w] = True
    return m


def test_identical_predictions_score_perfectly(tmp_path):
    ev = ClosedLoopEvaluator()
    for k in range(3):
        stamp = 1_000_000_000 + k * 100_000_000
        ev.add_image(stamp, H, W)
        gt_boxes = [[2, 3, 12, 13], [20, 5, 40, 25]]
        masks = [obj_mask(2, 3, 10, 10), obj_mask(20, 5, 20, 20)]
        ev.add_ground_truth("lane", stamp, lane_mask(k))
        ev.add_ground_truth("detection", stamp, dets(gt_boxes, [0, 5]))
        ev.add_ground_truth("instance", stamp, insts(masks, [0, 5]))
        # predictions arrive 20 ms after the image stamp
        ev.add_prediction("lane", stamp, lane_mask(k), arrival_ns=stamp + 20_000_000)
        ev.add_prediction(
            "detection", stamp, dets(gt_boxes, [0, 5], [0.9, 0.8]), stamp + 30_000_000
        )
        ev.add_prediction("instance", stamp, insts(masks, [0, 5]), stamp + 40_000_000)
    ev.add_timing("lane_node", {"end_to_end_ms": 12.0, "inference_ms": 8.0})
    s = ev.summary()
    assert s["lane"]["miou"] == pytest.approx(1.0) and s["lane"]["frames"] == 3
    assert s["lane"]["line_f1"] == pytest.approx(1.0)
    assert s["detection"]["map"] == pytest.approx(1.0)
    assert s["instance"]["map"] == pytest.approx(1.0)
    assert s["latency_ms"]["lane"]["mean"] == pytest.approx(20.0)
    assert s["latency_ms"]["instance"]["max"] == pytest.approx(40.0)
    assert s["fps"]["detection"] == pytest.approx(10.0)
    assert s["pairing"]["lane"] == {"paired": 3, "gt_without_prediction": 0,
                                    "prediction_without_gt": 0,
                                    "duplicates_ignored": 0}  # fmt: skip
    paths = write_report(s, str(tmp_path / "out"))
    assert json.loads(open(paths[0]).read())["detection"]["map"] == pytest.approx(1.0)
    md = open(paths[1]).read()
    assert "mIoU 1.0000" in md and "lane_node" in md


def test_shifted_box_gives_the_expected_lower_ap():
    ev = ClosedLoopEvaluator()
    ev.add_ground_truth("detection", 5, dets([[0, 0, 10, 10]], [0]))
    # shifted 2 px right: IoU = 80 / 120 = 0.667 -> matches at IoU 0.50, 0.55, 0.60, 0.65 only
    ev.add_prediction("detection", 5, dets([[2, 0, 12, 10]], [0]))
    m = ev.summary()["detection"]
    assert m["map"] == pytest.approx(0.4, abs=1e-6)
    assert m["map50"] == pytest.approx(1.0) and m["map75"] == pytest.approx(0.0)


def test_ignore_flagged_ground_truth_is_neither_a_miss_nor_a_false_positive():
    # frame 1: a real car (score 1) found, a tiny ignore-flagged one (score 0) missed;
    # frame 2: a prediction on the ignore-flagged object only (it must not count as an FP)
    ev = ClosedLoopEvaluator()
    ev.add_ground_truth("detection", 1, dets([[0, 0, 40, 40], [100, 10, 104, 14]], [0, 0], [1, 0]))
    ev.add_prediction("detection", 1, dets([[0, 0, 40, 40]], [0], [0.9]))
    ev.add_ground_truth("detection", 2, dets([[0, 0, 40, 40], [100, 10, 104, 14]], [0, 0], [1, 0]))
    ev.add_prediction(
        "detection", 2, dets([[100, 10, 104, 14], [0, 0, 40, 40]], [0, 0], [0.95, 0.9])
    )
    assert ev.summary()["detection"]["map50"] == pytest.approx(1.0)
    # the same frames with the small object as a real target: a miss and AP drops
    ev = ClosedLoopEvaluator()
    ev.add_ground_truth("detection", 1, dets([[0, 0, 40, 40], [100, 10, 104, 14]], [0, 0]))
    ev.add_prediction("detection", 1, dets([[0, 0, 40, 40]], [0], [0.9]))
    assert ev.summary()["detection"]["map50"] < 0.6


def test_wrong_lane_class_lowers_miou_and_pairs_out_of_order():
    ev = ClosedLoopEvaluator(lane_classes=["background", "drivable"])
    gt = np.zeros((4, 4), np.uint8)
    gt[2:] = 1
    pred = np.zeros((4, 4), np.uint8)
    pred[3:] = 1  # 4 of 8 drivable pixels found, no false positives
    ev.add_prediction("lane", 7, pred)  # prediction before its ground truth
    ev.add_ground_truth("lane", 8, gt)  # a frame that never gets a prediction
    ev.add_ground_truth("lane", 7, gt)
    ev.add_prediction("lane", 7, gt)  # a late duplicate must not change the score
    s = ev.summary()
    assert s["pairing"]["lane"]["duplicates_ignored"] == 1
    # IoU background = 8 / 12, drivable = 4 / 8
    assert s["lane"]["miou"] == pytest.approx((8 / 12 + 4 / 8) / 2)
    assert s["pairing"]["lane"]["gt_without_prediction"] == 1
    assert "no paired frames" in to_markdown(s)  # detection and instances


def test_line_f1_stride_scores_every_nth_frame_only():
    ev = ClosedLoopEvaluator(line_f1_stride=2)
    for k in range(3):
        pred = lane_mask(k)
        if k == 1:
            pred = np.where(pred >= 2, 1, pred).astype(np.uint8)  # lines missed on frame 1
        ev.add_ground_truth("lane", k, lane_mask(k))
        ev.add_prediction("lane", k, pred)
    lane = ev.summary()["lane"]
    assert lane["frames"] == 3 and lane["line_f1_frames"] == 2  # frames 0 and 2
    assert lane["line_f1"] == pytest.approx(1.0) and lane["miou"] < 1.0
    with pytest.raises(ValueError, match="line_f1_stride"):
        ClosedLoopEvaluator(line_f1_stride=-1)


def test_bad_inputs_name_the_fix():
    ev = ClosedLoopEvaluator(max_pending=2)
    with pytest.raises(ValueError, match="unknown task 'lanes'"):
        ev.add_ground_truth("lanes", 1, None)
    ev.add_ground_truth("lane", 1, np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="camera resolution"):
        ev.add_prediction("lane", 1, np.zeros((2, 2), np.uint8))
    for t in range(10, 15):
        ev.add_ground_truth("lane", t, np.zeros((4, 4), np.uint8))
    assert ev.summary()["pairing"]["lane"]["gt_without_prediction"] == 5
