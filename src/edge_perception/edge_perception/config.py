"""Typed, validated configuration of backends and perception nodes (ROS-free).

Node configs are *flat* dataclasses whose field names are the ROS parameter names, so one YAML
file serves both ``load_config`` and a ROS ``--params-file`` (the ``node: {ros__parameters: ...}``
wrapping is accepted). Each field's ``metadata`` carries its rules (``choices``, ``min``, ``max``,
``length``) and a ``help`` text that :mod:`edge_perception.ros.params` turns into parameter
descriptors. Unknown keys and bad values raise ``ValueError`` naming the key and what is allowed.

Python 3.8 compatible.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional, Type, TypeVar, Union

BACKEND_KINDS = ("onnxruntime", "pytorch", "tensorrt", "auto")
PRECISIONS = ("fp32", "fp16", "int8")
GRAPH_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
QOS_PROFILES = ("sensor_data", "reliable")
OUTPUT_RELIABILITY = ("reliable", "best_effort")
INPUT_TRANSPORTS = ("raw", "compressed")  # image_transport names
RESIZE_MODES = ("stretch", "letterbox")
INTERPOLATIONS = ("area", "linear")
PROVIDER_NAMES = ("auto", "tensorrt", "cuda", "cpu")
OVERLAY_ENCODINGS = ("bgr8", "rgb8")
LINE_EXTEND = 3.0  # lane lines: continuation below the lowest traced row, x traced height

LANE_CLASS_NAMES = ["background", "drivable", "lane_solid", "lane_dashed"]
OBJECT_CLASS_NAMES = ["car", "truck", "bus", "motorcycle", "bicycle", "pedestrian", "traffic_sign"]


def _f(default: Any, help: str, **rules: Any) -> Any:  # noqa: A002 - 'help' reads best here
    """A dataclass field with validation rules and help text in its metadata."""
    meta = dict(rules, help=help)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RuntimeOptions:
    """How a backend runs a model: the fields BackendConfig and every node's config share (their
    names are the ROS parameter names)."""

    precision: str = _f("fp32", "numeric precision", choices=PRECISIONS)
    threads: int = _f(0, "intra-op CPU threads (0 = library default)", min=0, max=256)
    inter_op_threads: int = _f(0, "inter-op CPU threads (0 = library default)", min=0, max=256)
    graph_optimization: str = _f(
        "all", "ONNX Runtime graph optimisation level", choices=GRAPH_OPTIMIZATION_LEVELS
    )
    providers: List[str] = _f(
        ["auto"],
        "ONNX Runtime execution providers: [auto] or a list of tensorrt, cuda, cpu",
        item_choices=PROVIDER_NAMES,
    )
    device: str = _f("cpu", "PyTorch device (cpu, cuda, cuda:N)")
    trt_policy: str = _f(
        "", "TensorRT per-component precision policy: preset (lane, rtdetr, yolact) or YAML file"
    )
    dla_core: int = _f(-1, "TensorRT DLA core (-1 = GPU only)", min=-1, max=1)
    build_engine: bool = _f(True, "TensorRT: build the engine when missing or stale")
    engine_cache_dir: str = _f("", "TensorRT engine folder ('' = beside the model)")


@dataclass
class BackendConfig(RuntimeOptions):
    """How to load the model (see :func:`edge_perception.backends.factory.create_backend`)."""

    kind: str = _f("onnxruntime", "inference backend", choices=BACKEND_KINDS)
    model: str = _f("", "model file (.onnx, .engine, .pt/.ts)")

    def validate(self) -> BackendConfig:
        validate_fields(self)
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device: {self.device!r} is not cpu, cuda or cuda:N")
        return self

    def resolved_kind(self) -> str:
        """``kind``, with ``auto`` resolved from the model's file extension."""
        if self.kind != "auto":
            return self.kind
        from edge_perception.backends.factory import kind_for_path

        return kind_for_path(self.model)

    def options(self) -> Dict[str, Any]:
        """Keyword options for ``create_backend`` of the resolved kind."""
        kind = self.resolved_kind()
        if kind == "onnxruntime":
            return {
                "intra_op_threads": self.threads,
                "inter_op_threads": self.inter_op_threads,
                "graph_optimization": self.graph_optimization,
                "providers": "auto" if self.providers in ([], ["auto"]) else list(self.providers),
                "precision": self.precision,
            }
        if kind == "pytorch":
            return {"device": self.device, "precision": self.precision, "threads": self.threads}
        if kind == "tensorrt":
            return {
                "precision": self.precision,
                "policy": self.trt_policy,
                "dla_core": self.dla_core,
                "build_if_missing": self.build_engine,
                "cache_dir": self.engine_cache_dir,
            }
        return {}


