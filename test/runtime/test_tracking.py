"""MultiObjectTracker on hand-made sequences: crossing, dropouts, low-score recovery, births,
class consistency and the appearance / custom-similarity hooks."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
import pytest
from edge_perception.runtime.tracking import MultiObjectTracker, TrackerConfig, box_iou

Det = Tuple[Sequence[float], float, int]  # box, score, label


def _run(tracker: MultiObjectTracker, frames: List[List[Det]]) -> List[List[int]]:
    out = []
    for dets in frames:
        boxes = np.array([d[0] for d in dets], np.float64).reshape(-1, 4)
        scores = np.array([d[1] for d in dets], np.float64)
        labels = np.array([d[2] for d in dets], np.int64)
        out.append(tracker.update(boxes, scores, labels).tolist())
    return out


def _box(cx: float, cy: float, w: float = 20.0, h: float = 20.0) -> List[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def test_box_iou_known_values():
    iou = box_iou(
        np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    )
    assert iou[0].tolist() == pytest.approx([1.0, 1 / 3, 0.0])
    assert box_iou(np.zeros((0, 4)), np.zeros((2, 4))).shape == (0, 2)


def test_ids_stable_through_a_crossing():
    # Two same-class objects move towards each other at 8 px/frame and cross (their boxes overlap
    # around frames 5-7); constant-velocity prediction keeps each on its own track.
    frames = []
    for t in range(14):
        a = _box(20 + 8 * t, 50)
        b = _box(124 - 8 * t, 54)
        frames.append([(a, 0.9, 0), (b, 0.9, 0)])
    ids = _run(MultiObjectTracker(), frames)
    assert ids[0] == [1, 2]
    assert all(f == [1, 2] for f in ids), ids


def test_ids_survive_a_two_frame_dropout_and_velocity_bridges_the_gap():
    tracker = MultiObjectTracker()
    frames: List[List[Det]] = []
    for t in range(10):
        dets: List[Det] = [(_box(30, 30), 0.9, 1)]
        if t not in (4, 5):  # the moving object is missed twice, moving 6 px/frame meanwhile
            dets.append((_box(100 + 6 * t, 80), 0.8, 0))
        frames.append(dets)
    ids = _run(tracker, frames)
    moving = [f[1] for t, f in enumerate(ids) if t not in (4, 5)]
    assert moving == [2] * 8, ids
    assert [f[0] for f in ids] == [1] * 10
    assert tracker.next_id == 3  # no id was spent on the reappearance


def test_low_score_detection_continues_a_track_but_never_starts_one():
    tracker = MultiObjectTracker(TrackerConfig(high_threshold=0.5, low_threshold=0.1))
    frames: List[List[Det]] = [
        [(_box(50, 50), 0.9, 0)],
        [(_box(52, 50), 0.3, 0), (_box(200, 200), 0.3, 0)],  # occluded: score drops
        [(_box(54, 50), 0.2, 0), (_box(200, 200), 0.3, 0)],
        [(_box(56, 50), 0.05, 0)],  # below low_threshold: ignored, the track goes lost
        [(_box(58, 50), 0.9, 0)],  # back at a high score: same id
    ]
    ids = _run(tracker, frames)
    assert ids == [[1], [1, -1], [1, -1], [-1], [1]]


def test_births_need_min_hits_after_the_first_frame_and_flicker_spends_no_id():
    tracker = MultiObjectTracker(TrackerConfig(min_hits=2))
    frames: List[List[Det]] = [
        [(_box(50, 50), 0.9, 0)],  # first frame: confirmed at once
        [(_box(50, 50), 0.9, 0), (_box(150, 50), 0.9, 2)],  # false positive, one frame
        [(_box(50, 50), 0.9, 0), (_box(150, 150), 0.9, 3)],  # new object: tentative
        [(_box(50, 50), 0.9, 0), (_box(151, 150), 0.9, 3)],  # second hit: confirmed, id 2
    ]
    ids = _run(tracker, frames)
    assert ids == [[1], [1, -1], [1, -1], [1, 2]]
    assert [t.track_id for t in tracker.active_tracks] == [1, 2]


def test_class_consistent_matching_and_lost_buffer():
    tracker = MultiObjectTracker(TrackerConfig(max_lost=3, min_hits=1))
    ids = _run(tracker, [[(_box(50, 50), 0.9, 0)], [(_box(50, 50), 0.9, 1)]])
    assert ids == [[1], [2]]  # same place, other class: a new track
    empty: List[Det] = []
    ids = _run(tracker, [empty] * 3 + [[(_box(50, 50), 0.9, 1)]])
    assert ids[-1] == [2]  # lost 3 frames: still inside the buffer
    ids = _run(tracker, [empty] * 4 + [[(_box(50, 50), 0.9, 1)]])
    assert ids[-1] == [3]  # lost 4 frames: removed, a new id
    tracker.reset()
    assert _run(tracker, [[(_box(50, 50), 0.9, 1)]]) == [[1]]


def test_appearance_embeddings_resolve_an_ambiguous_swap():
    # Two objects jump to each other's position (no motion cue): IoU alone swaps the ids, the
    # embeddings keep them.
    emb = np.eye(2)
    boxes0 = np.array([_box(50, 50, 40, 40), _box(70, 50, 40, 40)])
    boxes1 = boxes0[::-1].copy()
    for weight, expect in ((0.0, [2, 1]), (0.6, [1, 2])):
        cfg = TrackerConfig(appearance_weight=weight, velocity=False)
        tracker = MultiObjectTracker(cfg)
        first = tracker.update(boxes0, [0.9, 0.9], [0, 0], embeddings=emb).tolist()
        assert first == [1, 2]
        second = tracker.update(boxes1, [0.9, 0.9], [0, 0], embeddings=emb).tolist()
        assert second == expect, (weight, second)


def test_custom_similarity_hook_sees_track_extras():
    seen = []

    def similarity(tracks, det_idx):
        seen.append(([t.extra for t in tracks], det_idx.tolist()))
        return np.array([[1.0 if t.extra == tags[d] else 0.0 for d in det_idx] for t in tracks])

    tracker = MultiObjectTracker(TrackerConfig(custom_weight=0.7, velocity=False))
    boxes0 = np.array([_box(50, 50, 40, 40), _box(70, 50, 40, 40)])
    tags = ["a", "b"]
    assert tracker.update(
        boxes0, [0.9, 0.9], [0, 0], similarity=similarity, extras=tags
    ).tolist() == [1, 2]
    tags = ["b", "a"]
    ids = tracker.update(boxes0, [0.9, 0.9], [0, 0], similarity=similarity, extras=tags)
    assert ids.tolist() == [2, 1]
    assert seen[-1][0] == ["a", "b"]
    bad = MultiObjectTracker(TrackerConfig(custom_weight=0.5))
    bad.update(boxes0, [0.9, 0.9], [0, 0])
    with pytest.raises(ValueError, match="similarity returned shape"):
        bad.update(boxes0, [0.9, 0.9], [0, 0], similarity=lambda t, d: np.zeros((1, 1)))


def test_config_validation():
    with pytest.raises(ValueError, match="low_threshold"):
        TrackerConfig(low_threshold=0.6, high_threshold=0.5).validate()
    with pytest.raises(ValueError, match="appearance_weight"):
        TrackerConfig(appearance_weight=0.7, custom_weight=0.5).validate()
    with pytest.raises(ValueError, match="min_hits"):
        MultiObjectTracker(TrackerConfig(min_hits=0))


def test_track_colours_are_distinct_for_neighbouring_ids():
    from edge_perception.runtime.tracking import track_colour

    colours = [track_colour(i) for i in range(1, 13)]
    assert len(set(colours)) == 12 and all(0 <= c <= 255 for rgb in colours for c in rgb)
    assert track_colour(5) == track_colour(5)


def test_buffered_iou_keeps_a_small_fast_mover():
    # A 10x10 box moving 8 px/frame overlaps its last box by IoU 0.11 only: a new (tentative)
    # track with no velocity yet fails the 0.3 match without the buffer, matches with it.
    def run(buffer: float) -> List[List[int]]:
        frames: List[List[Det]] = [[(_box(300, 300), 0.9, 0)]]  # frame 0: someone else
        frames += [[(_box(300, 300), 0.9, 0), (_box(20 + 8 * t, 50, 10, 10), 0.9, 1)]
                   for t in range(4)]  # fmt: skip
        return _run(MultiObjectTracker(TrackerConfig(buffer=buffer)), frames)

    assert [f[1] for f in run(0.0)[1:]] == [-1, -1, -1, -1]
    assert [f[1] for f in run(0.3)[1:]] == [-1, 2, 2, 2]


def test_empty_frame_with_embeddings_keeps_tracks_and_bad_shapes_are_refused():
    cfg = TrackerConfig(min_hits=1)
    tracker = MultiObjectTracker(cfg)
    e = np.array([[1.0, 0.0, 0.0, 0.0]])
    first = tracker.update(np.array([_box(50, 50)]), np.array([0.9]), np.array([0]), embeddings=e)
    # a frame with no detections: 0 x D embeddings (what a model emits then) is valid input
    empty = tracker.update(
        np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), embeddings=np.zeros((0, 4))
    )
    assert empty.shape == (0,)
    again = tracker.update(np.array([_box(52, 50)]), np.array([0.9]), np.array([0]), embeddings=e)
    assert again.tolist() == first.tolist() and first[0] >= 0
    with pytest.raises(ValueError, match="embeddings"):
        tracker.update(
            np.array([_box(52, 50)]), np.array([0.9]), np.array([0]), embeddings=np.zeros((2, 4))
        )
