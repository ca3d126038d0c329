"""Video instance segmentation pipeline: YolactEdge-style keyframes over the three VIS graphs.

The model is exported as three graphs (docs/CONTRACTS.md, "Video instance segmentation"):
``<name>_key.onnx`` (full backbone + encoder + decoder), ``<name>_nonkey.onnx`` (partial backbone,
feature flow, warped keyframe features, fewer decoder layers) and ``<name>_head.onnx`` (protonet,
query heads, top-K, masks). Each runs on its own backend (:mod:`edge_perception.backends`, so
ONNX Runtime sessions or TensorRT engines built at per-component precision slot in alike). With
ONNX Runtime the head is by default fused into the key and non-key graphs at load time
(:func:`fuse_head`, :func:`create_vis_backends`): one session call per frame, and the maps the head
reads never leave ORT's blocked layout; the pipeline then gets no head backend.

Per frame:

1. preprocessing as the detector (:class:`~edge_perception.runtime.preprocess.Preprocessor`);
2. :class:`~edge_perception.vis.keyframe.KeyframePolicy` decides key / non-key from the frame
   stamp (``keyframe_interval``, ``max_keyframe_age_s``, stamp gaps, a reset), the previous
   non-keyframe's ``mean_flow`` and the tracks lost on the previous frame;
3. keyframe: the key graph, whose ``key_p4`` / ``key_p5`` / ``key_flow_feat`` are kept as the
   state; non-keyframe: the non-key graph against that state; then the head graph. Wall-clock
   milliseconds per graph are in :attr:`VISPipeline.path_ms` (last frame) and
   :attr:`VISPipeline.path_stats` (running means per path);
4. post-processing: score threshold, class filter, top ``max_detections``, boxes to camera
   pixels; the tracker (:class:`~edge_perception.runtime.tracking.MultiObjectTracker`) associates
   on IoU + query-embedding cosine + mask IoU (MinVIS-style; the stride-4 masks ride along as the
   tracks' ``extra``); only detections of confirmed tracks are kept (as the detection pipeline);
5. masks pasted back to camera resolution inside each box, grown by ``mask_margin`` for a model
   trained with a mask-loss margin (:func:`paste_masks`).

The result is an :class:`~edge_perception.runtime.results.Instances` (boxes, scores, labels,
track ids, ``ids`` = track id strings, ``masks`` (N, H, W) bool at camera size, ``keyframe``;
``rles`` is left empty: the ROS conversion encodes the masks).

Python 3.8 + NumPy 1.x compatible; no torch.
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge_perception.backends.base import Arrays, BackendError, InferenceBackend
from edge_perception.config import OBJECT_CLASS_NAMES
from edge_perception.runtime.pipeline import Pipeline
from edge_perception.runtime.preprocess import Transform
from edge_perception.runtime.results import Instances
from edge_perception.runtime.tracking import MultiObjectTracker, Track, TrackerConfig
from edge_perception.vis.keyframe import KeyframePolicy, KeyframePolicyConfig

# I/O names of the three graphs (docs/CONTRACTS.md; edge_perception/vis/export.py writes them).
HEAD_INPUTS = ["p3", "s2", "queries", "query_boxes", "query_logits"]
STATE_NAMES = ["key_p4", "key_p5", "key_flow_feat"]
KEY_OUTPUTS = HEAD_INPUTS + STATE_NAMES
NONKEY_INPUTS = ["images"] + STATE_NAMES
NONKEY_OUTPUTS = HEAD_INPUTS + ["mean_flow"]
#: optional non-key inputs (a model that propagates the keyframe's queries) -> key outputs
PROPAGATED = {"key_queries": "queries", "key_boxes": "query_boxes"}
HEAD_OUTPUTS = ["boxes", "scores", "labels", "masks", "embeddings"]
GRAPHS = ("key", "nonkey", "head")
MASK_STRIDE = 4


def sibling_paths(key_model: str) -> Dict[str, str]:
    """``{"key", "nonkey", "head"}`` model files of a ``<name>_key<ext>`` path (the non-key and
    head graphs lie beside it with the same extension); ValueError for another name."""
    stem, ext = os.path.splitext(str(key_model))
    if not stem.endswith("_key"):
        raise ValueError(
            "a VIS model is named by its keyframe graph <name>_key%s (with <name>_nonkey%s and "
            "<name>_head%s beside it), got %s" % (ext or ".onnx", ext or ".onnx",
                                                  ext or ".onnx", key_model)
        )  # fmt: skip
    base = stem[: -len("_key")]
    return {g: "%s_%s%s" % (base, g, ext) for g in GRAPHS}


def missing_siblings(key_model: str) -> List[str]:
    """The files of :func:`sibling_paths` that do not exist (ValueError for a wrong name)."""
    return [p for p in sibling_paths(key_model).values() if not os.path.isfile(p)]


#: outputs of a path graph that a graph fused with the head keeps inside (the maps the head reads)
FUSED_DROP = ("p3", "s2")


def fused_outputs(path_outputs: Sequence[str]) -> List[str]:
    """Output names of a key / non-key graph fused with the head (:func:`fuse_head`)."""
    return [n for n in path_outputs if n not in FUSED_DROP] + HEAD_OUTPUTS


def fuse_head(path_model: str, head_model: str) -> bytes:
    """The key or non-key graph ``path_model`` with the head graph appended, as one serialized
    ONNX model: the head's :data:`HEAD_INPUTS` are fed by the path graph's outputs of the same
    names (the head's own node and initializer names get a ``head/`` prefix), and the model
    returns :func:`fused_outputs`. Same arithmetic as the two graphs in turn; for ONNX Runtime
    one session call instead of two, and ``p3`` / ``s2`` stay in its NCHWc layout instead of
    being reordered out of one session and back into the next (bench/vis_speed.md). Needs the
    ``onnx`` package (BackendError without it, or for graphs that do not fit)."""
    try:
        import onnx
        import onnx.checker
        from onnx import compose
    except ImportError as exc:  # pragma: no cover - installed with the export tools
        raise BackendError("fusing the VIS head needs the onnx package (%s)" % exc) from exc
    try:
        path = onnx.load(path_model)
        head = onnx.load(head_model)
        head = compose.add_prefix(head, "head/", rename_inputs=False, rename_outputs=False)
        names = [o.name for o in path.graph.output]
        missing = [n for n in HEAD_INPUTS if n not in names]
        if missing:
            raise ValueError("%s lacks the head's inputs %s" % (path_model, missing))
        fused = compose.merge_models(
            path,
            head,
            io_map=[(n, n) for n in HEAD_INPUTS],
            outputs=fused_outputs(names),
        )
    except (OSError, ValueError, onnx.checker.ValidationError) as exc:
        raise BackendError(
            "cannot fuse the VIS head %s into %s: %s" % (head_model, path_model, exc)
        ) from exc
    return fused.SerializeToString()


def open_vis_graph(
    kind: str, key_model: str, graph: str, fuse: bool = True, **options: Any
) -> Optional[InferenceBackend]:
    """The backend of one graph (``key``, ``nonkey`` or ``head``) of the VIS model named by its
    keyframe graph (:func:`sibling_paths`), ``options`` passed to it. With ``fuse`` and ``kind``
    ``onnxruntime`` the key and non-key sessions run :func:`fuse_head` models and the head has
    no backend of its own (None: what :class:`VISPipeline` takes); a missing sibling file is
    named then, before any is read."""
    from edge_perception.backends.factory import create_backend

    if graph not in GRAPHS:
        raise ValueError("graph must be one of %s, got %r" % (GRAPHS, graph))
    paths = sibling_paths(key_model)
    if not (fuse and kind == "onnxruntime"):
        return create_backend(kind, paths[graph], **options)
    if graph == "head":
        return None
    missing = missing_siblings(key_model)
    if missing:
        raise BackendError("VIS model %s: missing %s" % (key_model, ", ".join(missing)))
    fused = fuse_head(paths[graph], paths["head"])
    return create_backend(kind, paths[graph], model_bytes=fused, **options)


def create_vis_backends(
    kind: str, key_model: str, fuse: bool = True, **options: Any
) -> Dict[str, Optional[InferenceBackend]]:
    """``{"key", "nonkey", "head"}``: :func:`open_vis_graph` of each (``head`` None when fused).
    Closes what it opened when one fails."""
    out: Dict[str, Optional[InferenceBackend]] = {}
    try:
        for g in GRAPHS:
            out[g] = open_vis_graph(kind, key_model, g, fuse, **options)
    except Exception:
        for b in out.values():
            if b is not None:
                b.close()
        raise
    return out


def _check_io(
    backend: InferenceBackend, graph: str, inputs: Sequence[str], outputs: Sequence[str]
):
    miss_in = [n for n in inputs if n not in backend.input_names]
    miss_out = [n for n in outputs if n not in backend.output_names]
    if miss_in or miss_out:
        raise BackendError(
            "%s: not a VIS %s graph; missing inputs %s / outputs %s (has %s -> %s; names in "
            "docs/CONTRACTS.md)"
            % (backend.info.model_path, graph, miss_in, miss_out, backend.input_names,
               backend.output_names)
        )  # fmt: skip


def keyframe_state(key_out: Arrays, propagates: bool) -> Arrays:
    """What the non-key graph needs of a keyframe's outputs (copies: a backend may reuse its
    output buffers on the next call): the :data:`STATE_NAMES` and, for a propagating model, the
    :data:`PROPAGATED` queries and boxes."""
    state = {n: np.array(key_out[n], copy=True) for n in STATE_NAMES}
    if propagates:
        state.update({n: np.array(key_out[src], copy=True) for n, src in PROPAGATED.items()})
    return state


def grow_boxes(boxes_xyxy: np.ndarray, margin: float) -> np.ndarray:
    """x1, y1, x2, y2 boxes [N, 4] grown by ``margin`` of their width / height on every side
    (float64; the boxes themselves when ``margin`` is 0)."""
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    if margin == 0:
        return boxes
    wh = boxes[:, 2:] - boxes[:, :2]
    return np.concatenate([boxes[:, :2] - margin * wh, boxes[:, 2:] + margin * wh], axis=1)


def model_mask_margin(key_model: str, manifest: Optional[Dict[str, Any]] = None) -> float:
    """The mask crop margin a VIS model was trained for: ``mask_margin`` of the manifest beside
    its key graph (``vis-export`` writes the checkpoint's ``--mask-margin``; ``manifest``: that
    manifest when the caller has read it already), 0 without one."""
    if manifest is None:
        from edge_perception.backends.torch_backend import sidecar_manifest

        manifest = sidecar_manifest(key_model)
    value = manifest.get("mask_margin", 0.0)
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError("%s manifest: mask_margin must be a number in [0, 1], got %r"
                         % (key_model, value))  # fmt: skip
    return float(value)


def paste_masks(
    masks: np.ndarray,
    boxes_xyxy: np.ndarray,
    transform: Transform,
    threshold: float = 0.5,
    stride: int = MASK_STRIDE,
    margin: float = 0.0,
) -> np.ndarray:
    """Stride-``stride`` mask probabilities [N, h, w] (input-image grid, not cropped) -> bool
    masks [N, H, W] at camera size, computed (bilinear, edge cells extended) only inside each
    camera-pixel box (grown by ``margin``, :func:`grow_boxes`: the margin the masks were trained
    with, ``vis-train --mask-margin``) and zero outside: the crop happens here, per camera
    pixel."""
    import cv2

    masks = np.asarray(masks, np.float32)
    boxes = grow_boxes(boxes_xyxy, margin)
    h, w = transform.src_hw
    out = np.zeros((boxes.shape[0], h, w), np.bool_)
    sx, sy = transform.scale_x / stride, transform.scale_y / stride
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        bx0, by0 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
        bx1, by1 = min(w, int(np.ceil(x2))), min(h, int(np.ceil(y2)))
        if bx1 <= bx0 or by1 <= by0:
            continue
        # dst pixel (j, i) of the box -> cell coordinate of the stride grid (centres at integers)
        ox = ((bx0 + 0.5) * transform.scale_x + transform.pad_x) / stride - 0.5
        oy = ((by0 + 0.5) * transform.scale_y + transform.pad_y) / stride - 0.5
        m = np.array([[sx, 0.0, ox], [0.0, sy, oy]], np.float64)
        region = cv2.warpAffine(
            masks[i],
            m,
            (bx1 - bx0, by1 - by0),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            # the grid covers the whole input: beyond its outer cell centres (the outer half
            # cell) extend the edge, do not fade to zero (masks of objects at the image border)
            borderMode=cv2.BORDER_REPLICATE,
        )
        out[i, by0:by1, bx0:bx1] = region > threshold
    return out


def crop_to_boxes(
    masks: np.ndarray, boxes_xyxy: np.ndarray, stride: int = MASK_STRIDE, margin: float = 0.0
) -> np.ndarray:
    """Stride-``stride`` masks [N, h, w] (input-image grid) zeroed outside their input-pixel
    ``boxes_xyxy`` [N, 4] grown by ``margin`` (a cell is kept when its centre is inside, as
    ``vis.heads.box_mask``): the head's masks are not cropped (``vis.heads.mask_probs``)."""
    masks = np.asarray(masks)
    n, h, w = masks.shape
    boxes = grow_boxes(boxes_xyxy, margin).astype(np.float32)
    xs = (np.arange(w, dtype=np.float32) + 0.5) * stride
    ys = (np.arange(h, dtype=np.float32) + 0.5) * stride
    inx = (xs[None] >= boxes[:, 0:1]) & (xs[None] <= boxes[:, 2:3])  # [N, w]
    iny = (ys[None] >= boxes[:, 1:2]) & (ys[None] <= boxes[:, 3:4])  # [N, h]
    return masks * (iny[:, :, None] & inx[:, None, :]).astype(masks.dtype)


