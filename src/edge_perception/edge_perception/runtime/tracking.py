"""ROS-free multi-object tracker: ByteTrack-style two-stage association on IoU.

One tracker for the project: the detection pipeline gives every box a persistent integer track id
with it, and the video instance segmentation node reuses it with query embeddings and mask IoU.

Per frame (:meth:`MultiObjectTracker.update`):

1. detections split into *high* (``score >= high_threshold``) and *low*
   (``low_threshold <= score < high_threshold``); lower scores are ignored;
2. every confirmed track (tracked or lost) predicts its box with constant velocity;
3. **stage 1**: confirmed tracks <-> high detections on the blended similarity (IoU with the
   predicted box, plus the optional appearance terms below), accepted from ``match_threshold``;
4. **stage 2**: confirmed tracks still unmatched that were tracked in the previous frame <-> low
   detections on IoU alone, accepted from ``low_match_threshold`` (ByteTrack's recovery of
   occluded / blurred objects whose score dropped); unmatched tracks become *lost*;
5. tentative tracks <-> the high detections left, from ``tentative_match_threshold``; a tentative
   track that misses a frame is dropped, one matched ``min_hits`` times in a row is confirmed and
   only then gets its integer id (so flickering false positives use up no ids);
6. high detections left with ``score >= new_track_threshold`` start tentative tracks (confirmed at
   once in the first frame after :meth:`~MultiObjectTracker.reset`, as in ByteTrack);
7. lost tracks not matched for ``max_lost`` frames are removed.

Pairs of different class are never matched when ``class_consistent``. Ids are 1, 2, 3, ... in order
of confirmation and never reused until :meth:`~MultiObjectTracker.reset`.

**Appearance hook.** ``update(..., embeddings=E)`` (N x D, L2-normalised) keeps a per-track
embedding (exponential moving average, renormalised; updated from high-score matches only) and
blends the cosine similarity (clipped to [0, 1]) into stage 1 and the tentative stage with weight
``appearance_weight``. ``similarity=fn`` adds any caller-defined similarity in [0, 1] with weight
``custom_weight``: ``fn(tracks, det_indices) -> array [len(tracks), len(det_indices)]``, where each
:class:`Track` carries the ``extras[i]`` object of the detection it last matched in ``track.extra``
(the VIS node passes instance masks as extras and mask IoU as ``fn``). The similarity is
``(w_iou * IoU + w_app * cos + w_custom * custom) / (w_iou + w_app + w_custom)`` with
``w_iou = 1 - w_app - w_custom`` (terms that are not supplied drop out of both sums).

Python 3.8 + NumPy 1.x compatible (runs on the vehicle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

TENTATIVE = "tentative"
TRACKED = "tracked"
LOST = "lost"

#: ``fn(tracks, det_indices) -> [len(tracks), len(det_indices)]`` similarity in [0, 1].
SimilarityFn = Callable[[List["Track"], np.ndarray], np.ndarray]


@dataclass
class TrackerConfig:
    """Tracker settings (thresholds are detection scores or similarities in [0, 1])."""

    high_threshold: float = 0.5
    """Detections at or above this score take part in stage 1 and may start tracks."""
    low_threshold: float = 0.1
    """Detections in [low_threshold, high_threshold) only continue tracks (stage 2)."""
    new_track_threshold: float = 0.6
    """Minimum score of an unmatched high detection to start a (tentative) track (ByteTrack:
    high_threshold + 0.1)."""
    match_threshold: float = 0.2
    """Stage 1: minimum similarity of a track / high-detection pair (ByteTrack: 1 - 0.8)."""
    low_match_threshold: float = 0.5
    """Stage 2: minimum IoU of a track / low-detection pair (ByteTrack: 1 - 0.5)."""
    tentative_match_threshold: float = 0.3
    """Tentative tracks: minimum similarity to their next detection (ByteTrack: 1 - 0.7)."""
    min_hits: int = 2
    """Consecutive matched frames before a track is confirmed and gets an id (1 = at once)."""
    max_lost: int = 30
    """Frames a confirmed track survives unmatched (ByteTrack's track buffer)."""
    buffer: float = 0.3
    """Buffered IoU (C-BIoU): both boxes grow by this fraction of their width / height on every
    side before the IoU of a match is taken, so fast movers still overlap their prediction."""
    class_consistent: bool = True
    """Never match a track with a detection of another class."""
    velocity: bool = True
    """Constant-velocity prediction of the box (else the last box is the prediction)."""
    velocity_momentum: float = 0.6
    """Weight of the newest velocity measurement in its moving average."""
    fuse_score: bool = False
    """Stage 1: multiply the similarity by the detection score (ByteTrack on MOT17)."""
    appearance_weight: float = 0.0
    """Weight of the embedding cosine similarity (when embeddings are passed)."""
    custom_weight: float = 0.0
    """Weight of the caller's similarity function (when one is passed)."""
    embedding_momentum: float = 0.9
    """Weight of a track's old embedding in its moving average."""

    def validate(self) -> TrackerConfig:
        """Check ranges; raises ValueError naming the field."""
        unit = (
            "high_threshold", "low_threshold", "new_track_threshold", "match_threshold",
            "low_match_threshold", "tentative_match_threshold", "velocity_momentum",
            "appearance_weight", "custom_weight", "embedding_momentum",
        )  # fmt: skip
        for name in unit:
            v = float(getattr(self, name))
            if not 0.0 <= v <= 1.0:
                raise ValueError("%s must be in [0, 1], got %r" % (name, v))
        if not self.low_threshold <= self.high_threshold <= self.new_track_threshold:
            raise ValueError(
                "need low_threshold <= high_threshold <= new_track_threshold, got %r, %r, %r"
                % (self.low_threshold, self.high_threshold, self.new_track_threshold)
            )
        if self.appearance_weight + self.custom_weight > 1.0:
            raise ValueError("appearance_weight + custom_weight must not exceed 1")
        if not 0.0 <= self.buffer <= 2.0:
            raise ValueError("buffer must be in [0, 2], got %r" % self.buffer)
        if self.min_hits < 1 or self.max_lost < 0:
            raise ValueError("min_hits must be >= 1 and max_lost >= 0")
        return self


def _to_cxcywh(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, np.float64).reshape(-1, 4)
    wh = b[:, 2:] - b[:, :2]
    return np.concatenate([b[:, :2] + wh / 2.0, wh], axis=1)


def _to_xyxy(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, np.float64).reshape(-1, 4)
    half = np.maximum(c[:, 2:], 0.0) / 2.0
    return np.concatenate([c[:, :2] - half, c[:, :2] + half], axis=1)


def _grow(boxes: np.ndarray, fraction: float) -> np.ndarray:
    if fraction <= 0:
        return boxes
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    pad = np.repeat((b[:, 2:] - b[:, :2]) * fraction, 2, axis=0).reshape(-1, 4)
    return b + pad * np.array([-1.0, -1.0, 1.0, 1.0])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of x1y1x2y2 boxes (0 where a box has no area)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0.0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def track_colour(track_id: int) -> Tuple[int, int, int]:
    """A distinct RGB colour per track id (golden-ratio hue steps), for overlays and markers."""
    import colorsys

    hue = (int(track_id) * 0.6180339887) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.8, 1.0)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