@dataclass
class NodeConfig(RuntimeOptions):
    """Parameters every perception node shares (the ROS parameter names)."""

    model: str = _f("", "model file; relative paths are tried under the package's models/")
    backend: str = _f("onnxruntime", "inference backend", choices=BACKEND_KINDS)
    input_topic: str = _f("image", "sensor_msgs/Image topic to subscribe to")
    input_transport: str = _f(
        "raw",
        "raw: sensor_msgs/Image on input_topic; compressed: sensor_msgs/CompressedImage (JPEG / "
        "PNG, decoded by OpenCV) on input_topic + '/compressed' (image_transport's naming)",
        choices=INPUT_TRANSPORTS,
    )
    input_size: List[int] = _f(
        [0, 0],
        "model input [height, width]; [0, 0] = read it from the model",
        length=2,
        min=0,
        item=int,
    )
    resize: str = _f("stretch", "how camera frames are fitted to the input", choices=RESIZE_MODES)
    interpolation: str = _f(
        "linear",
        "image resize: linear (fast) or area (as in training, ~1.3 ms slower at 640x480; "
        "linear costs the bundled models 0.1 point)",
        choices=INTERPOLATIONS,
    )
    qos: str = _f(
        "sensor_data", "subscription QoS (best effort or reliable)", choices=QOS_PROFILES
    )
    output_qos: str = _f(
        "reliable",
        "reliability of the result publishers (timing, masks, lanes, detections, overlays, "
        "markers; label_info stays reliable + transient local); applies at configure",
        choices=OUTPUT_RELIABILITY,
    )
    output_depth: int = _f(
        0,
        "history depth of the result publishers (0 = each topic's own: 5, timing and "
        "detections 10); applies at configure",
        min=0,
        max=1000,
    )
    diagnostics_period: float = _f(1.0, "seconds between /diagnostics messages", min=0.05)
    warmup_runs: int = _f(1, "inference runs on zeros at configure time", min=0, max=100)
    diagnostics_window: float = _f(
        10.0,
        "seconds of history behind the /diagnostics level and input rate; also the least time "
        "between two log lines about one kind of bad input",
        min=0.5,
        max=3600.0,
    )
    min_input_rate: float = _f(
        0.0, "input frames/s below which /diagnostics is WARN while active (0 = off)", min=0.0
    )
    stall_timeout: float = _f(
        5.0,
        "seconds without an input frame after which an active node is ERROR (0 = off)",
        min=0.0,
    )
    max_stamp_age: float = _f(
        10.0,
        "frames stamped older than this (s, node clock) are processed but left out of the "
        "latency statistics (0 = no limit)",
        min=0.0,
    )
    future_stamp_tolerance: float = _f(
        0.5,
        "camera-to-node clock skew allowed (s): frames stamped further ahead are processed but "
        "left out of the latency statistics",
        min=0.0,
    )

    def backend_config(self) -> BackendConfig:
        shared = {f.name: copy.copy(getattr(self, f.name)) for f in fields(RuntimeOptions)}
        return BackendConfig(kind=self.backend, model=self.model, **shared).validate()

    def validate(self) -> NodeConfig:
        validate_fields(self)
        if not self.input_topic.strip():
            raise ValueError("input_topic: must not be empty")
        self.backend_config()
        return self


