"""The one place that converts between ROS messages and NumPy arrays / result records.

Images: :func:`image_to_array` decodes a ``sensor_msgs/Image`` into RGB ``uint8`` HxWx3 for every
encoding the nodes accept (see :data:`SUPPORTED_ENCODINGS`), honouring ``step`` (row padding) and
``is_bigendian`` (16-bit encodings). A malformed message raises :class:`ImageDecodeError` whose
``kind`` (one of :data:`DECODE_ERROR_KINDS`) lets a node log each kind of problem once.

Results: detections (``vision_msgs/Detection2DArray`` + ``LabelInfo``), instances
(``edge_perception_msgs/InstanceArray`` with COCO RLE masks), lane segmentation
(``edge_perception_msgs/LaneSegmentation``) and per-frame timing (``FrameTiming``), each with a
``*_to_msg`` builder and, where a consumer needs it, a ``msg_to_*`` reader returning the ROS-free
records of :mod:`edge_perception.runtime.results`.

Class ids: ``LabelInfo.class_map[i]`` is ``VisionClass(class_id=i, class_name=class_names[i])``
(0-based model label); ``ObjectHypothesis.class_id`` is ``str(i)`` — the decimal string of that
same ``class_id`` — and ``Instance.class_id`` is ``i``.

Python 3.8 compatible.
"""

from __future__ import annotations

import array
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import (
    BoundingBox2D,
    Detection2D,
    Detection2DArray,
    LabelInfo,
    ObjectHypothesisWithPose,
    Point2D,
    VisionClass,
)

from edge_perception.masks import box_from_mask, mask_to_rle_counts, rle_counts_to_mask
from edge_perception.runtime import compressed as jpeg_png
from edge_perception.runtime.results import Detections, Instances, LaneLineResult, LaneResult
from edge_perception.runtime.yuv import decode_yuv422, encode_yuv422
from edge_perception_msgs.msg import (
    FrameTiming,
    Instance,
    InstanceArray,
    LaneLine,
    LaneSegmentation,
    MaskRLE,
)

# encoding -> bytes per pixel
_BPP = {
    "rgb8": 3,
    "bgr8": 3,
    "rgba8": 4,
    "bgra8": 4,
    "mono8": 1,
    "mono16": 2,
    "rgb16": 6,
    "bgr16": 6,
    "yuv422": 2,  # UYVY byte order (ROS's historical name)
    "uyvy": 2,
    "yuv422_yuy2": 2,  # YUYV byte order
    "yuyv": 2,
}
SUPPORTED_ENCODINGS: Tuple[str, ...] = tuple(_BPP)
_SUPPORTED_TEXT = ", ".join(SUPPORTED_ENCODINGS)
_UYVY = ("yuv422", "uyvy")
_YUYV = ("yuv422_yuy2", "yuyv")

DECODE_ERROR_KINDS: Tuple[str, ...] = (
    "unknown_encoding",  # encoding not in SUPPORTED_ENCODINGS
    "zero_size",  # height or width is 0
    "bad_step",  # step smaller than width * bytes-per-pixel
    "short_data",  # fewer than step * height bytes
    "odd_width",  # YUV 4:2:2 needs an even width
) + jpeg_png.COMPRESSED_ERROR_KINDS  # CompressedImage: unknown codec, empty, undecodable

LANE_TYPES = {"unknown": 0, "solid": 1, "dashed": 2, "double": 3}
LANE_COLORS = {"unknown": 0, "white": 1, "yellow": 2}


