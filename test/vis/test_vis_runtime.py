"""VIS runtime pipeline: key / non-key alternation, per-path timings, masks pasted back to the
camera image, stable track ids over a replayed sequence (tiny seeded model exported to tmp_path,
and scripted backends where exact outputs are needed)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from edge_perception.backends import create_backend
from edge_perception.backends.base import BackendError, InferenceBackend, TensorSpec
from edge_perception.config import VisNodeConfig
from edge_perception.runtime import vis as rv
from edge_perception.runtime.preprocess import make_transform
from edge_perception.runtime.tracking import TrackerConfig
from edge_perception.vis.keyframe import KeyframePolicyConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vis_tiny import export_tiny_vis  # noqa: E402

SIZE = (64, 96)


@pytest.fixture(scope="module")
def tiny_vis(tmp_path_factory) -> Path:
    return export_tiny_vis(tmp_path_factory.mktemp("vis") / "models", SIZE)


def _pipeline(key_path: Path, **kw) -> rv.VISPipeline:
    b = {
        g: create_backend("onnxruntime", p, intra_op_threads=1)
        for g, p in rv.sibling_paths(str(key_path)).items()
    }
    return rv.VISPipeline(b["key"], b["nonkey"], b["head"], **kw)


def test_io_names_match_the_exporter():
    from edge_perception.vis import export as vx

    assert rv.KEY_OUTPUTS == vx.KEY_OUTPUTS and rv.NONKEY_INPUTS == vx.NONKEY_INPUTS
    assert rv.NONKEY_OUTPUTS == vx.NONKEY_OUTPUTS and rv.HEAD_OUTPUTS == vx.HEAD_OUTPUTS
    assert rv.sibling_paths("m/vis_small_key.engine") == {
        "key": "m/vis_small_key.engine",
        "nonkey": "m/vis_small_nonkey.engine",
        "head": "m/vis_small_head.engine",
    }
    with pytest.raises(ValueError, match="_key"):
        rv.sibling_paths("models/vis_small.onnx")


def test_wrong_graph_is_rejected_with_the_names(tiny_vis):
    paths = rv.sibling_paths(str(tiny_vis))
    head = create_backend("onnxruntime", paths["head"])
    with pytest.raises(BackendError, match="not a VIS key graph"):
        rv.VISPipeline(head, head, head)
    head.close()


def test_keyframes_alternate_with_per_path_timings(tiny_vis):
    kf = KeyframePolicyConfig(keyframe_interval=3, max_keyframe_age_s=None)
    pipe = _pipeline(tiny_vis, keyframes=kf, score_threshold=0.3)
    pipe.warmup(1)
    assert pipe.path_stats.frames == {"key": 0, "nonkey": 0}
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (120, 160, 3), np.uint8)
    flags, paths = [], []
    for i in range(7):
        out = pipe.process(frame, i / 30.0)
        flags.append(out.keyframe)
        paths.append(sorted(pipe.path_ms))
        assert out.result.keyframe == out.keyframe
        assert all(v > 0 for v in pipe.path_ms.values())
        assert out.times.inference_ms >= sum(pipe.path_ms.values()) * 0.99
    assert flags == [True, False, False, True, False, False, True]
    assert paths[0] == ["head", "key"] and paths[1] == ["head", "nonkey"]
    assert pipe.last_mean_flow is None  # the last frame was a keyframe
    stats = pipe.path_stats.as_dict()
    assert (stats["key_frames"], stats["nonkey_frames"]) == (3, 4)
    assert stats["key_ratio"] == pytest.approx(3 / 7)
    assert stats["key_path_ms"] > stats["head_ms"] > 0 and stats["nonkey_path_ms"] > 0
    # a stamp gap and a reset force keyframes; time going back too
    assert not pipe.process(frame, 7 / 30.0).keyframe
    assert pipe.process(frame, 2.0).keyframe and pipe.last_reason == "stamp_gap"
    pipe.process(frame, 2.03)
    pipe.reset()
    assert pipe.process(frame, 2.06).keyframe and pipe.last_reason == "reset"
    # image mode: every frame a keyframe
    pipe.policy = type(pipe.policy)(KeyframePolicyConfig(keyframe_interval=1))
    assert all(pipe.process(frame, 3 + i / 30).keyframe for i in range(3))
    pipe.close()


def test_fused_head_publishes_what_the_three_graphs_do(tiny_vis):
    """ONNX Runtime: the head fused into the key / non-key sessions (the default of
    create_vis_backends, the node and vis-eval) gives the three graphs' results frame by frame,
    keyframes and non-keyframes alike, with one call per frame (no head time of its own)."""
    fused = rv.create_vis_backends("onnxruntime", str(tiny_vis), intra_op_threads=1)
    three = rv.create_vis_backends("onnxruntime", str(tiny_vis), fuse=False, intra_op_threads=1)
    assert fused["head"] is None and three["head"] is not None
    assert fused["key"].output_names == rv.fused_outputs(rv.KEY_OUTPUTS)
    assert fused["nonkey"].output_names == rv.fused_outputs(rv.NONKEY_OUTPUTS)
    assert "p3" not in fused["key"].output_names and "boxes" in fused["nonkey"].output_names
    kw = dict(keyframes=KeyframePolicyConfig(keyframe_interval=3), score_threshold=0.3)
    pa = rv.VISPipeline(fused["key"], fused["nonkey"], None, **kw)
    pb = rv.VISPipeline(three["key"], three["nonkey"], three["head"], **kw)
    assert "fused" in pa.describe()["model_head"]
    rng = np.random.default_rng(3)
    base = rng.integers(0, 255, (120, 180, 3), np.uint8)
    flags = []
    for i in range(6):
        frame = np.roll(base, 4 * i, axis=1)  # moving content: the non-key path has work
        a, b = pa.process(frame, i / 30.0), pb.process(frame, i / 30.0)
        flags.append(a.keyframe)
        assert a.keyframe == b.keyframe and pa.path_ms["head"] < 0.05
        ra, rb = a.result, b.result
        assert len(ra) == len(rb) > 0
        np.testing.assert_array_equal(ra.labels, rb.labels)
        np.testing.assert_allclose(ra.boxes_xyxy, rb.boxes_xyxy, atol=1e-3)
        np.testing.assert_allclose(ra.scores, rb.scores, atol=1e-5)
        assert np.mean(ra.masks != rb.masks) < 1e-3
    assert flags == [True, False, False, True, False, False]
    pa.close()
    pb.close()


def test_fuse_head_rejects_graphs_that_do_not_fit(tiny_vis, tmp_path):
    paths = rv.sibling_paths(str(tiny_vis))
    with pytest.raises(BackendError, match="lacks the head's inputs"):
        rv.fuse_head(paths["head"], paths["head"])
    with pytest.raises(BackendError, match="cannot fuse"):
        rv.fuse_head(str(tmp_path / "missing_key.onnx"), paths["head"])
    with pytest.raises(BackendError, match="no_such_key.onnx"):
        rv.create_vis_backends("onnxruntime", str(tmp_path / "no_such_key.onnx"))


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_masks_are_pasted_back_inside_their_boxes(tiny_vis, resize):
    pipe = _pipeline(tiny_vis, score_threshold=0.3, resize=resize)
    frame = np.random.default_rng(1).integers(0, 255, (150, 170, 3), np.uint8)
    res = pipe.process(frame, 0.0).result
    assert len(res) > 0 and res.masks.shape == (len(res), 150, 170) and res.masks.dtype == bool
    for m, (x1, y1, x2, y2) in zip(res.masks, res.boxes_xyxy):
        inside = np.zeros_like(m)
        inside[int(np.floor(y1)) : int(np.ceil(y2)), int(np.floor(x1)) : int(np.ceil(x2))] = True
        assert not (m & ~inside).any()  # cropped to the box
        # the tiny model's mask is ~1 on the whole grid (the head does not crop): the published
        # mask is then the whole box, edges included (no erosion by a stride-4 crop)
        assert (m == inside).all()
    pipe.close()


def test_paste_masks_geometry():
    # stride-4 grid of a 32x48 input; camera 64x96 (stretch 0.5): cell (r, c) covers camera
    # pixels [8r, 8r + 8) x [8c, 8c + 8)
    t = make_transform((64, 96), (32, 48), "stretch")
    low = np.zeros((1, 8, 12), np.float32)
    low[0, 2:4, 3:6] = 1.0
    full = rv.paste_masks(low, np.array([[0, 0, 96, 64]], np.float32), t)[0]
    ys, xs = np.nonzero(full)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (16, 31, 24, 47)  # exactly the cells
    clipped = rv.paste_masks(low, np.array([[30, 0, 40, 64]], np.float32), t)[0]
    assert clipped.any() and not clipped[:, :30].any() and not clipped[:, 40:].any()
    # an uncropped mask (the head's output) pasted into a box whose edges cut through cells:
    # every camera pixel of the box, none outside
    ones = np.ones((1, 8, 12), np.float32)
    box = np.array([[13.0, 5.0, 70.0, 41.0]], np.float32)
    full = rv.paste_masks(ones, box, t)[0]
    want = np.zeros((64, 96), bool)
    want[5:41, 13:70] = True
    assert (full == want).all()
    # cropping at stride 4 first (zero cells whose centre is outside) erodes that edge
    eroded = rv.paste_masks(rv.crop_to_boxes(ones, box * 0.5), box, t)[0]
    assert eroded.sum() < full.sum() and not (eroded & ~want).any()


def test_crop_to_boxes_keeps_cells_with_centres_inside():
    low = np.ones((2, 8, 12), np.float32)
    boxes = np.array([[4.0, 0.0, 12.0, 8.0], [0.0, 0.0, 48.0, 32.0]], np.float32)  # input px
    out = rv.crop_to_boxes(low, boxes)
    # centres at 2, 6, 10, ...: x in [4, 12] -> columns 1, 2; y in [0, 8] -> rows 0, 1
    assert out[0].sum() == 4 and out[0, 0:2, 1:3].all()
    assert out[1].all()  # a box over the whole input keeps everything


# ------------------------------------------------------------------------------ scripted model
class _Scripted(InferenceBackend):
    """A backend with a graph's I/O names whose outputs come from ``fn(feeds)``."""

    kind = "scripted"

    def __init__(self, name: str, inputs: List[str], outputs: List[str], fn) -> None:
        super().__init__()
        self.inputs = [TensorSpec(n, (1, 3, 64, 96) if n == "images" else (1,), "float32")
                       for n in inputs]  # fmt: skip
        self.outputs = [TensorSpec(n, (1,), "float32") for n in outputs]
        self.info.model_path = name
        self.fn = fn

    def run(self, feeds):
        return self.fn(feeds)


