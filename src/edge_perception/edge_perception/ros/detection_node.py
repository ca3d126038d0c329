"""``DetectionNode``: RT-DETR object detection on camera images (lifecycle node).

Publishes, with the source image's header (stamp + frame id):

- ``~/detections`` (``vision_msgs/Detection2DArray``) for **every** processed frame, empty arrays
  included; ``ObjectHypothesis.class_id`` is the decimal class index (``"0"``, ``"1"``, ...),
  i.e. ``VisionClass.class_id`` of the ``LabelInfo`` below, and ``Detection2D.id`` the track id
  (``tracking`` on, the default: an integer string that stays with the object across frames;
  only detections of confirmed tracks are published, low-score ones included where they
  continue a track) or ``""`` (``tracking`` off);
- ``~/label_info`` (``vision_msgs/LabelInfo``, transient-local, depth 1, sent on activate): the
  class map and the score threshold, so late subscribers get it too;
- ``~/overlay`` (``sensor_msgs/Image``, when ``overlay`` is true and someone subscribes): the
  camera image with boxes, class names, track ids and scores drawn, coloured by track (by class
  without tracking);
- ``~/markers`` (``visualization_msgs/MarkerArray``, when ``markers`` is true and someone
  subscribes): per detection a box outline and a label in the image plane of the camera frame,
  ``x = u * marker_scale``, ``y = -v * marker_scale`` metres (the picture reads upright in RViz's
  top-down view of the camera frame), coloured like the overlay; a DELETEALL marker starts every
  array;
- ``~/timing`` (``FrameTiming``) and ``/diagnostics`` (from :class:`PerceptionNodeBase`).

Parameters: :class:`DetectionParams` = :class:`edge_perception.config.DetectionNodeConfig`
(``model``, ``backend``, ``precision``, ``score_threshold``, ``max_detections``, ``classes`` =
class filter, ``tracking``, ``track_*``, ...) plus ``decoder_layers``, ``overlay``,
``overlay_encoding``, ``markers`` and
``marker_scale``. A bad value is rejected with the reason (``SetParametersResult.reason``);
``score_threshold``, ``max_detections``, ``classes``, ``track_publish_unconfirmed``, ``overlay*``
and ``marker*`` change live,
the rest applies at the next configure.

Class names come from the model's manifest (``<model>.json`` beside the ``.onnx``,
``class_names``) when it has them, else from the ``class_names`` parameter.

``decoder_layers``: RT-DETR can stop after fewer decoder layers (faster, slightly less accurate),
but an exported graph has its depth baked in (``det-export --eval-layers K``, recorded as the
manifest's ``decoder_layers``). 0 uses the model as exported; K > 0 must equal that depth or
name a sibling export ``<model stem>.dec<K><ext>`` whose manifest says K; anything else fails
configure with the command that creates it.

Run: ``python -m edge_perception.ros.detection_node --ros-args -p model:=models/det_small.onnx``,
then configure and activate it (lifecycle manager, or ``--autostart``). Python 3.8 compatible.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, LabelInfo
from visualization_msgs.msg import Marker, MarkerArray

from edge_perception.backends.factory import create_backend
from edge_perception.config import OVERLAY_ENCODINGS, DetectionNodeConfig
from edge_perception.ros.convert import array_to_image, detections_to_msg, label_info_msg
from edge_perception.ros.node_base import PerceptionNodeBase
from edge_perception.runtime.detection import DetectionPipeline
from edge_perception.runtime.pipeline import FrameOutput, Pipeline
from edge_perception.runtime.results import Detections
from edge_perception.runtime.tracking import track_colour

LABEL_QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
# RGB colour per class index (cycled); distinct on dark and bright scenes.
PALETTE = np.array(
    [
        [255, 64, 64],
        [64, 160, 255],
        [255, 200, 0],
        [200, 64, 255],
        [0, 220, 120],
        [255, 128, 0],
        [0, 230, 230],
        [230, 230, 230],
    ],
    dtype=np.uint8,
)


def _f(default: Any, help_text: str, **rules: Any) -> Any:
    return field(default=default, metadata=dict(rules, help=help_text))


@dataclass
class DetectionParams(DetectionNodeConfig):
    """Detection node parameters: the shared detection config plus output and decoder options."""

    decoder_layers: int = _f(
        0, "RT-DETR decoder layers; 0 = as exported, K = the model's depth or a .decK export",
        min=0, max=64,
    )  # fmt: skip
    overlay: bool = _f(True, "publish ~/overlay (boxes drawn on the camera image)")
    overlay_encoding: str = _f("bgr8", "overlay image encoding", choices=OVERLAY_ENCODINGS)
    markers: bool = _f(True, "publish ~/markers (visualization_msgs/MarkerArray)")
    marker_scale: float = _f(0.01, "marker metres per image pixel", min=1e-6, max=100.0)


# ---------------------------------------------------------------------------------- helpers
def manifest_of(model_path: str) -> Dict[str, Any]:
    """The sidecar ``<model>.json`` of a model as a dict ({} when absent or unreadable)."""
    path = os.path.splitext(model_path)[0] + ".json"
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def decoder_variant(model_path: str, layers: int) -> str:
    """Model file to load for ``decoder_layers=layers`` (see the module docstring).

    Raises ValueError with the reason and the export command when no such model exists.
    """
    if layers == 0:
        return model_path
    baked = manifest_of(model_path).get("decoder_layers")
    if baked == layers:
        return model_path
    stem, ext = os.path.splitext(model_path)
    variant = "%s.dec%d%s" % (stem, layers, ext)
    if os.path.isfile(variant) and manifest_of(variant).get("decoder_layers") == layers:
        return variant
    have = "%s decoder layers" % baked if baked is not None else "no decoder_layers in manifest"
    raise ValueError(
        "decoder_layers=%d: %s has %s and %s does not exist (with a manifest saying %d); "
        "export it with `edge-perception det-export --checkpoint CKPT --eval-layers %d --out %s` "
        "or set decoder_layers:=0" % (layers, model_path, have, variant, layers, layers, variant)
    )


def detection_colour(dets: Detections, i: int) -> Tuple[int, int, int]:
    """RGB colour of detection ``i``: by track id when it has one, else by class."""
    tracks = dets.track_ids
    if tracks is not None and i < len(tracks) and int(tracks[i]) >= 0:
        return track_colour(int(tracks[i]))
    return tuple(int(c) for c in PALETTE[int(dets.labels[i]) % len(PALETTE)])  # type: ignore


def detection_label(dets: Detections, i: int, class_names: Sequence[str]) -> str:
    """``"name score"``, or ``"name #track score"`` for a tracked detection."""
    label = int(dets.labels[i])
    name = class_names[label] if 0 <= label < len(class_names) else str(label)
    track = dets.ids[i] if i < len(dets.ids) else ""
    if track:
        return "%s #%s %.2f" % (name, track, float(dets.scores[i]))
    return "%s %.2f" % (name, float(dets.scores[i]))


def render_detections(rgb: np.ndarray, dets: Detections, class_names: Sequence[str]) -> np.ndarray:
    """RGB copy of ``rgb`` with one box + label per detection, coloured by track (else class)."""
    import cv2

    out = np.ascontiguousarray(rgb.copy())
    h, w = out.shape[:2]
    thick = max(1, int(round(min(h, w) / 240)))
    for i in range(len(dets)):
        x1, y1, x2, y2 = (int(round(float(v))) for v in dets.boxes_xyxy[i])
        colour = detection_colour(dets, i)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
        text = detection_label(dets, i, class_names)
        scale = 0.35 * thick
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else min(h - 1, y1 + th + 2)
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw, ty + base - 1), colour, -1)
        cv2.putText(out, text, (x1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1)
    return out


def detection_markers(
    header: Header, dets: Detections, class_names: Sequence[str], scale: float
) -> MarkerArray:
    """MarkerArray: DELETEALL, then a LINE_STRIP box and a TEXT label per detection."""
    from geometry_msgs.msg import Point

    clear = Marker(header=header, action=Marker.DELETEALL)
    out = MarkerArray(markers=[clear])
    for i in range(len(dets)):
        x1, y1, x2, y2 = (float(v) * scale for v in dets.boxes_xyxy[i])
        r, g, b = (float(c) / 255.0 for c in detection_colour(dets, i))
        box = Marker(header=header, ns="boxes", id=i, type=Marker.LINE_STRIP, action=Marker.ADD)
        box.pose.orientation.w = 1.0
        box.scale.x = max(2.0 * scale, 1e-4)
        box.color.r, box.color.g, box.color.b, box.color.a = r, g, b, 1.0
        corners = ((x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1))
        box.points = [Point(x=x, y=-y, z=0.0) for x, y in corners]
        text = Marker(header=header, ns="labels", id=i, type=Marker.TEXT_VIEW_FACING)
        text.action = Marker.ADD
        text.pose.position.x, text.pose.position.y = x1, -y1 + 8.0 * scale
        text.pose.orientation.w = 1.0
        text.scale.z = 12.0 * scale
        text.color.r, text.color.g, text.color.b, text.color.a = r, g, b, 1.0
        text.text = detection_label(dets, i, class_names)
        out.markers += [box, text]
    return out


# ------------------------------------------------------------------------------------- node
class DetectionNode(PerceptionNodeBase):
    """Detection lifecycle node; see the module docstring."""

    config_class = DetectionParams
    task = "detection"

    def __init__(self, node_name: str = "detection_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.class_names: List[str] = []
        self.model_path = ""
        self.last_count = 0
        self._live: Optional[DetectionParams] = None
        self._pubs: Dict[str, Any] = {}
        self.add_on_set_parameters_callback(self._check_live)

    # ---------------------------------------------------------------- PerceptionNodeBase hooks
    def make_pipeline(self, backend: Any, config: DetectionParams) -> Pipeline:
        path = backend.info.model_path
        wanted = decoder_variant(path, int(config.decoder_layers))
        if wanted != path:
            opts = config.backend_config().options()
            backend.close()
            backend = create_backend(config.backend_config().resolved_kind(), wanted, **opts)
        manifest = manifest_of(wanted)
        names = manifest.get("class_names") or list(config.class_names)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("%s.json: class_names must be a list of strings" % wanted)
        if names != list(config.class_names):
            self.get_logger().info("class names from the model manifest: %s" % names)
        size = tuple(config.input_size) if any(config.input_size) else None
        pipeline = DetectionPipeline(
            backend,
            input_size=size,  # type: ignore[arg-type]
            resize=config.resize,
            interpolation=config.interpolation,
            class_names=names,
            score_threshold=config.score_threshold,
            max_detections=config.max_detections,
            classes=list(config.classes) or None,
            tracker=config.tracker_config(),
            publish_unconfirmed=config.track_publish_unconfirmed,
        )
        self.class_names = list(names)
        self.model_path = wanted
        self._live = config
        return pipeline

    def create_publishers(self, config: DetectionParams) -> None:
        self._pubs = {
            "detections": self.add_publisher(Detection2DArray, "~/detections", 10),
            "label_info": self.add_publisher(LabelInfo, "~/label_info", LABEL_QOS),
            "overlay": self.add_publisher(Image, "~/overlay", 5),
            "markers": self.add_publisher(MarkerArray, "~/markers", 5),
        }

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        if result == TransitionCallbackReturn.SUCCESS:
            self._publish_label_info()
        return result

    def on_parameters_changed(self, config: DetectionParams) -> None:
        pipeline = self.pipeline
        self._live = config
        if isinstance(pipeline, DetectionPipeline):
            pipeline.score_threshold = float(config.score_threshold)
            pipeline.max_detections = int(config.max_detections)
            pipeline.publish_unconfirmed = bool(config.track_publish_unconfirmed)
            names = pipeline.class_names
            pipeline.keep_labels = (
                np.asarray([names.index(c) for c in config.classes], np.int64)
                if config.classes
                else None
            )
            if self._pubs:
                self._publish_label_info(config.score_threshold)

    def publish_results(self, header: Header, output: FrameOutput, rgb: np.ndarray) -> None:
        dets: Detections = output.result
        live = self._live or self.config
        self.last_count = len(dets)
        self._pubs["detections"].publish(
            detections_to_msg(
                header, dets.boxes_xyxy, dets.scores, dets.labels, self.class_names, dets.ids
            )
        )
        overlay = self._pubs["overlay"]
        if live.overlay and overlay.get_subscription_count() > 0:
            img = render_detections(rgb, dets, self.class_names)
            overlay.publish(array_to_image(img, live.overlay_encoding, header))
        markers = self._pubs["markers"]
        if live.markers and markers.get_subscription_count() > 0:
            markers.publish(
                detection_markers(header, dets, self.class_names, float(live.marker_scale))
            )

    def diagnostic_values(self) -> Dict[str, str]:
        values = super().diagnostic_values()
        live = self._live or self.config
        values["classes"] = str(len(self.class_names))
        values["last_detections"] = str(self.last_count)
        if live is not None:
            values["score_threshold"] = "%.3f" % live.score_threshold
            values["decoder_layers"] = str(live.decoder_layers)
        return values

    # ---------------------------------------------------------------- internals
    def _publish_label_info(self, threshold: Optional[float] = None) -> None:
        live = self._live or self.config
        th = float(live.score_threshold if threshold is None else threshold)
        self._pubs["label_info"].publish(label_info_msg(self.class_names, th))

    def _check_live(self, params: List[Any]) -> SetParametersResult:
        """Reject class filters naming classes the loaded model does not have."""
        for p in params:
            if p.name == "classes" and self.class_names:
                unknown = [c for c in (p.value or []) if c not in self.class_names]
                if unknown:
                    return SetParametersResult(
                        successful=False,
                        reason="classes: %s not in the model's classes %s"
                        % (unknown, self.class_names),
                    )
        return SetParametersResult(successful=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console script ``detection_node``; ``--autostart`` configures and activates at start-up,
    ``--help`` prints the parameters (descriptions, defaults, allowed values) and exits."""
    from edge_perception.ros.spin import lifecycle_main

    return lifecycle_main(
        argv,
        "python -m edge_perception.ros.detection_node",
        __doc__,
        DetectionParams,
        DetectionNode,
    )


if __name__ == "__main__":
    sys.exit(main())