class Track:
    """One tracked object. ``track_id`` is -1 while tentative, then a stable positive integer."""

    def __init__(
        self,
        box_xyxy: np.ndarray,
        score: float,
        label: int,
        frame: int,
        embedding: Optional[np.ndarray] = None,
        extra: Any = None,
    ) -> None:
        self.track_id = -1
        self.state = TENTATIVE
        self.label = int(label)
        self.score = float(score)
        self.box = _to_cxcywh(box_xyxy)[0]  # last observed (cx, cy, w, h)
        self.velocity = np.zeros(4)  # per frame
        self.embedding = None if embedding is None else np.asarray(embedding, np.float64)
        self.extra = extra
        self.hits = 1
        self.start_frame = frame
        self.last_frame = frame  # frame of the last match
        self.predicted = self.box.copy()

    @property
    def box_xyxy(self) -> np.ndarray:
        """Last observed box (x1, y1, x2, y2)."""
        return _to_xyxy(self.box)[0]

    @property
    def predicted_xyxy(self) -> np.ndarray:
        """Box predicted for the current frame (x1, y1, x2, y2)."""
        return _to_xyxy(self.predicted)[0]

    def predict(self, frame: int, use_velocity: bool) -> None:
        gap = frame - self.last_frame
        self.predicted = self.box + (self.velocity * gap if use_velocity else 0.0)
        self.predicted[2:] = np.maximum(self.predicted[2:], 1.0)

    def update(
        self,
        box_xyxy: np.ndarray,
        score: float,
        frame: int,
        cfg: TrackerConfig,
        embedding: Optional[np.ndarray],
        extra: Any,
        high: bool,
    ) -> None:
        box = _to_cxcywh(box_xyxy)[0]
        gap = max(1, frame - self.last_frame)
        measured = (box - self.box) / gap
        m = cfg.velocity_momentum if self.hits > 1 else 1.0
        self.velocity = m * measured + (1.0 - m) * self.velocity
        self.box = box
        self.score = float(score)
        self.hits = self.hits + 1 if frame == self.last_frame + 1 else 1
        self.last_frame = frame
        if extra is not None:
            self.extra = extra
        if embedding is not None and high:
            e = np.asarray(embedding, np.float64)
            if self.embedding is None:
                self.embedding = e
            else:
                mixed = cfg.embedding_momentum * self.embedding + (1 - cfg.embedding_momentum) * e
                self.embedding = mixed / max(float(np.linalg.norm(mixed)), 1e-12)

    def __repr__(self) -> str:
        return "Track(id=%d, %s, label=%d, box=%s)" % (
            self.track_id, self.state, self.label, np.round(self.box_xyxy, 1).tolist(),
        )  # fmt: skip