@dataclass
class LaneNodeConfig(NodeConfig):
    """Lane segmentation node parameters."""

    model: str = _f("lane_small.onnx", "lane model file (.onnx, .engine, .pt/.ts)")
    class_names: List[str] = _f(LANE_CLASS_NAMES, "mask value -> class name")
    overlay: bool = _f(True, "publish a colour overlay image for RViz")
    overlay_encoding: str = _f("bgr8", "overlay image encoding", choices=OVERLAY_ENCODINGS)
    overlay_alpha: float = _f(0.5, "overlay opacity of the class colours", min=0.0, max=1.0)
    lines: bool = _f(True, "extract lane-line polylines (edge_perception.lane.postprocess)")
    line_row_step: int = _f(
        2,
        "trace lane lines on every Nth mask row (2: 30 % cheaper, same polyline F1)",
        min=1,
        max=8,
    )
    line_extend: float = _f(
        LINE_EXTEND,
        "continue a lane line below its lowest traced row, up to this many times its traced "
        "height (0 = off)",
        min=0.0,
        max=20.0,
    )
    embed_mask: bool = _f(False, "also embed the class mask in the LaneSegmentation message")


@dataclass
class DetectionNodeConfig(NodeConfig):
    """Detection node parameters."""

    model: str = _f("det_small.onnx", "detection model file (.onnx, .engine, .pt/.ts)")
    class_names: List[str] = _f(OBJECT_CLASS_NAMES, "label index -> class name")
    score_threshold: float = _f(0.5, "minimum detection score", min=0.0, max=1.0)
    max_detections: int = _f(100, "keep at most this many detections", min=1, max=10000)
    classes: List[str] = _f([], "class names to keep; [] keeps all")
    tracking: bool = _f(
        True,
        "track objects across frames (ByteTrack-style): Detection2D.id = a persistent track id; "
        "off: id empty",
    )
    track_low_threshold: float = _f(
        0.1,
        "tracking: detections from this score up may continue a track (only those at or above "
        "score_threshold start one)",
        min=0.0,
        max=1.0,
    )
    track_birth_margin: float = _f(
        0.1,
        "tracking: a new track needs a score of score_threshold + this (ByteTrack: 0.1)",
        min=0.0,
        max=1.0,
    )
    track_buffer: int = _f(30, "tracking: frames a lost track is kept", min=0, max=100000)
    track_min_hits: int = _f(
        2,
        "tracking: frames in a row before a new track is published (1 = at once; the first "
        "frame of a stream always at once)",
        min=1,
        max=100,
    )

    track_publish_unconfirmed: bool = _f(
        True,
        "tracking: also publish detections at or above score_threshold that hold no confirmed "
        "track yet (empty id); false publishes confirmed tracks only",
    )

    def tracker_config(self) -> Any:
        """The tracker settings (``runtime.tracking.TrackerConfig``); None without tracking."""
        if not self.tracking:
            return None
        from edge_perception.runtime.tracking import TrackerConfig

        return TrackerConfig(
            high_threshold=self.score_threshold,
            new_track_threshold=min(1.0, self.score_threshold + self.track_birth_margin),
            low_threshold=min(self.track_low_threshold, self.score_threshold),
            max_lost=self.track_buffer,
            min_hits=self.track_min_hits,
        ).validate()

    def validate(self) -> DetectionNodeConfig:
        super().validate()
        unknown = [c for c in self.classes if c not in self.class_names]
        if unknown:
            raise ValueError(f"classes: unknown {unknown}; allowed: {self.class_names}")
        return self