def mask_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [len(a), len(b)] of flattened bool masks ``a`` [n, P] and ``b`` [m, P]."""
    fa = np.asarray(a, np.float32).reshape(len(a), -1)
    fb = np.asarray(b, np.float32).reshape(len(b), -1)
    if fa.shape[0] == 0 or fb.shape[0] == 0:
        return np.zeros((fa.shape[0], fb.shape[0]))
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float64)


class PathStats:
    """Running per-path counts and mean milliseconds (key path = key + head, non-key = nonkey +
    head) since the last :meth:`reset`. With the head fused into the path graphs its time is
    inside ``key`` / ``nonkey`` and ``head`` stays ~0."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.frames = {"key": 0, "nonkey": 0}
        self.sum_ms: Dict[str, float] = {g: 0.0 for g in GRAPHS}

    def record(self, key: bool, ms: Dict[str, float]) -> None:
        self.frames["key" if key else "nonkey"] += 1
        for g, v in ms.items():
            self.sum_ms[g] += v

    def mean_ms(self, graph: str) -> float:
        """Mean ms of one graph over the frames that ran it (nan when none did)."""
        n = sum(self.frames.values()) if graph == "head" else self.frames[graph]
        return self.sum_ms[graph] / n if n else float("nan")

    @property
    def key_ratio(self) -> float:
        total = sum(self.frames.values())
        return self.frames["key"] / total if total else float("nan")

    def as_dict(self) -> Dict[str, float]:
        head = self.mean_ms("head")
        return {
            "key_frames": float(self.frames["key"]),
            "nonkey_frames": float(self.frames["nonkey"]),
            "key_ratio": self.key_ratio,
            "key_ms": self.mean_ms("key"),
            "nonkey_ms": self.mean_ms("nonkey"),
            "head_ms": head,
            "key_path_ms": self.mean_ms("key") + head,
            "nonkey_path_ms": self.mean_ms("nonkey") + head,
        }