class ImageDecodeError(ValueError):
    """A ``sensor_msgs/Image`` could not be decoded; ``kind`` names the problem class."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# ------------------------------------------------------------------------------------ stamps


def stamp_to_ns(stamp: Time) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    """Integer nanoseconds (>= 0) -> ``builtin_interfaces/Time``."""
    if ns < 0:
        raise ValueError(f"a stamp cannot be negative: {ns} ns")
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def make_header(stamp_ns: int, frame_id: str = "") -> Header:
    """A ``std_msgs/Header`` from nanoseconds and a frame id."""
    return Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)


def copy_header(header: Header) -> Header:
    """A new Header with the same stamp and frame id (messages must not share one instance)."""
    return Header(
        stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec), frame_id=header.frame_id
    )


# ------------------------------------------------------------------------------------ images


def _bytes_view(data: Any) -> np.ndarray:
    try:
        return np.frombuffer(memoryview(data), dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8)


def image_to_array(msg: Union[Image, CompressedImage]) -> np.ndarray:
    """Decode an image message into a C-contiguous RGB ``uint8`` array of shape HxWx3.

    A ``CompressedImage`` (image_transport ``compressed``: JPEG / PNG) is decoded by OpenCV.

    16-bit encodings keep their high byte (byte order from ``is_bigendian``); mono becomes grey
    RGB; alpha is dropped; YUV 4:2:2 uses BT.601 limited range. Bytes beyond ``width * bpp`` in a
    row (``step`` padding) and beyond ``step * height`` are ignored.

    Raises:
        ImageDecodeError: with ``kind`` in :data:`DECODE_ERROR_KINDS`.
    """
    if isinstance(msg, CompressedImage):
        try:
            return jpeg_png.decode_compressed(msg.data, msg.format)
        except jpeg_png.CompressedDecodeError as exc:
            raise ImageDecodeError(exc.kind, str(exc)) from None
    enc = str(msg.encoding).lower()
    if enc not in _BPP:
        raise ImageDecodeError(
            "unknown_encoding",
            f"unsupported image encoding {msg.encoding!r} (supported: {_SUPPORTED_TEXT})",
        )
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0:
        raise ImageDecodeError("zero_size", f"image has zero size ({w}x{h})")
    bpp = _BPP[enc]
    if step < w * bpp:
        raise ImageDecodeError(
            "bad_step",
            f"step {step} is smaller than width {w} x {bpp} bytes per pixel ({enc})",
        )
    if enc in _UYVY + _YUYV and w % 2:
        raise ImageDecodeError("odd_width", f"{enc} needs an even width, got {w}")
    buf = _bytes_view(msg.data)
    if buf.size < step * h:
        raise ImageDecodeError(
            "short_data",
            f"image data has {buf.size} bytes, expected step {step} x height {h} = {step * h}",
        )
    rows = buf[: step * h].reshape(h, step)[:, : w * bpp]
    if enc in ("rgb8", "bgr8", "rgba8", "bgra8"):
        px = rows.reshape(h, w, bpp)
        if enc.startswith("bgr"):
            return np.ascontiguousarray(px[..., 2::-1])
        return np.ascontiguousarray(px[..., :3])
    if enc == "mono8":
        return np.repeat(rows[..., None], 3, axis=2)
    if enc in ("mono16", "rgb16", "bgr16"):
        dt = np.dtype(">u2" if msg.is_bigendian else "<u2")
        vals = np.ascontiguousarray(rows).view(dt)
        hi = (vals >> 8).astype(np.uint8)
        if enc == "mono16":
            return np.repeat(hi[..., None], 3, axis=2)
        px = hi.reshape(h, w, 3)
        return np.ascontiguousarray(px[..., ::-1] if enc == "bgr16" else px)
    return decode_yuv422(rows.reshape(h, w, 2), uyvy=enc in _UYVY)


def array_to_image(
    arr: np.ndarray,
    encoding: str = "rgb8",
    header: Optional[Header] = None,
    step: Optional[int] = None,
    is_bigendian: bool = False,
) -> Image:
    """Encode an array into an image message.

    ``arr`` is RGB HxWx3 ``uint8`` for colour and YUV encodings (HxWx4 RGBA is accepted for
    rgba8/bgra8) or HxW (or HxWx1) for ``mono8``/``mono16`` (``uint8``; ``uint16`` for mono16,
    whose byte order follows ``is_bigendian``). ``step`` (>= width x bpp) adds zero row padding.
    """
    enc = encoding.lower()
    if enc not in _BPP:
        raise ValueError(f"unsupported encoding {encoding!r} (supported: {_SUPPORTED_TEXT})")
    a = np.asarray(arr)
    if enc in ("mono8", "mono16"):
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[..., 0]
        if a.ndim != 2:
            raise ValueError(f"{enc} needs an HxW array, got shape {a.shape}")
    else:
        channels = (3, 4) if enc in ("rgba8", "bgra8") else (3,)
        if a.ndim != 3 or a.shape[2] not in channels:
            raise ValueError(f"{enc} needs an RGB HxWx3 array, got shape {a.shape}")
    want = np.uint16 if enc in ("mono16", "rgb16", "bgr16") else np.uint8
    if a.dtype != want:
        raise ValueError(f"{enc} needs dtype {np.dtype(want).name}, got {a.dtype}")
    h, w = a.shape[:2]
    bpp = _BPP[enc]
    if enc == "rgb8":
        payload = a[..., :3]
    elif enc == "bgr8":
        payload = a[..., 2::-1]
    elif enc in ("rgba8", "bgra8"):
        rgba = a if a.shape[2] == 4 else np.concatenate([a, np.full((h, w, 1), 255, np.uint8)], 2)
        payload = rgba if enc == "rgba8" else rgba[..., [2, 1, 0, 3]]
    elif enc == "mono8":
        payload = a
    elif enc in ("mono16", "rgb16", "bgr16"):
        src = a if enc != "bgr16" else a[..., ::-1]
        payload = src.astype(">u2" if is_bigendian else "<u2").view(np.uint8)
    else:
        payload = encode_yuv422(a[..., :3], uyvy=enc in _UYVY)
    row = np.ascontiguousarray(payload).reshape(h, w * bpp)
    row_step = w * bpp if step is None else int(step)
    if row_step < w * bpp:
        raise ValueError(f"step {row_step} is smaller than width x bpp = {w * bpp}")
    if row_step != w * bpp:
        padded = np.zeros((h, row_step), np.uint8)
        padded[:, : w * bpp] = row
        row = padded
    msg = Image()
    if header is not None:
        msg.header = copy_header(header)
    msg.height, msg.width, msg.encoding = h, w, enc
    msg.is_bigendian = bool(is_bigendian)
    msg.step = row_step
    # An array.array('B') is taken as is by the message; bytes would be checked element-wise.
    data = array.array("B")
    data.frombytes(memoryview(np.ascontiguousarray(row)).cast("B"))
    msg.data = data
    return msg


def array_to_compressed(
    arr: np.ndarray, codec: str = "jpeg", header: Optional[Header] = None, quality: int = 80
) -> CompressedImage:
    """RGB HxWx3 (or grey HxW) ``uint8`` -> ``CompressedImage`` as image_transport's
    ``compressed`` transport writes it (``runtime.compressed.encode_compressed``)."""
    payload, fmt = jpeg_png.encode_compressed(arr, codec, quality)
    msg = CompressedImage(header=copy_header(header or Header()), format=fmt)
    msg.data.frombytes(payload)  # array.array('B'): taken as is, no element-wise check
    return msg


def input_subscription(topic: str, transport: str) -> Tuple[Any, str]:
    """(message type, topic) of a node's camera input: ``Image`` on ``topic`` (``raw``) or
    ``CompressedImage`` on ``<topic>/compressed`` (``compressed``, image_transport's naming)."""
    if transport == "compressed":
        return CompressedImage, topic.rstrip("/") + "/compressed"
    return Image, topic


# ------------------------------------------------------------------------------ detections


def _box_msg(x1: float, y1: float, x2: float, y2: float) -> BoundingBox2D:
    b = BoundingBox2D()
    b.center.position.x = float(x1 + x2) * 0.5
    b.center.position.y = float(y1 + y2) * 0.5
    b.center.theta = 0.0
    b.size_x = float(x2 - x1)
    b.size_y = float(y2 - y1)
    return b


def _box_xyxy(b: BoundingBox2D) -> Tuple[float, float, float, float]:
    cx, cy = b.center.position.x, b.center.position.y
    return (cx - b.size_x / 2, cy - b.size_y / 2, cx + b.size_x / 2, cy + b.size_y / 2)


def _check_lengths(n: int, **arrays: Any) -> None:
    for name, a in arrays.items():
        if a is not None and len(a) != n:
            raise ValueError(f"{name} has {len(a)} entries but there are {n} boxes")


def detections_to_msg(
    header: Header,
    boxes_xyxy: np.ndarray,
    scores: Sequence[float],
    labels: Sequence[int],
    class_names: Sequence[str],
    ids: Optional[Sequence[str]] = None,
) -> Detection2DArray:
    """Build a ``Detection2DArray``; every detection copies ``header``.

    ``boxes_xyxy`` is Nx4 image pixels; ``labels`` 0-based indices into ``class_names`` (written
    as ``ObjectHypothesis.class_id = str(label)``, matching :func:`label_info_msg`). ``ids`` are
    ``Detection2D.id``: per vision_msgs an identity that stays the same across frames (the
    detection node's track ids), so they default to ``""`` (no identity), never to a rank.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    n = boxes.shape[0]
    _check_lengths(n, scores=scores, labels=labels, ids=ids)
    out = Detection2DArray(header=copy_header(header))
    for i in range(n):
        label = int(labels[i])
        if not 0 <= label < len(class_names):
            raise ValueError(f"label {label} outside the {len(class_names)} class names")
        det = Detection2D(header=copy_header(header))
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = str(label)
        hyp.hypothesis.score = float(scores[i])
        det.results.append(hyp)
        det.bbox = _box_msg(*boxes[i])
        det.id = str(ids[i]) if ids is not None else ""
        out.detections.append(det)
    return out


def _label_of(class_id: str, class_names: Optional[Sequence[str]]) -> int:
    if class_id.lstrip("-").isdigit():
        return int(class_id)
    if class_names is not None and class_id in class_names:
        return list(class_names).index(class_id)
    raise ValueError(f"class_id {class_id!r} is neither an integer id nor a known class name")


def msg_to_detections(
    msg: Detection2DArray, class_names: Optional[Sequence[str]] = None
) -> Detections:
    """Read a ``Detection2DArray`` back (best hypothesis per detection).

    ``class_id`` strings that are not integers are looked up in ``class_names`` when given.
    """
    boxes, scores, labels, ids = [], [], [], []
    for det in msg.detections:
        if det.results:
            best = max(det.results, key=lambda r: r.hypothesis.score)
            labels.append(_label_of(best.hypothesis.class_id, class_names))
            scores.append(best.hypothesis.score)
        else:
            labels.append(-1)
            scores.append(0.0)
        boxes.append(_box_xyxy(det.bbox))
        ids.append(det.id)
    return Detections(
        boxes_xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        scores=np.asarray(scores, np.float32),
        labels=np.asarray(labels, np.int64),
        ids=ids,
        class_names=list(class_names) if class_names is not None else [],
    )


def label_info_msg(
    class_names: Sequence[str], threshold: float, header: Optional[Header] = None
) -> LabelInfo:
    """``LabelInfo`` with ``class_map[i] = (i, class_names[i])`` and the score threshold."""
    if len(class_names) >= 65535:
        raise ValueError("too many classes for uint16 class ids (65535 means unlabelled)")
    msg = LabelInfo()
    if header is not None:
        msg.header = copy_header(header)
    msg.class_map = [VisionClass(class_id=i, class_name=str(n)) for i, n in enumerate(class_names)]
    msg.threshold = float(threshold)
    return msg


# ------------------------------------------------------------------------------- instances

MaskLike = Union[np.ndarray, dict, Sequence[int]]


def _rle_of(mask: MaskLike, height: int, width: int) -> Tuple[List[int], Optional[np.ndarray]]:
    """Counts for one instance mask (array or COCO RLE dict) and the array when one was given."""
    if isinstance(mask, dict):
        size = list(mask.get("size", []))
        if size != [height, width]:
            raise ValueError(f"RLE size {size} does not match the image {height}x{width}")
        counts = mask["counts"]
        if isinstance(counts, (bytes, str)):
            raise ValueError("compressed (string) RLE counts are not supported; pass a list")
        counts = [int(c) for c in counts]
        if sum(counts) != height * width:
            raise ValueError(f"RLE counts do not add up to {height}x{width}")
        return counts, None
    arr = np.asarray(mask)
    if arr.shape != (height, width):
        raise ValueError(f"mask shape {arr.shape} does not match the image {height}x{width}")
    return mask_to_rle_counts(arr), arr


def instances_to_msg(
    header: Header,
    image_size: Tuple[int, int],
    masks: Sequence[MaskLike],
    scores: Sequence[float],
    labels: Sequence[int],
    boxes_xyxy: Optional[np.ndarray] = None,
    track_ids: Optional[Sequence[int]] = None,
    ids: Optional[Sequence[str]] = None,
    keyframe: bool = True,
    visible_fraction: Optional[Sequence[float]] = None,
) -> InstanceArray:
    """Build an ``InstanceArray`` with full-image RLE masks.

    ``image_size`` is ``(height, width)``; ``masks`` an (N,H,W) array or a sequence of HxW arrays
    or COCO uncompressed RLE dicts. Boxes default to the tight box of each mask; ``track_ids`` to
    -1; ``ids`` to ``"0"``, ``"1"``, ... (matching :func:`detections_to_msg`);
    ``visible_fraction`` to -1 (unknown).
    """
    height, width = int(image_size[0]), int(image_size[1])
    n = len(masks)
    _check_lengths(
        n,
        scores=scores,
        labels=labels,
        boxes_xyxy=boxes_xyxy,
        track_ids=track_ids,
        ids=ids,
        visible_fraction=visible_fraction,
    )
    out = InstanceArray(header=copy_header(header), keyframe=bool(keyframe))
    for i in range(n):
        counts, arr = _rle_of(masks[i], height, width)
        if boxes_xyxy is not None:
            box = tuple(float(v) for v in np.asarray(boxes_xyxy[i]).reshape(4))
        elif arr is not None:
            box = box_from_mask(arr)
        else:
            box = box_from_mask(rle_counts_to_mask(counts, height, width))
        label = int(labels[i])
        if not 0 <= label < 65535:
            raise ValueError(f"label {label} does not fit a uint16 class id")
        inst = Instance()
        inst.detection_id = str(ids[i]) if ids is not None else str(i)
        inst.class_id = label
        inst.score = float(scores[i])
        inst.bbox = _box_msg(*box)
        inst.track_id = int(track_ids[i]) if track_ids is not None else -1
        inst.mask = MaskRLE(height=height, width=width, counts=counts)
        inst.visible_fraction = (
            float(visible_fraction[i]) if visible_fraction is not None else -1.0
        )
        out.instances.append(inst)
    return out


def msg_to_instances(msg: InstanceArray, decode_masks: bool = True) -> Instances:
    """Read an ``InstanceArray`` back; masks decoded to (N,H,W) bool when ``decode_masks``."""
    insts = list(msg.instances)
    rles = [
        {
            "size": [int(i.mask.height), int(i.mask.width)],
            "counts": [int(c) for c in i.mask.counts],
        }
        for i in insts
    ]
    masks = None
    if decode_masks:
        if insts:
            masks = np.stack([rle_counts_to_mask(r["counts"], *r["size"]) for r in rles])
        else:
            masks = np.zeros((0, 0, 0), np.bool_)
    return Instances(
        boxes_xyxy=np.asarray([_box_xyxy(i.bbox) for i in insts], np.float32).reshape(-1, 4),
        scores=np.asarray([i.score for i in insts], np.float32),
        labels=np.asarray([i.class_id for i in insts], np.int64),
        track_ids=np.asarray([i.track_id for i in insts], np.int64),
        ids=[i.detection_id for i in insts],
        rles=rles,
        masks=masks,
        visible_fraction=np.asarray([i.visible_fraction for i in insts], np.float32),
        keyframe=bool(msg.keyframe),
    )


# ------------------------------------------------------------------------------------ lanes


def _enum_value(value: Any, table: dict, what: str) -> int:
    if isinstance(value, str):
        key = value.lower()
        if key not in table:
            raise ValueError(f"unknown lane {what} {value!r} (allowed: {', '.join(table)})")
        return table[key]
    iv = int(value)
    if iv not in table.values():
        raise ValueError(f"lane {what} {iv} outside {sorted(table.values())}")
    return iv


def _line_field(line: Any, name: str, default: Any) -> Any:
    if isinstance(line, dict):
        return line.get(name, default)
    return getattr(line, name, default)


def lane_to_msg(
    header: Header,
    class_mask: Optional[np.ndarray],
    class_names: Sequence[str],
    lines: Optional[Sequence[Any]] = None,
    class_mask_topic: str = "",
) -> LaneSegmentation:
    """Build a ``LaneSegmentation``.

    ``class_mask`` (HxW uint8 class indices) is embedded as mono8 unless it is None (then the
    embedded image stays empty and ``class_mask_topic`` should name the topic carrying it).
    ``lines`` are :class:`LaneLineResult` records or dicts with ``points`` (Kx2 x, y pixels, near
    to far), ``type`` / ``color`` (name or LaneLine constant), ``confidence`` and ``id``
    (default: position in the list).
    """
    msg = LaneSegmentation(header=copy_header(header))
    if class_mask is not None:
        mask = np.asarray(class_mask)
        if mask.ndim != 2 or mask.dtype != np.uint8:
            raise ValueError(f"class_mask must be HxW uint8, got {mask.shape} {mask.dtype}")
        msg.class_mask = array_to_image(mask, "mono8", header)
    msg.class_mask_topic = class_mask_topic
    msg.class_names = [str(n) for n in class_names]
    for k, line in enumerate(lines or []):
        pts = np.asarray(_line_field(line, "points", []), dtype=np.float64).reshape(-1, 2)
        lm = LaneLine()
        lm.id = int(_line_field(line, "id", k))
        lm.type = _enum_value(_line_field(line, "type", 0), LANE_TYPES, "type")
        lm.color = _enum_value(_line_field(line, "color", 0), LANE_COLORS, "color")
        lm.confidence = float(_line_field(line, "confidence", 1.0))
        lm.points = [Point2D(x=float(x), y=float(y)) for x, y in pts]
        msg.lines.append(lm)
    return msg


def msg_to_lane(msg: LaneSegmentation) -> LaneResult:
    """Read a ``LaneSegmentation`` back (embedded mask decoded to HxW uint8, or None if empty)."""
    mask = None
    if msg.class_mask.height and msg.class_mask.width:
        mask = image_to_array(msg.class_mask)[..., 0].copy()
    type_names = {v: k for k, v in LANE_TYPES.items()}
    color_names = {v: k for k, v in LANE_COLORS.items()}
    lines = [
        LaneLineResult(
            points=np.asarray([[p.x, p.y] for p in ln.points], np.float32).reshape(-1, 2),
            type=type_names.get(int(ln.type), "unknown"),
            color=color_names.get(int(ln.color), "unknown"),
            confidence=float(ln.confidence),
            id=int(ln.id),
        )
        for ln in msg.lines
    ]
    return LaneResult(
        class_mask=mask,
        class_names=list(msg.class_names),
        lines=lines,
        class_mask_topic=msg.class_mask_topic,
    )


# ----------------------------------------------------------------------------------- timing


def timing_msg(
    header: Header,
    node: str,
    backend: str,
    preprocess_ms: float,
    inference_ms: float,
    postprocess_ms: float,
    end_to_end_ms: float,
    keyframe: bool = True,
    frames_dropped: int = 0,
) -> FrameTiming:
    """``FrameTiming`` for one processed frame (durations in milliseconds)."""
    return FrameTiming(
        header=copy_header(header),
        node=node,
        backend=backend,
        preprocess_ms=float(preprocess_ms),
        inference_ms=float(inference_ms),
        postprocess_ms=float(postprocess_ms),
        end_to_end_ms=float(end_to_end_ms),
        keyframe=bool(keyframe),
        frames_dropped=max(0, min(int(frames_dropped), 2**32 - 1)),
    )
