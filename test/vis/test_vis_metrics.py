"""YouTube-VIS video AP on hand-made cases with known answers; frame mask AP via pycocotools."""

from __future__ import annotations

import math

import numpy as np
import pytest
from edge_perception.metrics.vis import frame_mask_ap, track_iou, video_ap
from pycocotools import mask as mask_utils

H, W = 20, 20


def rle(x0, y0, x1, y1):
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 1
    r = mask_utils.encode(np.asfortranarray(m))
    r["counts"] = r["counts"].decode("ascii")
    return r


A = rle(0, 0, 10, 10)  # 100 px


def gt(segs, cat=1, video=1, **kw):
    return dict(video_id=video, category_id=cat, segmentations=segs, **kw)


def dt(segs, score, cat=1, video=1):
    return dict(video_id=video, category_id=cat, segmentations=segs, score=score)


def test_track_iou_is_spatio_temporal():
    assert track_iou([A, A], [A, A]) == 1.0
    assert track_iou([A, A, A, A], [A, A, None, None]) == pytest.approx(0.5)
    assert track_iou([A, None], [A, A]) == pytest.approx(0.5)  # an extra frame adds to the union
    assert track_iou([None, None], [None, None]) == 0.0
    half = rle(0, 0, 10, 5)
    assert track_iou([A], [half]) == pytest.approx(0.5)
    assert track_iou([half], [A], crowd=True) == pytest.approx(0.5)  # |g & d| / |d|


def test_perfect_and_partial_matches():
    assert video_ap([gt([A, A])], [dt([A, A], 0.9)]).ap == pytest.approx(1.0)
    # IoU 0.72: a true positive at thresholds 0.50..0.70 (5 of 10)
    seg = rle(0, 0, 10, 8)  # 80 px inside A, IoU 0.8 per frame
    r = video_ap([gt([A, A])], [dt([seg, rle(0, 0, 8, 8)], 0.9)])  # (80+64)/200 = 0.72
    assert r.ap == pytest.approx(0.5)
    assert r.ap50 == pytest.approx(1.0) and r.ap75 == pytest.approx(0.0)
    # a track found in half of its frames: IoU 0.5, AP only at 0.50
    assert video_ap([gt([A] * 4)], [dt([A, A, None, None], 0.9)]).ap == pytest.approx(0.1)


def test_ranking_false_positive_and_miss():
    b = rle(10, 10, 20, 20)
    # a false positive scored above the true positive: precision 1/2 at every recall point
    r = video_ap([gt([A])], [dt([b], 0.9), dt([A], 0.5)])
    assert r.ap == pytest.approx(0.5)
    # the same false positive below it costs nothing
    assert video_ap([gt([A])], [dt([A], 0.9), dt([b], 0.5)]).ap == pytest.approx(1.0)
    # one of two ground truth tracks found: recall 1/2 -> 51 of 101 recall points
    r = video_ap([gt([A]), gt([b])], [dt([A], 0.9)])
    assert r.ap == pytest.approx(51 / 101)
    # a wrong class is a miss; classes are averaged
    r = video_ap([gt([A], cat=1), gt([b], cat=2)], [dt([A], 0.9, cat=1), dt([b], 0.8, cat=1)])
    assert r.per_class[1] == pytest.approx(1.0) and r.per_class[2] == 0.0
    assert r.ap == pytest.approx(0.5)
    assert math.isnan(video_ap([], [dt([A], 0.9)]).ap)  # no ground truth: undefined


def test_ignore_tracks_are_neither_positive_nor_missed():
    b = rle(10, 10, 20, 20)
    r = video_ap([gt([A]), gt([b], ignore=True)], [dt([b], 0.95), dt([A], 0.5)])
    assert r.ap == pytest.approx(1.0)
    assert math.isnan(video_ap([gt([b], ignore=True)], [dt([b], 0.9)]).ap)  # only ignore gt


def test_one_frame_videos_equal_pycocotools_segm_ap():
    """With one frame per video the protocol is COCO's segm AP: compare on random boxes."""
    rng = np.random.default_rng(0)
    images, anns, tracks_gt, tracks_dt, results = [], [], [], [], []
    for v in range(1, 7):
        images.append({"id": v, "width": W, "height": H, "file_name": f"{v}.jpg"})
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = (int(c) for c in rng.integers(0, 12, 2))
            g = rle(x0, y0, x0 + int(rng.integers(4, 8)), y0 + int(rng.integers(4, 8)))
            cat = int(rng.integers(1, 3))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": v,
                    "category_id": cat,
                    "segmentation": g,
                    "area": float(mask_utils.area(g)),
                    "bbox": list(mask_utils.toBbox(g)),
                    "iscrowd": 0,
                }
            )
            tracks_gt.append(gt([g], cat=cat, video=v))
            for _ in range(2):
                dx, dy = (int(c) for c in rng.integers(-2, 3, 2))
                d = rle(max(0, x0 + dx), max(0, y0 + dy), x0 + dx + 6, y0 + dy + 6)
                s = float(rng.random())
                c2 = cat if rng.random() < 0.8 else 3 - cat
                tracks_dt.append(dt([d], s, cat=c2, video=v))
                results.append({"image_id": v, "category_id": c2, "score": s, "segmentation": d})
    coco = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    ref = frame_mask_ap(coco, results)
    got = video_ap(tracks_gt, tracks_dt)
    assert got.ap == pytest.approx(ref.map, abs=1e-9)
    assert got.ap50 == pytest.approx(ref.map50, abs=1e-9)
    assert got.ap75 == pytest.approx(ref.map75, abs=1e-9)
