"""COCO mAP wrapper on hand-made prediction sets whose AP is derived by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from edge_perception.metrics.coco import boxes_to_results, coco_map
from pycocotools import mask as mask_utils


def _gt(boxes_per_image, cats=("car", "truck")):
    images, anns = [], []
    for img_id, boxes in enumerate(boxes_per_image, start=1):
        images.append({"id": img_id, "file_name": f"{img_id}.jpg", "width": 400, "height": 300})
        for cat, (x, y, w, h) in boxes:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(cats)]
    return {"images": images, "annotations": anns, "categories": categories}


def _perfect(gt):
    return [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 0.9,
        }
        for a in gt["annotations"]
    ]


def test_perfect_predictions_score_one(tmp_path):
    gt = _gt([[(1, (10, 10, 120, 100)), (2, (200, 50, 60, 60))], [(1, (5, 5, 20, 20))]])
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(gt))
    m = coco_map(path, _perfect(gt))
    assert m.map == pytest.approx(1.0)
    assert m.map50 == pytest.approx(1.0)
    assert m.per_class == {"car": pytest.approx(1.0), "truck": pytest.approx(1.0)}
    # 20x20 is small, 60x60 medium, 120x100 large: each range has ground truth, all found
    assert m.map_small == pytest.approx(1.0)
    assert m.map_medium == pytest.approx(1.0)
    assert m.map_large == pytest.approx(1.0)


def test_half_the_images_missed():
    # two images, one car each; only the first is detected (perfectly). Recall tops out at 0.5,
    # precision is 1 up to it: 51 of the 101 recall points (0.00 .. 0.50) have precision 1.
    gt = _gt([[(1, (10, 10, 100, 100))], [(1, (50, 50, 100, 100))]], cats=("car",))
    preds = _perfect(gt)[:1]
    m = coco_map(gt, preds)
    assert m.map == pytest.approx(51 / 101)
    assert m.map50 == pytest.approx(51 / 101)
    assert m.ar100 == pytest.approx(0.5)


def test_iou_062_counts_for_three_of_ten_thresholds():
    # GT 100x100, prediction 62x100 inside it: IoU 0.62 >= 0.50, 0.55, 0.60 only.
    gt = _gt([[(1, (0, 0, 100, 100))]], cats=("car",))
    preds = np.array([[1, 0, 0, 62, 100, 0.8, 1]])
    m = coco_map(gt, preds)
    assert m.map == pytest.approx(0.3)
    assert m.map50 == pytest.approx(1.0)
    assert m.map75 == pytest.approx(0.0)


def test_false_positive_ranked_first_halves_precision():
    # one GT; a wrong box with a higher score, then the right one: precision at recall 1 is 1/2.
    gt = _gt([[(1, (0, 0, 50, 50))]], cats=("car",))
    preds = [
        {"image_id": 1, "category_id": 1, "bbox": [300, 200, 50, 50], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "score": 0.5},
    ]
    assert coco_map(gt, preds).map == pytest.approx(0.5)


def test_empty_predictions_and_missing_classes():
    gt = _gt([[(1, (0, 0, 50, 50))]], cats=("car", "truck"))
    m = coco_map(gt, [])
    assert m.map == 0.0
    assert m.per_class["car"] == 0.0
    assert np.isnan(m.per_class["truck"])  # no truck ground truth: undefined, not 0
    assert m.as_dict()["per_class"]["truck"] is None
    assert coco_map(gt, np.zeros((0, 7))).map == 0.0


def test_segm_perfect_and_half():
    h, w = 60, 80
    masks = []
    for x0 in (5, 40):
        m = np.zeros((h, w), dtype=np.uint8)
        m[10:50, x0 : x0 + 30] = 1
        masks.append(m)
    gt = _gt([[(1, (5, 10, 30, 40)), (1, (40, 10, 30, 40))]], cats=("car",))
    rles = []
    for ann, m in zip(gt["annotations"], masks):
        rle = mask_utils.encode(np.asfortranarray(m))
        rle["counts"] = rle["counts"].decode("ascii")
        ann["segmentation"] = rle
        rles.append(rle)
    preds = [{"image_id": 1, "category_id": 1, "segmentation": r, "score": 0.9} for r in rles]
    assert coco_map(gt, preds, iou_type="segm").map == pytest.approx(1.0)
    # a mask covering the left object's upper half only: IoU 0.5 -> counts for 0.50 only
    half = masks[0].copy()
    half[30:50] = 0
    rle = mask_utils.encode(np.asfortranarray(half))
    m = coco_map(
        gt, [{"image_id": 1, "category_id": 1, "segmentation": rle, "score": 0.9}], "segm"
    )
    # recall 0.5 at IoU 0.5 (51/101 of the recall points), nothing at the higher thresholds
    assert m.map50 == pytest.approx(51 / 101)
    assert m.map == pytest.approx(51 / 101 / 10)


def test_bad_input_is_rejected():
    gt = _gt([[(1, (0, 0, 50, 50))]], cats=("car",))
    with pytest.raises(ValueError, match="unknown image_id"):
        coco_map(gt, [{"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])
    with pytest.raises(ValueError, match="lacks"):
        coco_map(gt, [{"image_id": 1, "category_id": 1, "score": 1.0}])
    with pytest.raises(ValueError, match="N x 7"):
        coco_map(gt, np.zeros((2, 5)))
    with pytest.raises(ValueError, match="iou_type"):
        coco_map(gt, [], iou_type="keypoints")
    with pytest.raises(FileNotFoundError):
        coco_map("/nonexistent/coco.json", [])


def test_boxes_to_results_converts_xyxy_and_labels():
    res = boxes_to_results(3, np.array([[10, 20, 50, 80]]), np.array([0.7]), np.array([1]))
    assert res == [
        {
            "image_id": 3,
            "category_id": 2,
            "bbox": [10.0, 20.0, 40.0, 60.0],
            "score": pytest.approx(0.7),
        }
    ]


def test_ignore_flagged_objects_are_neither_missed_nor_false_positives():
    # Image 1: a car found perfectly; image 2: a tiny car flagged `ignore` (carla_bridge policy).
    gt = _gt([[(1, (10, 10, 100, 100))], [(1, (50, 50, 6, 6))]], cats=("car",))
    gt["annotations"][1]["ignore"] = True
    found_only_first = _perfect(gt)[:1]
    assert coco_map(gt, found_only_first).map == pytest.approx(1.0)  # not a miss
    with_detection_on_ignored = found_only_first + [
        {"image_id": 2, "category_id": 1, "bbox": [50, 50, 6, 6], "score": 0.95}
    ]
    assert coco_map(gt, with_detection_on_ignored).map == pytest.approx(1.0)  # not a FP
    # Without the flag the same tiny car is a real target: missing it halves recall.
    del gt["annotations"][1]["ignore"]
    assert coco_map(gt, found_only_first).map == pytest.approx(51 / 101)


def test_per_class_ap50_and_support_count_objects_and_tracks():
    # car: two objects, each found with IoU 0.62 (AP50 1.0, AP50:95 3/10); truck: one object of
    # track 7 seen in both images plus an ignore-flagged one that must not count as support
    gt = _gt(
        [
            [(1, (0, 0, 100, 100)), (2, (200, 100, 50, 50))],
            [(1, (0, 0, 100, 100)), (2, (210, 100, 50, 50)), (2, (300, 10, 8, 8))],
        ]
    )
    for ann, tid in zip(gt["annotations"], (1, 7, 2, 7, 9)):
        ann["track_id"] = tid
    gt["annotations"][-1]["ignore"] = True
    for im in gt["images"]:
        im["video_id"] = 1
    preds = _perfect(gt)[:-1]
    for p in preds:
        if p["category_id"] == 1:
            p["bbox"] = [0, 0, 100, 62]  # IoU 0.62 with the 100x100 box
    m = coco_map(gt, preds)
    assert m.per_class_ap50 == {"car": pytest.approx(1.0), "truck": pytest.approx(1.0)}
    assert m.per_class["car"] == pytest.approx(0.3)
    assert m.support == {"car": 2, "truck": 2}
    assert m.support_tracks == {"car": 2, "truck": 1}
    only_first = coco_map(gt, preds, image_ids=[1])
    assert only_first.support == {"car": 1, "truck": 1}