class MultiObjectTracker:
    """ByteTrack-style tracker; see the module docstring."""

    def __init__(self, config: Optional[TrackerConfig] = None) -> None:
        self.config = (config or TrackerConfig()).validate()
        self.reset()

    def reset(self) -> None:
        """Forget every track; ids start again at 1."""
        self.tracks: List[Track] = []
        self.frame = -1
        self.next_id = 1

    @property
    def active_tracks(self) -> List[Track]:
        """Confirmed tracks matched in the last frame."""
        return [t for t in self.tracks if t.state == TRACKED]

    # ------------------------------------------------------------------------------- matching
    def _similarity(
        self,
        tracks: List[Track],
        det_idx: np.ndarray,
        boxes: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray,
        embeddings: Optional[np.ndarray],
        similarity: Optional[SimilarityFn],
        appearance: bool,
    ) -> np.ndarray:
        cfg = self.config
        pred = np.stack([t.predicted_xyxy for t in tracks]) if tracks else np.zeros((0, 4))
        sim = box_iou(_grow(pred, cfg.buffer), _grow(boxes[det_idx], cfg.buffer))
        if sim.size == 0:
            return sim
        w_iou, total = 1.0 - cfg.appearance_weight - cfg.custom_weight, sim * 0.0
        weight = 0.0
        if appearance and embeddings is not None and cfg.appearance_weight > 0:
            have = np.array([t.embedding is not None for t in tracks], bool)
            if have.any():
                dim = embeddings.shape[1]
                te = np.stack([t.embedding if t.embedding is not None else np.zeros(dim)
                               for t in tracks])  # fmt: skip
                cos = np.clip(te @ embeddings[det_idx].T, 0.0, 1.0)
                total = total + cfg.appearance_weight * cos
                weight += cfg.appearance_weight
        if appearance and similarity is not None and cfg.custom_weight > 0:
            custom = np.asarray(similarity(list(tracks), det_idx), np.float64)
            if custom.shape != sim.shape:
                raise ValueError(
                    "similarity returned shape %s, expected %s" % (custom.shape, sim.shape)
                )
            total = total + cfg.custom_weight * np.clip(custom, 0.0, 1.0)
            weight += cfg.custom_weight
        if weight > 0:
            sim = (w_iou * sim + total) / (w_iou + weight)
        if cfg.class_consistent and sim.size:
            track_labels = np.array([t.label for t in tracks], np.int64)
            sim = np.where(track_labels[:, None] == labels[det_idx][None, :], sim, -1.0)
        return sim

    @staticmethod
    def _assign(sim: np.ndarray, threshold: float) -> List[tuple]:
        """Maximum-similarity one-to-one pairs (row, col) with ``sim >= threshold``."""
        if sim.size == 0:
            return []
        cost = np.where(sim >= threshold, 1.0 - sim, 1e6)
        rows, cols = linear_sum_assignment(cost)
        return [(int(r), int(c)) for r, c in zip(rows, cols) if sim[r, c] >= threshold]

    # ------------------------------------------------------------------------------- update
    def update(
        self,
        boxes_xyxy: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray,
        embeddings: Optional[np.ndarray] = None,
        similarity: Optional[SimilarityFn] = None,
        extras: Optional[Sequence[Any]] = None,
    ) -> np.ndarray:
        """Advance one frame; returns the track id per detection (int64, -1 = none).

        ``boxes_xyxy`` N x 4, ``scores`` N, ``labels`` N (ints); ``embeddings`` N x D
        L2-normalised; ``extras`` N objects stored on the matched tracks (``track.extra``).
        Only detections matched to *confirmed* tracks get an id; the rest get -1 (too low a
        score, or a track not yet confirmed).
        """
        cfg = self.config
        boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
        n = boxes.shape[0]
        scores = np.asarray(scores, np.float64).reshape(n)
        labels = np.asarray(labels, np.int64).reshape(n)
        if embeddings is not None:
            embeddings = np.asarray(embeddings, np.float64)
            dim = embeddings.shape[-1] if embeddings.ndim == 2 else (embeddings.size // max(n, 1))
            if embeddings.size != n * dim:
                raise ValueError(
                    f"embeddings has shape {embeddings.shape} for {n} detections (expected N x D)"
                )
            embeddings = embeddings.reshape(n, dim)
        if extras is not None and len(extras) != n:
            raise ValueError("extras has %d entries for %d detections" % (len(extras), n))
        self.frame += 1
        frame = self.frame
        first = frame == 0
        ids = np.full(n, -1, np.int64)
        owner: List[Optional[Track]] = [None] * n

        def bind(track: Track, d: int, high: bool) -> None:
            emb = embeddings[d] if embeddings is not None else None
            extra = extras[d] if extras is not None else None
            track.update(boxes[d], float(scores[d]), frame, cfg, emb, extra, high)
            owner[d] = track

        high = np.flatnonzero(scores >= cfg.high_threshold)
        low = np.flatnonzero((scores >= cfg.low_threshold) & (scores < cfg.high_threshold))
        confirmed = [t for t in self.tracks if t.state != TENTATIVE]
        tentative = [t for t in self.tracks if t.state == TENTATIVE]
        for t in self.tracks:
            t.predict(frame, cfg.velocity)

        # Stage 1: confirmed tracks <-> high detections (IoU + appearance).
        sim = self._similarity(
            confirmed, high, boxes, scores, labels, embeddings, similarity, True
        )
        if cfg.fuse_score and sim.size:
            sim = sim * scores[high][None, :]
        matched_t, matched_d = set(), set()
        for r, c in self._assign(sim, cfg.match_threshold):
            bind(confirmed[r], int(high[c]), True)
            confirmed[r].state = TRACKED
            matched_t.add(r)
            matched_d.add(int(high[c]))
        # Stage 2: tracks that were tracked last frame <-> low detections (IoU only).
        rest = [t for i, t in enumerate(confirmed) if i not in matched_t]
        recent = [t for t in rest if t.state == TRACKED]
        sim = self._similarity(recent, low, boxes, scores, labels, None, None, False)
        recovered = set()
        for r, c in self._assign(sim, cfg.low_match_threshold):
            bind(recent[r], int(low[c]), False)
            recovered.add(id(recent[r]))
        for t in rest:
            if id(t) not in recovered:
                t.state = LOST
        # Tentative tracks <-> high detections left.
        left = np.array([d for d in high if int(d) not in matched_d], np.int64)
        sim = self._similarity(
            tentative, left, boxes, scores, labels, embeddings, similarity, True
        )
        kept: List[Track] = []
        used = set()
        for r, c in self._assign(sim, cfg.tentative_match_threshold):
            t = tentative[r]
            bind(t, int(left[c]), True)
            used.add(int(left[c]))
            kept.append(t)
            if t.hits >= cfg.min_hits:
                self._confirm(t)
        # Births from unmatched high detections.
        born: List[Track] = []
        for d in left:
            d = int(d)
            if d in used or scores[d] < cfg.new_track_threshold:
                continue
            emb = embeddings[d] if embeddings is not None else None
            extra = extras[d] if extras is not None else None
            t = Track(boxes[d], float(scores[d]), int(labels[d]), frame, emb, extra)
            if first or cfg.min_hits <= 1:
                self._confirm(t)
            owner[d] = t
            born.append(t)
        # Keep confirmed tracks within the lost buffer, matched tentative ones and the new ones.
        survivors = [
            t for t in self.tracks
            if t.state != TENTATIVE and frame - t.last_frame <= cfg.max_lost
        ]  # fmt: skip
        self.tracks = survivors + [t for t in kept if t.state == TENTATIVE] + born
        for d, t in enumerate(owner):
            if t is not None and t.state == TRACKED:
                ids[d] = t.track_id
        return ids

    def _confirm(self, track: Track) -> None:
        track.state = TRACKED
        track.track_id = self.next_id
        self.next_id += 1
