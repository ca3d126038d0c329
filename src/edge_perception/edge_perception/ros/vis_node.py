"""``VisNode``: video instance segmentation (YolactEdge-style keyframes) on camera images.

Runs :class:`~edge_perception.runtime.vis.VISPipeline` on the three exported graphs
``<name>_key``, ``<name>_nonkey`` and ``<name>_head`` (the ``model`` parameter names the key
graph; the others lie beside it and load with the same backend options) and publishes, with the
source image's header:

- ``~/instances`` (``edge_perception_msgs/InstanceArray``) for every processed frame: per
  instance the full-image mask as COCO RLE, box, class id, score, ``track_id`` (persistent across
  frames; only instances of confirmed tracks are published, -1 with ``tracking`` off) and
  ``detection_id`` (the track id as a string, as ``Detection2D.id``); ``keyframe`` says whether
  the frame took the full (keyframe) path;
- ``~/detections`` (``vision_msgs/Detection2DArray``): the same instances as boxes,
  ``Detection2D.id`` = track id (``""`` without tracking);
- ``~/label_info`` (``vision_msgs/LabelInfo``, transient-local, sent on activate and on a threshold
  change);
- ``~/overlay`` (``sensor_msgs/Image``, when ``overlay`` is true and someone subscribes): masks
  blended in per-track colours (:func:`~edge_perception.runtime.tracking.track_colour`), boxes and
  ``class #track score`` labels;
- ``~/id_mask`` (``sensor_msgs/Image`` mono16, when ``id_mask`` is true and someone subscribes):
  per pixel the track id of the instance there (0 = none; the higher score wins overlaps);
- ``~/timing`` (``FrameTiming`` with ``keyframe``) and ``/diagnostics`` with the key-frame ratio,
  per-graph and per-path mean milliseconds (key path = key + head, non-key = nonkey + head) and
  the last keyframe reason.

Keyframes follow :class:`~edge_perception.vis.keyframe.KeyframePolicy` on the image stamps
(``keyframe_interval``, ``max_keyframe_age_s``, ``max_stamp_gap_s``, ``max_mean_flow_px``,
``max_lost_tracks``); a new camera size or time going back resets the video state.
Thresholds, class filter, keyframe settings and outputs change live; the model, backend and
tracker weights at the next configure.

Class names come from the key graph's manifest (``<name>_key.json``, ``class_names``) when it
has them, else from the ``class_names`` parameter.

Run: ``python -m edge_perception.ros.vis_node --ros-args -p model:=models/vis_small_key.onnx``,
then configure and activate it (lifecycle manager, or ``--autostart``). Python 3.8 compatible.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, LabelInfo

from edge_perception.config import OVERLAY_ENCODINGS, VisNodeConfig
from edge_perception.ros.convert import (
    array_to_image,
    detections_to_msg,
    instances_to_msg,
    label_info_msg,
    stamp_to_ns,
)
from edge_perception.ros.detection_node import LABEL_QOS, PALETTE, manifest_of
from edge_perception.ros.node_base import PerceptionNodeBase, resolve_model_path
from edge_perception.runtime.pipeline import FrameOutput, Pipeline
from edge_perception.runtime.results import Instances
from edge_perception.runtime.tracking import track_colour
from edge_perception.runtime.vis import VISPipeline, model_mask_margin, open_vis_graph
from edge_perception_msgs.msg import InstanceArray


def _f(default: Any, help_text: str, **rules: Any) -> Any:
    return field(default=default, metadata=dict(rules, help=help_text))


@dataclass
class VisParams(VisNodeConfig):
    """VIS node parameters: the shared VIS config plus the outputs."""

    overlay: bool = _f(True, "publish ~/overlay (masks, boxes, track ids on the camera image)")
    overlay_encoding: str = _f("bgr8", "overlay image encoding", choices=OVERLAY_ENCODINGS)
    overlay_alpha: float = _f(0.5, "overlay opacity of the masks", min=0.0, max=1.0)
    id_mask: bool = _f(False, "publish ~/id_mask (mono16, pixel = track id, 0 = none)")


# ---------------------------------------------------------------------------------- helpers
def instance_colour(inst: Instances, i: int) -> Any:
    """RGB colour of instance ``i``: by track id when it has one, else by class."""
    t = int(inst.track_ids[i]) if i < len(inst.track_ids) else -1
    if t >= 0:
        return track_colour(t)
    return tuple(int(c) for c in PALETTE[int(inst.labels[i]) % len(PALETTE)])


def render_instances(
    rgb: np.ndarray, inst: Instances, class_names: Sequence[str], alpha: float = 0.5
) -> np.ndarray:
    """RGB copy of ``rgb`` with every mask blended in its track colour, plus box and label."""
    import cv2

    out = np.ascontiguousarray(rgb.copy())
    h, w = out.shape[:2]
    thick = max(1, int(round(min(h, w) / 240)))
    masks = inst.masks if inst.masks is not None else np.zeros((0, h, w), bool)
    for i in range(len(inst)):
        colour = np.asarray(instance_colour(inst, i), np.float32)
        m = masks[i]
        if m.any():
            out[m] = (out[m] * (1.0 - alpha) + colour * alpha).astype(np.uint8)
    for i in range(len(inst)):
        colour = tuple(int(c) for c in instance_colour(inst, i))
        x1, y1, x2, y2 = (int(round(float(v))) for v in inst.boxes_xyxy[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
        label = int(inst.labels[i])
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        track = inst.ids[i] if i < len(inst.ids) else ""
        text = "%s%s %.2f" % (name, " #" + track if track else "", float(inst.scores[i]))
        scale = 0.35 * thick
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else min(h - 1, y1 + th + 2)
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw, ty + base - 1), colour, -1)
        cv2.putText(out, text, (x1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1)
    return out


def id_mask_image(inst: Instances, hw: Sequence[int]) -> np.ndarray:
    """HxW uint16: per pixel the track id of the instance covering it (0 = none; instances are
    painted lowest score first, so the higher score wins an overlap)."""
    out = np.zeros((int(hw[0]), int(hw[1])), np.uint16)
    if inst.masks is None:
        return out
    for i in np.argsort(inst.scores, kind="stable"):
        t = int(inst.track_ids[i])
        if t > 0:
            out[inst.masks[i]] = min(t, 65535)
    return out


def _ms(v: float) -> str:
    return "nan" if isinstance(v, float) and math.isnan(v) else "%.2f" % v


# ------------------------------------------------------------------------------------- node
class VisNode(PerceptionNodeBase):
    """Video instance segmentation lifecycle node; see the module docstring."""

    config_class = VisParams
    task = "vis"

    def __init__(self, node_name: str = "vis_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.class_names: List[str] = []
        self.last_count = 0
        self._live: Optional[VisParams] = None
        self._pubs: Dict[str, Any] = {}

    # ---------------------------------------------------------------- PerceptionNodeBase hooks
    def open_backend(
        self, kind: str, model: str, options: Dict[str, Any], config: VisParams
    ) -> Any:
        """The key graph's backend; with ONNX Runtime and ``fuse_head`` the key graph fused
        with the head graph (``runtime.vis.open_vis_graph``)."""
        return open_vis_graph(kind, model, "key", config.fuse_head, **options)

    def make_pipeline(self, backend: Any, config: VisParams) -> Pipeline:
        # The configured file, not backend.info.model_path: TensorRT reports its cached engine.
        key_path = resolve_model_path(config.model)
        bcfg = config.backend_config()
        kind, opts = backend.info.kind, bcfg.options()
        if kind == "pytorch":
            opts.setdefault("task", self.task)
        others: Dict[str, Any] = {}
        try:
            for graph in ("nonkey", "head"):  # the head None when fused into the others
                others[graph] = open_vis_graph(kind, key_path, graph, config.fuse_head, **opts)
            manifest = manifest_of(key_path)
            names = manifest.get("class_names") or list(config.class_names)
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError("%s.json: class_names must be a list of strings" % key_path)
            if names != list(config.class_names):
                self.get_logger().info("class names from the model manifest: %s" % names)
            size = tuple(config.input_size) if any(config.input_size) else None
            pipeline = VISPipeline(
                backend,
                others["nonkey"],
                others["head"],
                input_size=size,  # type: ignore[arg-type]
                resize=config.resize,
                interpolation=config.interpolation,
                class_names=names,
                score_threshold=config.score_threshold,
                max_detections=config.max_detections,
                classes=list(config.classes) or None,
                mask_threshold=config.mask_threshold,
                mask_margin=model_mask_margin(key_path, manifest),
                keyframes=config.keyframe_config(),
                tracker=config.tracker_config(),
                publish_unconfirmed=config.track_publish_unconfirmed,
            )
        except Exception:
            for b in others.values():
                if b is not None:
                    b.close()
            raise
        self.class_names = list(names)
        self._live = config
        return pipeline

    def create_publishers(self, config: VisParams) -> None:
        self._pubs = {
            "instances": self.add_publisher(InstanceArray, "~/instances", 10),
            "detections": self.add_publisher(Detection2DArray, "~/detections", 10),
            "label_info": self.add_publisher(LabelInfo, "~/label_info", LABEL_QOS),
            "overlay": self.add_publisher(Image, "~/overlay", 5),
            "id_mask": self.add_publisher(Image, "~/id_mask", 5),
        }

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        if result == TransitionCallbackReturn.SUCCESS:
            self._publish_label_info()
        return result

    def on_parameters_changed(self, config: VisParams) -> None:
        pipeline = self.pipeline
        old = self._live
        self._live = config
        if not isinstance(pipeline, VISPipeline):
            return
        pipeline.score_threshold = float(config.score_threshold)
        pipeline.max_detections = int(config.max_detections)
        pipeline.publish_unconfirmed = bool(config.track_publish_unconfirmed)
        pipeline.mask_threshold = float(config.mask_threshold)
        names = pipeline.class_names
        unknown = [c for c in config.classes if c not in names]
        if unknown:
            self.get_logger().warning(
                "classes %s not in the model's %s: ignored" % (unknown, names)
            )
        keep = [names.index(c) for c in config.classes if c in names]
        pipeline.keep_labels = np.asarray(keep, np.int64) if keep else None
        kf = config.keyframe_config()
        for name in ("keyframe_interval", "max_keyframe_age_s", "max_stamp_gap_s"):
            setattr(pipeline.policy.config, name, getattr(kf, name))
        pipeline.policy.config.max_mean_flow_px = kf.max_mean_flow_px
        pipeline.policy.config.max_lost_tracks = kf.max_lost_tracks
        if self._pubs and (old is None or old.score_threshold != config.score_threshold):
            self._publish_label_info(config.score_threshold)

    def _process(self, msg: Any, received: float) -> None:
        pipeline = self.pipeline
        if isinstance(pipeline, VISPipeline):
            pipeline.set_stamp(stamp_to_ns(msg.header.stamp) / 1e9)
        super()._process(msg, received)

    def publish_results(self, header: Header, output: FrameOutput, rgb: np.ndarray) -> None:
        inst: Instances = output.result
        live = self._live or self.config
        self.last_count = len(inst)
        hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        masks = inst.masks if inst.masks is not None else np.zeros((0,) + hw, bool)
        self._pubs["instances"].publish(
            instances_to_msg(
                header,
                hw,
                masks,
                inst.scores,
                inst.labels,
                boxes_xyxy=inst.boxes_xyxy,
                track_ids=inst.track_ids,
                ids=inst.ids,
                keyframe=output.keyframe,
            )
        )
        self._pubs["detections"].publish(
            detections_to_msg(
                header, inst.boxes_xyxy, inst.scores, inst.labels, self.class_names, inst.ids
            )
        )
        overlay = self._pubs["overlay"]
        if live.overlay and overlay.get_subscription_count() > 0:
            img = render_instances(rgb, inst, self.class_names, float(live.overlay_alpha))
            overlay.publish(array_to_image(img, live.overlay_encoding, header))
        id_pub = self._pubs["id_mask"]
        if live.id_mask and id_pub.get_subscription_count() > 0:
            id_pub.publish(array_to_image(id_mask_image(inst, hw), "mono16", header))

    def diagnostic_values(self) -> Dict[str, str]:
        values = super().diagnostic_values()
        live = self._live or self.config
        values["classes"] = str(len(self.class_names))
        values["last_instances"] = str(self.last_count)
        if live is not None:
            values["score_threshold"] = "%.3f" % live.score_threshold
        pipeline = self.pipeline
        if isinstance(pipeline, VISPipeline):
            stats = pipeline.path_stats.as_dict()
            values["key_frames"] = str(int(stats["key_frames"]))
            values["nonkey_frames"] = str(int(stats["nonkey_frames"]))
            ratio = stats["key_ratio"]
            values["key_ratio"] = "nan" if math.isnan(ratio) else "%.3f" % ratio
            for k in ("key_ms", "nonkey_ms", "head_ms", "key_path_ms", "nonkey_path_ms"):
                values[k] = _ms(stats[k])
            if pipeline.head_backend is None:  # its time is inside key_ms / nonkey_ms
                values["head_ms"] = "fused"
            values["last_keyframe_reason"] = pipeline.last_reason
        return values

    # ---------------------------------------------------------------- internals
    def _publish_label_info(self, threshold: Optional[float] = None) -> None:
        live = self._live or self.config
        th = float(live.score_threshold if threshold is None else threshold)
        self._pubs["label_info"].publish(label_info_msg(self.class_names, th))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console script ``vis_node``; ``--autostart`` configures and activates at start-up,
    ``--help`` prints the parameters (descriptions, defaults, allowed values) and exits."""
    from edge_perception.ros.spin import lifecycle_main

    return lifecycle_main(
        argv, "python -m edge_perception.ros.vis_node", __doc__, VisParams, VisNode
    )


if __name__ == "__main__":
    sys.exit(main())