@dataclass
class VisNodeConfig(DetectionNodeConfig):
    """Video instance segmentation node parameters: the detection fields (thresholds, class
    filter, tracking) plus masks, keyframe policy and appearance terms of the tracker."""

    model: str = _f(
        "vis_small_key.onnx",
        "VIS keyframe graph <name>_key.onnx (<name>_nonkey / <name>_head beside it, same kind)",
    )
    mask_threshold: float = _f(0.5, "mask probability threshold", min=0.01, max=0.99)
    fuse_head: bool = _f(
        True,
        "ONNX Runtime: run the head graph inside the key / non-key sessions (one call per frame; "
        "bench/vis_speed.md); TensorRT and PyTorch always run the three graphs",
    )
    keyframe_interval: int = _f(
        5, "a keyframe every N frames at most (1 = every frame: image mode)", min=1, max=1000
    )
    max_keyframe_age_s: float = _f(
        0.5, "a keyframe when the last one is older than this (camera time; 0 = off)", min=0.0
    )
    max_stamp_gap_s: float = _f(
        0.25, "a keyframe after a gap between frame stamps above this (0 = off)", min=0.0
    )
    # chosen on the tuning splits (data/trk_tune at 10 Hz, data/trk_tune30 at 30 Hz; not val:
    # bench/results/vis_keyframe_tune.md) for the bundled model: 12 px is the most accurate at
    # 30 Hz and 0.4 point below 8 px at 10 Hz with 8 % fewer keyframes; 16 lost 1.2 / 1.1 points,
    # off 7.2 / 1.8
    max_mean_flow_px: float = _f(
        12.0, "a keyframe after a non-keyframe whose mean flow exceeded this (px; 0 = off)",
        min=0.0,
    )  # fmt: skip
    max_lost_tracks: int = _f(
        2, "a keyframe after a frame that lost this many tracks (0 = off)", min=0, max=1000
    )
    # chosen on a tuning split (bench/vis_tracker_tune.py on data/trk_tune, not on val):
    # appearance 0.2 / mask IoU 0 led HOTA and IDF1; mask IoU added nothing over the box IoU
    track_appearance_weight: float = _f(
        0.2, "tracking: weight of the query-embedding cosine similarity", min=0.0, max=1.0
    )
    track_mask_iou_weight: float = _f(
        0.0, "tracking: weight of the mask IoU with the track's last mask", min=0.0, max=1.0
    )

    def keyframe_config(self) -> Any:
        """The keyframe policy settings (``vis.keyframe.KeyframePolicyConfig``)."""
        from edge_perception.vis.keyframe import KeyframePolicyConfig

        return KeyframePolicyConfig(
            keyframe_interval=self.keyframe_interval,
            max_keyframe_age_s=self.max_keyframe_age_s or None,
            max_stamp_gap_s=self.max_stamp_gap_s or None,
            max_mean_flow_px=self.max_mean_flow_px or None,
            max_lost_tracks=self.max_lost_tracks,
        )

    def tracker_config(self) -> Any:
        """The detection node's tracker settings plus embedding and mask-IoU weights."""
        cfg = super().tracker_config()
        if cfg is None:
            return None
        cfg.appearance_weight = self.track_appearance_weight
        cfg.custom_weight = self.track_mask_iou_weight
        return cfg.validate()

    def validate(self) -> VisNodeConfig:
        super().validate()
        if self.track_appearance_weight + self.track_mask_iou_weight > 1.0:
            raise ValueError(
                "track_appearance_weight + track_mask_iou_weight must not exceed 1, got "
                f"{self.track_appearance_weight} + {self.track_mask_iou_weight}"
            )
        return self


C = TypeVar("C")


def field_rules(cls: Any) -> Dict[str, Dict[str, Any]]:
    """``name -> metadata`` (choices/min/max/length/help) of a config dataclass."""
    return {f.name: dict(f.metadata) for f in dataclasses.fields(cls)}


def _type_of(f: dataclasses.Field) -> type:
    if f.default is not dataclasses.MISSING:
        return type(f.default)
    return type(f.default_factory())  # type: ignore[operator]


def allowed_text(cls: Any, name: str) -> str:
    """What field ``name`` of config ``cls`` accepts, in words (``an integer in 0..256``)."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    rules, kind = f.metadata, _type_of(f)
    if kind is list:
        item = rules.get("item", str)
        what = "integers" if item is int else "strings"
        if "item_choices" in rules:
            what += " from {" + ", ".join(str(c) for c in rules["item_choices"]) + "}"
        count = "%d " % rules["length"] if "length" in rules else ""
        return "a list of %s%s%s" % (count, what, _range_text(rules))
    if "choices" in rules:
        return "one of: " + ", ".join(str(c) for c in rules["choices"])
    if kind is bool:
        return "true or false"
    if kind is int:
        return "an integer" + _range_text(rules)
    if kind is float:
        return "a number" + _range_text(rules)
    return "a string"


def _range_text(rules: Mapping[str, Any]) -> str:
    if "min" in rules and "max" in rules:
        return " in %s..%s" % (rules["min"], rules["max"])
    if "min" in rules:
        return " >= %s" % rules["min"]
    if "max" in rules:
        return " <= %s" % rules["max"]
    return ""


def check_value(cls: Any, name: str, value: Any) -> Any:
    """Validate (and normalise) one value for field ``name``; ValueError says what is allowed.

    The message is one line: the parameter, the value and what is allowed (type and range).
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise ValueError(f"unknown key {name!r}; allowed keys: {sorted(fields)}")
    try:
        return _check_value(cls, fields[name], value)
    except ValueError as exc:
        rules = fields[name].metadata
        if "choices" in rules or "item_choices" in rules:
            choices = list(rules.get("choices", rules.get("item_choices", [])))
            raise ValueError(f"{exc}; allowed values: {choices}") from None
        raise ValueError(f"{exc}; allowed: {allowed_text(cls, name)}") from None


