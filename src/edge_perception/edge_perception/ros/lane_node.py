"""``LaneSegmentationNode``: lane segmentation on camera images (lifecycle node).

Publishes, with the source image's stamp and frame id:

- ``~/class_mask`` (``sensor_msgs/Image`` mono8): one lane class index per camera pixel;
- ``~/lanes`` (``edge_perception_msgs/LaneSegmentation``): class names, lane-line polylines, the
  mask's topic (and the mask itself when ``embed_mask`` is true);
- ``~/overlay`` (``sensor_msgs/Image`` bgr8 or rgb8, when ``overlay`` is true and the topic has
  a subscriber): the camera image with the classes tinted and lines drawn, for RViz;
- ``~/timing`` (``FrameTiming``) and ``/diagnostics`` (from :class:`PerceptionNodeBase`).

Parameters: :class:`edge_perception.config.LaneNodeConfig` (``model``, ``backend``,
``precision``, ``input_topic``, ``input_size``, ``threads``, ``overlay``, ``qos``, ...).
``overlay``, ``overlay_alpha`` and ``overlay_encoding`` change live; the rest at configure.

Run: ``python -m edge_perception.ros.lane_node --ros-args -p model:=models/lane_small.onnx``, then
configure and activate it (lifecycle manager, or ``--autostart``).
Python 3.8 compatible.
"""

from __future__ import annotations

import sys
from typing import Any, Optional, Sequence

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from edge_perception.config import LaneNodeConfig
from edge_perception.ros.convert import array_to_image, lane_to_msg
from edge_perception.ros.node_base import PerceptionNodeBase
from edge_perception.runtime.lane import LanePipeline
from edge_perception.runtime.pipeline import FrameOutput, Pipeline
from edge_perception.runtime.results import LaneResult
from edge_perception_msgs.msg import LaneSegmentation

# RGB tint per class index (background untouched); matches the dataset's PNG palette.
LANE_PALETTE = np.array(
    [[0, 0, 0], [128, 64, 128], [255, 255, 255], [255, 200, 0]], dtype=np.uint8
)
LINE_COLOURS = {"solid": (0, 255, 0), "dashed": (0, 200, 255), "double": (255, 0, 255)}


def render_overlay(rgb: np.ndarray, result: LaneResult, alpha: float = 0.5) -> np.ndarray:
    """RGB image with non-background classes blended in and lane lines drawn on top."""
    import cv2

    mask = result.class_mask
    if mask is None or not mask.any():
        out = rgb.copy()
    else:
        # 256-entry colour table: class indices past the palette reuse its last colour.
        lut = np.empty((1, 256, 3), np.uint8)
        lut[0, : len(LANE_PALETTE)] = LANE_PALETTE
        lut[0, len(LANE_PALETTE) :] = LANE_PALETTE[-1]
        tint = cv2.LUT(cv2.cvtColor(mask, cv2.COLOR_GRAY2RGB), lut)
        blended = cv2.addWeighted(rgb, 1.0 - float(alpha), tint, float(alpha), 0.0)
        out = rgb.copy()
        if hasattr(cv2, "copyTo"):  # OpenCV >= 4.1
            cv2.copyTo(blended, (mask > 0).view(np.uint8), out)
        else:  # pragma: no cover - older OpenCV
            np.copyto(out, blended, where=(mask > 0)[..., None])
    if result.lines:
        for line in result.lines:
            pts = np.round(np.asarray(line.points, np.float32)).astype(np.int32).reshape(-1, 1, 2)
            if len(pts) >= 2:
                colour = LINE_COLOURS.get(str(line.type), (255, 0, 0))
                cv2.polylines(out, [pts], False, colour, 2, cv2.LINE_AA)
    return out


class LaneSegmentationNode(PerceptionNodeBase):
    """Lane segmentation lifecycle node; see the module docstring."""

    config_class = LaneNodeConfig
    task = "lane"

    def __init__(self, node_name: str = "lane_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._mask_pub: Any = None
        self._lane_pub: Any = None
        self._overlay_pub: Any = None
        self._live: Optional[LaneNodeConfig] = None

    def make_pipeline(self, backend: Any, config: LaneNodeConfig) -> Pipeline:
        size = tuple(config.input_size) if any(config.input_size) else None
        pipeline = LanePipeline(
            backend,
            input_size=size,  # type: ignore[arg-type]
            resize=config.resize,
            interpolation=config.interpolation,
            class_names=config.class_names,
            extract_lines=config.lines,
            line_row_step=config.line_row_step,
            line_extend=config.line_extend,
        )
        if config.lines and not pipeline.lines_available:
            self.get_logger().warning(
                "lane-line extraction unavailable (edge_perception.lane.postprocess missing): "
                "publishing masks without lines"
            )
        return pipeline

    def create_publishers(self, config: LaneNodeConfig) -> None:
        self._live = config
        self._mask_pub = self.add_publisher(Image, "~/class_mask", 5)
        self._lane_pub = self.add_publisher(LaneSegmentation, "~/lanes", 5)
        # Always created so that switching `overlay` on at run time works.
        self._overlay_pub = self.add_publisher(Image, "~/overlay", 5)

    def on_parameters_changed(self, config: LaneNodeConfig) -> None:
        self._live = config

    def publish_results(self, header: Header, output: FrameOutput, rgb: np.ndarray) -> None:
        result: LaneResult = output.result
        live = self._live or self.config
        if result.class_mask is None:
            raise ValueError("lane pipeline returned no class mask")
        self._mask_pub.publish(array_to_image(result.class_mask, "mono8", header))
        lane = lane_to_msg(
            header,
            result.class_mask if live.embed_mask else None,
            result.class_names,
            result.lines,
            class_mask_topic=self._mask_pub.topic_name,
        )
        self._lane_pub.publish(lane)
        # The overlay costs a blend and a camera-size message: only when someone looks at it.
        if live.overlay and self._overlay_pub.get_subscription_count() > 0:
            img = render_overlay(rgb, result, live.overlay_alpha)
            self._overlay_pub.publish(array_to_image(img, live.overlay_encoding, header))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console script ``lane_node``; ``--autostart`` configures and activates at start-up,
    ``--help`` prints the parameters (descriptions, defaults, allowed values) and exits."""
    from edge_perception.ros.spin import lifecycle_main

    return lifecycle_main(
        argv,
        "python -m edge_perception.ros.lane_node",
        __doc__,
        LaneNodeConfig,
        LaneSegmentationNode,
    )


if __name__ == "__main__":
    sys.exit(main())