class VISPipeline(Pipeline):
    """RGB frame -> :class:`Instances` with masks and track ids (module docstring)."""

    task = "vis"

    def __init__(
        self,
        key_backend: InferenceBackend,
        nonkey_backend: InferenceBackend,
        head_backend: Optional[InferenceBackend],
        input_size: Optional[Tuple[int, int]] = None,
        resize: str = "stretch",
        class_names: Sequence[str] = OBJECT_CLASS_NAMES,
        score_threshold: float = 0.5,
        max_detections: int = 100,
        classes: Optional[Sequence[str]] = None,
        interpolation: str = "area",
        mask_threshold: float = 0.5,
        mask_margin: float = 0.0,
        keyframes: Optional[KeyframePolicyConfig] = None,
        tracker: Optional[TrackerConfig] = None,
        publish_unconfirmed: bool = True,
    ) -> None:
        if head_backend is None:  # the head fused into both path graphs (fuse_head)
            _check_io(key_backend, "key + head", ["images"], fused_outputs(KEY_OUTPUTS))
            _check_io(nonkey_backend, "nonkey + head", NONKEY_INPUTS,
                      fused_outputs(NONKEY_OUTPUTS))  # fmt: skip
        else:
            _check_io(key_backend, "key", ["images"], KEY_OUTPUTS)
            _check_io(nonkey_backend, "nonkey", NONKEY_INPUTS, NONKEY_OUTPUTS)
            _check_io(head_backend, "head", HEAD_INPUTS, HEAD_OUTPUTS)
        super().__init__(key_backend, input_size, resize, interpolation)
        self.nonkey_backend, self.head_backend = nonkey_backend, head_backend
        self.propagates = all(n in nonkey_backend.input_names for n in PROPAGATED)
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError("score_threshold must be in [0, 1], got %r" % score_threshold)
        if not 0.0 < mask_threshold < 1.0:
            raise ValueError("mask_threshold must be in (0, 1), got %r" % mask_threshold)
        if not 0.0 <= mask_margin <= 1.0:
            raise ValueError("mask_margin must be in [0, 1], got %r" % mask_margin)
        if max_detections < 1:
            raise ValueError("max_detections must be >= 1, got %r" % max_detections)
        self.class_names: List[str] = list(class_names)
        unknown = [c for c in (classes or []) if c not in self.class_names]
        if unknown:
            raise ValueError("classes: unknown %s; allowed: %s" % (unknown, self.class_names))
        self.keep_labels = (
            np.asarray([self.class_names.index(c) for c in classes], np.int64) if classes else None
        )
        self.score_threshold = float(score_threshold)
        self.max_detections = int(max_detections)
        self.mask_threshold = float(mask_threshold)
        self.mask_margin = float(mask_margin)
        self.policy = KeyframePolicy(keyframes)
        self.tracker = MultiObjectTracker(tracker) if tracker is not None else None
        self.publish_unconfirmed = bool(publish_unconfirmed)
        self._track_low = tracker.low_threshold if tracker is not None else 0.0
        self._birth_margin = (
            tracker.new_track_threshold - tracker.high_threshold if tracker is not None else 0.0
        )
        self.path_ms: Dict[str, float] = {}
        self.path_stats = PathStats()
        self.last_reason = ""
        self.last_mean_flow: Optional[float] = None
        self.last_lost = 0
        self._key = True
        self._state: Optional[Arrays] = None
        self._stamp: Optional[float] = None

    # ------------------------------------------------------------------ per-frame driver
    def set_stamp(self, stamp_s: float) -> None:
        """Stamp (seconds) of the next frame for the keyframe policy (default: monotonic now)."""
        self._stamp = float(stamp_s)

    def process(self, rgb: np.ndarray, stamp_s: Optional[float] = None) -> Any:
        """:meth:`Pipeline.process` with the frame's stamp in seconds (camera time)."""
        if stamp_s is not None:
            self._stamp = float(stamp_s)
        return super().process(rgb)

    @property
    def keyframe(self) -> bool:
        return self._key

    def infer(self, feeds: Arrays) -> Arrays:
        stamp = self._stamp if self._stamp is not None else time.monotonic()
        self._stamp = None
        key, reason = self.policy.decide(stamp)
        if not key and self._state is None:
            key, reason = True, "no_state"
        images = feeds[self.input_name]
        t0 = time.perf_counter()
        if key:
            out = self.backend({"images": images})
            self._state = keyframe_state(out, self.propagates)
            self.last_mean_flow = None
        else:
            state = self._state or {}
            out = self.nonkey_backend(dict(state, images=images))
            self.last_mean_flow = float(np.asarray(out["mean_flow"]).reshape(-1)[0])
        t1 = time.perf_counter()
        if self.head_backend is None:  # fused: the path graph's outputs include the head's
            head = out
        else:
            head = self.head_backend({n: out[n] for n in HEAD_INPUTS})
        t2 = time.perf_counter()
        self.path_ms = {"key" if key else "nonkey": (t1 - t0) * 1e3, "head": (t2 - t1) * 1e3}
        self.path_stats.record(key, self.path_ms)
        self._key, self.last_reason = key, reason
        return head

    def postprocess(self, outputs: Arrays, transform: Transform) -> Instances:
        boxes = np.asarray(outputs["boxes"], np.float32)
        scores = np.asarray(outputs["scores"], np.float32)
        labels = np.asarray(outputs["labels"]).astype(np.int64, copy=False)
        masks = np.asarray(outputs["masks"], np.float32)
        emb = np.asarray(outputs["embeddings"], np.float32)
        if boxes.ndim == 3:
            boxes, scores, labels, masks, emb = boxes[0], scores[0], labels[0], masks[0], emb[0]
        if boxes.ndim != 2 or masks.ndim != 3 or masks.shape[0] != boxes.shape[0]:
            raise BackendError(
                "VIS head outputs have shapes boxes %s, masks %s; expected [N,K,4], [N,K,h,w]"
                % (boxes.shape, masks.shape)
            )
        tracker = self.tracker
        threshold = self.score_threshold
        if tracker is not None:
            cfg = tracker.config
            cfg.high_threshold = self.score_threshold
            cfg.new_track_threshold = min(1.0, self.score_threshold + self._birth_margin)
            threshold = cfg.low_threshold = min(self._track_low, self.score_threshold)
        keep = (scores >= threshold) & (labels >= 0) & (labels < len(self.class_names))
        if self.keep_labels is not None:
            keep &= np.isin(labels, self.keep_labels)
        idx = np.flatnonzero(keep)
        idx = idx[np.argsort(-scores[idx], kind="stable")][: self.max_detections]
        out_boxes = transform.boxes_to_source(boxes[idx])
        low = masks[idx]
        if tracker is None:
            track_ids = np.full(idx.size, -1, np.int64)
            kept = np.arange(idx.size)
            self.last_lost = 0
        else:
            track_ids = self._track(out_boxes, boxes[idx], scores[idx], labels[idx], emb[idx], low)
            confirmed = track_ids >= 0
            if self.publish_unconfirmed:  # as DetectionPipeline: ids added, nothing withheld
                confirmed |= scores[idx] >= self.score_threshold
            kept = np.flatnonzero(confirmed)
        self.policy.observe(self.last_mean_flow, self.last_lost)
        full = paste_masks(
            low[kept], out_boxes[kept], transform, self.mask_threshold, margin=self.mask_margin
        )
        tids = track_ids[kept]
        return Instances(
            boxes_xyxy=out_boxes[kept],
            scores=scores[idx][kept],
            labels=labels[idx][kept],
            track_ids=tids,
            ids=[str(int(t)) if t >= 0 else "" for t in tids],
            rles=[],
            masks=full,
            keyframe=self._key,
        )

    def _track(
        self,
        boxes: np.ndarray,
        boxes_in: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray,
        emb: np.ndarray,
        low: np.ndarray,
    ) -> np.ndarray:
        """Tracker update with embeddings and, when its weight is not 0, the mask IoU of the
        stride-4 masks inside their input-pixel boxes ``boxes_in``; counts the tracks lost."""
        tracker = self.tracker
        assert tracker is not None
        before = {t.track_id for t in tracker.active_tracks}
        if tracker.config.custom_weight <= 0.0:  # the default: no per-frame mask work
            ids = tracker.update(boxes, scores, labels, embeddings=emb)
            self.last_lost = len(before - {t.track_id for t in tracker.active_tracks})
            return ids
        cropped = crop_to_boxes(low, boxes_in, margin=self.mask_margin)
        binary = (cropped >= self.mask_threshold).reshape(len(low), int(np.prod(low.shape[1:])))

        def mask_iou(tracks: List[Track], det_idx: np.ndarray) -> np.ndarray:
            width = binary.shape[1]
            prev = np.stack(
                [t.extra if t.extra is not None else np.zeros(width, np.bool_) for t in tracks]
            ).reshape(len(tracks), width)
            return mask_iou_matrix(prev, binary[det_idx])

        ids = tracker.update(
            boxes,
            scores,
            labels,
            embeddings=emb,
            similarity=mask_iou,
            extras=list(binary),
        )
        self.last_lost = len(before - {t.track_id for t in tracker.active_tracks})
        return ids

    # ------------------------------------------------------------------ state, facts
    def warmup(self, runs: int = 1) -> None:
        """Both paths once per run (a keyframe then a non-keyframe), then a clean state."""
        for _ in range(int(runs)):
            grey = np.full(self.input_hw + (3,), 114, np.uint8)
            self.process(grey, 0.0)
            self.process(grey, 1e-3)
        self.reset()
        self.path_stats.reset()

    def reset(self) -> None:
        """New stream: the next frame is a keyframe, tracks are forgotten (ids restart)."""
        self.policy.reset()
        self._state = None
        self._key = True
        self.last_mean_flow, self.last_lost = None, 0
        if self.tracker is not None:
            self.tracker.reset()

    def describe(self) -> Dict[str, str]:
        d = super().describe()
        d["model_nonkey"] = self.nonkey_backend.info.model_path
        d["model_head"] = (
            "fused into the key / non-key graphs"
            if self.head_backend is None
            else self.head_backend.info.model_path
        )
        c = self.policy.config
        d["keyframe_interval"] = str(c.keyframe_interval)
        d["max_keyframe_age_s"] = str(c.max_keyframe_age_s or 0.0)
        return d

    def close(self) -> None:
        for b in (self.backend, self.nonkey_backend, self.head_backend):
            if b is not None:
                b.close()