def _scripted_pipeline(frames: List[Dict[str, np.ndarray]], **kw) -> rv.VISPipeline:
    """Head outputs per call from ``frames`` (objects: boxes, embeddings, labels)."""
    calls = {"n": 0}
    dummy = {n: np.zeros((1, 1), np.float32) for n in rv.KEY_OUTPUTS}

    def head(_feeds):
        f = frames[calls["n"] % len(frames)]
        calls["n"] += 1
        k = len(f["boxes"])
        masks = np.zeros((1, k, 16, 24), np.float32)
        for i, (x1, y1, x2, y2) in enumerate(f["boxes"]):
            masks[0, i, int(y1) // 4 : int(y2) // 4, int(x1) // 4 : int(x2) // 4] = 0.9
        return {
            "boxes": np.asarray(f["boxes"], np.float32)[None],
            "scores": np.full((1, k), 0.9, np.float32),
            "labels": np.zeros((1, k), np.int64),
            "masks": masks,
            "embeddings": np.asarray(f["emb"], np.float32)[None],
        }

    key = _Scripted("key", ["images"], rv.KEY_OUTPUTS, lambda f: dict(dummy))
    nonkey = _Scripted(
        "nonkey",
        rv.NONKEY_INPUTS,
        rv.NONKEY_OUTPUTS,
        lambda f: dict(dummy, mean_flow=np.array([1.5], np.float32)),
    )
    return rv.VISPipeline(key, nonkey, _Scripted("head", rv.HEAD_INPUTS, rv.HEAD_OUTPUTS, head),
                          **kw)  # fmt: skip


def _sequence(n: int = 12) -> List[Dict[str, np.ndarray]]:
    """Two objects crossing each other's path (IoU alone would swap them at the crossing) with
    distinct embeddings; the detector lists them in a shuffled order."""
    rng = np.random.default_rng(3)
    e = np.eye(4, dtype=np.float32)
    out = []
    for t in range(n):
        a = [4 + 5 * t, 20, 24 + 5 * t, 40]
        b = [64 - 4 * t, 24, 84 - 4 * t, 44]
        boxes, emb = np.array([a, b], np.float32), np.stack([e[0], e[1]])
        order = rng.permutation(2)
        out.append({"boxes": np.clip(boxes[order], 0, 96), "emb": emb[order], "order": order})
    return out


def test_track_ids_stable_over_a_replayed_sequence():
    cfg = VisNodeConfig(track_min_hits=1)
    seq = _sequence()
    pipe = _scripted_pipeline(seq, tracker=cfg.tracker_config(), keyframes=cfg.keyframe_config())
    frame = np.zeros((64, 96, 3), np.uint8)
    runs = []
    for _ in range(2):  # the bag loops: reset, same ids again
        pipe.reset()
        ids = []
        for t, f in enumerate(seq):
            res = pipe.process(frame, t / 30.0).result
            by_object = dict(zip(f["order"].tolist(), res.track_ids.tolist()))
            ids.append((by_object[0], by_object[1]))
            assert res.ids == [str(i) for i in res.track_ids]
            assert len(res.masks) == 2 and res.masks.any(axis=(1, 2)).all()
        runs.append(ids)
    assert runs[0] == runs[1]
    assert len(set(runs[0])) == 1 and set(runs[0][0]) == {1, 2}  # never swapped / renumbered


def test_lost_tracks_force_a_keyframe():
    seq = _sequence(4)
    gone = {"boxes": np.zeros((0, 4), np.float32), "emb": np.zeros((0, 4), np.float32)}
    cfg = VisNodeConfig(track_min_hits=1, max_lost_tracks=2, keyframe_interval=10)
    pipe = _scripted_pipeline(
        seq[:3] + [gone, gone], tracker=cfg.tracker_config(), keyframes=cfg.keyframe_config()
    )
    frame = np.zeros((64, 96, 3), np.uint8)
    flags = [pipe.process(frame, t / 30.0).keyframe for t in range(5)]
    assert flags == [True, False, False, False, True]
    assert pipe.last_reason == "lost_tracks"


def test_without_tracking_every_detection_is_kept_untracked():
    pipe = _scripted_pipeline(_sequence(2), tracker=None)
    res = pipe.process(np.zeros((64, 96, 3), np.uint8), 0.0).result
    assert res.track_ids.tolist() == [-1, -1] and res.ids == ["", ""]


def test_tracker_config_has_the_appearance_terms():
    cfg = VisNodeConfig(track_appearance_weight=0.2, track_mask_iou_weight=0.5).validate()
    t = cfg.tracker_config()
    assert isinstance(t, TrackerConfig)
    assert (t.appearance_weight, t.custom_weight) == (0.2, 0.5)
    with pytest.raises(ValueError, match="must not exceed 1"):
        VisNodeConfig(track_appearance_weight=0.6, track_mask_iou_weight=0.5).validate()
    k = VisNodeConfig(max_keyframe_age_s=0.0, max_mean_flow_px=0.0).keyframe_config()
    assert k.max_keyframe_age_s is None and k.max_mean_flow_px is None


@pytest.mark.parametrize("mask_weight", [0.0, 0.5])
def test_tracks_keep_cropped_masks_only_when_mask_iou_counts(tiny_vis, mask_weight):
    cfg = TrackerConfig(min_hits=1, custom_weight=mask_weight)
    pipe = _pipeline(tiny_vis, score_threshold=0.3, tracker=cfg)
    frame = np.random.default_rng(2).integers(0, 255, (120, 160, 3), np.uint8)
    for i in range(3):
        res = pipe.process(frame, i / 30.0).result
    tracks = pipe.tracker.active_tracks
    assert len(res) > 0 and tracks
    if mask_weight == 0.0:  # no per-frame mask work for the tracker
        assert all(t.extra is None for t in tracks)
    else:
        # the tiny model's masks are ~1 on the whole grid (uncropped); the tracker's copy is
        # cut to the box, so no track holds the whole 16 x 24 grid
        cells = [int(np.count_nonzero(t.extra)) for t in tracks]
        assert all(0 < c < 16 * 24 for c in cells), cells
    pipe.close()


def test_crop_to_boxes_is_the_training_box_mask():
    import torch
    from edge_perception.vis.heads import box_mask

    rng = np.random.default_rng(3)
    xy = np.sort(rng.uniform(0, 96, (5, 2)), axis=1)
    yy = np.sort(rng.uniform(0, 64, (5, 2)), axis=1)
    boxes = np.stack([xy[:, 0], yy[:, 0], xy[:, 1], yy[:, 1]], 1).astype(np.float32)  # input px
    got = rv.crop_to_boxes(np.ones((5, 16, 24), np.float32), boxes) > 0
    cxcywh = np.stack(
        [
            (boxes[:, 0] + boxes[:, 2]) / 2 / 96,
            (boxes[:, 1] + boxes[:, 3]) / 2 / 64,
            (boxes[:, 2] - boxes[:, 0]) / 96,
            (boxes[:, 3] - boxes[:, 1]) / 64,
        ],
        1,
    )
    want = box_mask(torch.from_numpy(cxcywh)[None], (16, 24))[0].numpy() > 0
    assert got.sum() > 0 and (got == want).all()


def test_mask_margin_grows_the_crop_and_comes_from_the_manifest(tmp_path):
    import json

    t = make_transform((64, 96), (32, 48), "stretch")
    ones = np.ones((1, 8, 12), np.float32)
    box = np.array([[20.0, 10.0, 60.0, 30.0]], np.float32)  # 40 x 20 camera px
    grown = rv.grow_boxes(box, 0.25)
    assert np.allclose(grown, [[10.0, 5.0, 70.0, 35.0]])
    assert np.array_equal(rv.grow_boxes(box, 0.0), box)
    full = rv.paste_masks(ones, box, t, margin=0.25)[0]
    want = np.zeros((64, 96), bool)
    want[5:35, 10:70] = True
    assert (full == want).all()
    # clipped to the image, the box itself unchanged by default
    assert rv.paste_masks(ones, box, t)[0].sum() == 40 * 20
    edge = rv.paste_masks(ones, np.array([[0.0, 0.0, 40.0, 20.0]]), t, margin=0.5)[0]
    assert edge.sum() == 60 * 30
    # the same growth for the tracker's stride-4 crop (input px: 16 x 24 grid at stride 4)
    low = np.ones((1, 16, 24), np.float32)
    small = np.array([[40.0, 24.0, 56.0, 40.0]], np.float32)
    assert rv.crop_to_boxes(low, small, margin=0.5).sum() > rv.crop_to_boxes(low, small).sum()
    # the model's margin: its manifest's mask_margin, 0 without one; a bad value is an error
    key = tmp_path / "m_key.onnx"
    assert rv.model_mask_margin(str(key)) == 0.0
    (tmp_path / "m_key.json").write_text(json.dumps({"mask_margin": 0.2}))
    assert rv.model_mask_margin(str(key)) == 0.2
    # a manifest the caller has read already is used as given (no second read)
    assert rv.model_mask_margin(str(key), {"mask_margin": 0.05}) == 0.05
    assert rv.model_mask_margin(str(key), {}) == 0.0
    (tmp_path / "m_key.json").write_text(json.dumps({"mask_margin": "wide"}))
    with pytest.raises(ValueError, match="mask_margin"):
        rv.model_mask_margin(str(key))


def test_pipeline_rejects_a_bad_mask_margin(tiny_vis):
    with pytest.raises(ValueError, match="mask_margin"):
        _pipeline(tiny_vis, mask_margin=-0.1)