def _check_value(cls: Any, f: dataclasses.Field, value: Any) -> Any:
    name = f.name
    rules = f.metadata
    kind = _type_of(f)
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected true or false, got {value!r}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        value = float(value)
    elif kind is str:
        if not isinstance(value, str):
            raise ValueError(f"{name}: expected a string, got {value!r}")
    elif kind is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name}: expected a list, got {value!r}")
        value = list(value)
    items = value if isinstance(value, list) else [value]
    if kind is list:
        item = rules.get("item", str)
        if any(isinstance(v, bool) or not isinstance(v, item) for v in items):
            raise ValueError(f"{name}: expected a list of {item.__name__}, got {value!r}")
        bad = [v for v in items if "item_choices" in rules and v not in rules["item_choices"]]
        if bad:
            raise ValueError(f"{name}: {bad} not allowed")
    if "choices" in rules and value not in rules["choices"]:
        raise ValueError(f"{name}: {value!r} is not allowed")
    if "length" in rules and len(items) != rules["length"]:
        raise ValueError(f"{name}: expected {rules['length']} values, got {len(items)}")
    for v in items:
        if "min" in rules and (not isinstance(v, (int, float)) or v < rules["min"]):
            raise ValueError(f"{name}: {v!r} is below the minimum {rules['min']}")
        if "max" in rules and isinstance(v, (int, float)) and v > rules["max"]:
            raise ValueError(f"{name}: {v!r} is above the maximum {rules['max']}")
    return value


def validate_fields(cfg: Any) -> None:
    """Check every field of a config instance against its rules (ValueError on the first bad)."""
    for f in dataclasses.fields(cfg):
        setattr(cfg, f.name, check_value(type(cfg), f.name, getattr(cfg, f.name)))


def config_from_dict(cls: Type[C], data: Mapping[str, Any]) -> C:
    """Build and validate a config of type ``cls`` from a flat mapping (defaults fill gaps)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"configuration must be a mapping, got {type(data).__name__}")
    values = {str(k): check_value(cls, str(k), v) for k, v in data.items()}
    cfg = cls(**values)
    return cfg.validate()  # type: ignore[attr-defined]


def _unwrap_ros(data: Mapping[str, Any], node: Optional[str]) -> Mapping[str, Any]:
    if "ros__parameters" in data:
        return data["ros__parameters"] or {}
    nested = {k: v for k, v in data.items() if isinstance(v, Mapping) and "ros__parameters" in v}
    if nested:
        if node is not None:
            for k, v in nested.items():
                if k.strip("/").split("/")[-1] == node or k in ("/**", "**"):
                    return v["ros__parameters"] or {}
            raise ValueError(f"no parameters for node {node!r}; nodes in file: {sorted(nested)}")
        if len(nested) == 1:
            return next(iter(nested.values()))["ros__parameters"] or {}
        raise ValueError(f"several nodes in the file ({sorted(nested)}); name one")
    return data


def load_config(
    cls: Type[C], source: Union[str, os.PathLike, Mapping[str, Any]], node: Optional[str] = None
) -> C:
    """Load a config from a YAML file (flat or ROS ``node: {ros__parameters: ...}``) or a dict."""
    if isinstance(source, Mapping):
        data: Any = source
    else:
        import yaml

        path = os.fspath(source)
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except OSError as exc:
            raise ValueError(f"cannot read configuration {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ValueError(f"configuration {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ValueError(f"configuration {path} must hold a mapping")
    return config_from_dict(cls, _unwrap_ros(data, node))


def config_to_dict(cfg: Any) -> Dict[str, Any]:
    """Flat dict of a config (YAML-serialisable)."""
    return dataclasses.asdict(cfg)
