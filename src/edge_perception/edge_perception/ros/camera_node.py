"""``CameraNode``: a camera source as a ROS 2 lifecycle node (``camera_node``).

Publishes, with one header per frame (capture time, ``frame_id`` = ``camera_optical_frame`` by
default: REP-103 optical frame, z forward, x right, y down):

- ``image_raw`` (``sensor_msgs/Image``, rgb8 / bgr8 / mono8) when ``image_transport`` is raw or
  both;
- ``image_raw/compressed`` (``sensor_msgs/CompressedImage``, JPEG / PNG, image_transport's
  ``compressed`` format) when it is compressed or both;
- ``camera_info`` (``sensor_msgs/CameraInfo``) from ``camera_info_url`` (a camera_calibration
  YAML), or uncalibrated (size only, zero K) without one.

Topics are relative: run it in a namespace (``-r __ns:=/front``) for ``/front/image_raw``.
Sources: video file / URL, image folder, V4L2 device, GStreamer pipeline
(:mod:`edge_perception.runtime.camera`, ROS-free). Parameters:
:class:`edge_perception.runtime.camera.CameraNodeConfig`.

Lifecycle: *configure* opens the source and reads its first frame (an absent or busy device, a
missing file, an OpenCV without GStreamer fail the transition with one line; the node stays
alive and unconfigured) and loads the calibration; *activate* starts the capture thread;
*deactivate* stops it; *cleanup* closes the source. At the end of a file without ``loop`` the
node stops publishing and says so.

Run: ``camera_node --autostart --ros-args -p source:=/dev/video0``.
Python 3.8 compatible.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, List, Optional, Sequence

import numpy as np
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from edge_perception.ros.convert import array_to_compressed, array_to_image, make_header
from edge_perception.ros.params import declare_config, install_validator, read_config
from edge_perception.runtime.camera import (
    CameraCalibration,
    CameraError,
    CameraNodeConfig,
    CameraReader,
    FrameSource,
    load_calibration,
    open_source,
    uncalibrated,
)

_SUCCESS = TransitionCallbackReturn.SUCCESS
_FAILURE = TransitionCallbackReturn.FAILURE


def camera_info_msg(header: Any, calib: CameraCalibration) -> CameraInfo:
    """``CameraInfo`` of a calibration with ``header`` (K, D, R, P row-major)."""
    return CameraInfo(
        header=header,
        height=int(calib.height),
        width=int(calib.width),
        distortion_model=calib.distortion_model,
        d=[float(v) for v in calib.d],
        k=[float(v) for v in calib.k],
        r=[float(v) for v in calib.r],
        p=[float(v) for v in calib.p],
    )


class CameraNode(LifecycleNode):
    """Camera source lifecycle node; see the module docstring."""

    def __init__(self, node_name: str = "camera_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        declare_config(self, CameraNodeConfig)
        install_validator(self, CameraNodeConfig)
        self.config: Optional[CameraNodeConfig] = None
        self.source: Optional[FrameSource] = None
        self.reader: Optional[CameraReader] = None
        self.calibration: Optional[CameraCalibration] = None
        self._pubs: List[Any] = []
        self._image_pub: Any = None
        self._compressed_pub: Any = None
        self._info_pub: Any = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._size_warned = False
        self.last_error = ""
        self.published_frames = 0
        self.finished = False

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            cfg = read_config(self, CameraNodeConfig)
        except ValueError as exc:
            return self._fail(f"invalid parameter: {exc}")
        try:
            calib = load_calibration(cfg.camera_info_url) if cfg.camera_info_url else None
            source = open_source(cfg)
        except CameraError as exc:
            return self._fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - anything else: FAILURE, the node lives on
            return self._fail(f"{type(exc).__name__}: {exc}")
        if calib is not None and calib.camera_name and calib.camera_name != cfg.camera_name:
            self.get_logger().warning(
                f"calibration is for camera {calib.camera_name!r}, this is {cfg.camera_name!r}"
            )
        self.config, self.source, self.calibration = cfg, source, calib
        self.reader = CameraReader(source, cfg.rate_hz, cfg.loop)
        qos: Any = qos_profile_sensor_data
        if cfg.qos == "reliable":
            qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        if cfg.image_transport in ("raw", "both"):
            self._image_pub = self._add(Image, cfg.image_topic, qos)
        if cfg.image_transport in ("compressed", "both"):
            topic = cfg.image_topic.rstrip("/") + "/compressed"
            self._compressed_pub = self._add(CompressedImage, topic, qos)
        self._info_pub = self._add(CameraInfo, cfg.camera_info_topic, qos)
        self.finished, self.published_frames, self._size_warned = False, 0, False
        rate = f"{self.reader.rate:g} Hz" if self.reader.rate else "as delivered"
        self.get_logger().info(
            f"configured: {source.kind} {source.name} at {rate}"
            f"{' (loop)' if cfg.loop else ''}, frame_id {cfg.frame_id}, "
            f"{'calibration ' + cfg.camera_info_url if calib else 'uncalibrated'}"
        )
        return _SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="camera-capture", daemon=True)
        result = super().on_activate(state)
        self._thread.start()
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_thread()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_thread()
        self._release()
        return _SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_thread()
        self._release()
        return _SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_thread()
        self._release()
        return _SUCCESS

    def destroy_node(self) -> None:
        self._stop_thread()
        self._release()
        super().destroy_node()

    # ------------------------------------------------------------------ internals
    def _fail(self, reason: str) -> TransitionCallbackReturn:
        self.last_error = f"configure failed: {reason}"
        self.get_logger().error(self.last_error)
        return _FAILURE

    def _add(self, msg_type: Any, topic: str, qos: Any) -> Any:
        pub = self.create_lifecycle_publisher(msg_type, topic, qos)
        self._pubs.append(pub)
        return pub

    def _stop_thread(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10.0)

    def _release(self) -> None:
        source, self.source, self.reader = self.source, None, None
        if source is not None:
            source.close()
        for pub in self._pubs:
            self.destroy_lifecycle_publisher(pub)
        self._pubs = []
        self._image_pub = self._compressed_pub = self._info_pub = None

    def _run(self) -> None:
        reader, cfg = self.reader, self.config
        if reader is None or cfg is None:
            return
        reader.restart()
        while not self._stop.is_set():
            try:
                frame = reader.next(self._stop)
            except Exception as exc:  # noqa: BLE001 - a read error ends the stream, loudly
                self.last_error = f"source failed: {type(exc).__name__}: {exc}"
                self.get_logger().error(self.last_error)
                frame = None
            if frame is None:
                if reader.ended:
                    self.finished = True
                    self.get_logger().info(
                        f"source ended after {reader.frames} frames; publishing stops"
                        + ("" if reader.source.live else " (loop:=true starts over)")
                    )
                return
            try:
                self._publish(frame, cfg)
            except Exception as exc:  # noqa: BLE001 - keep capturing; log (throttled)
                self.last_error = f"publish failed: {type(exc).__name__}: {exc}"
                self.get_logger().error(self.last_error, throttle_duration_sec=5.0)

    def _publish(self, bgr: np.ndarray, cfg: CameraNodeConfig) -> None:
        import cv2

        header = make_header(self.get_clock().now().nanoseconds, cfg.frame_id)
        h, w = bgr.shape[:2]
        if cfg.encoding == "mono8":
            pixels = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        else:
            pixels = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if self._image_pub is not None:
            self._image_pub.publish(array_to_image(pixels, cfg.encoding, header))
        if self._compressed_pub is not None:
            msg = array_to_compressed(pixels, cfg.compressed_format, header, cfg.jpeg_quality)
            self._compressed_pub.publish(msg)
        calib = self.calibration or uncalibrated(w, h, cfg.camera_name)
        if (calib.width, calib.height) != (w, h) and not self._size_warned:
            self._size_warned = True
            self.get_logger().warning(
                f"calibration is for {calib.width}x{calib.height}, frames are {w}x{h}: "
                "CameraInfo is published as calibrated (recalibrate, or set width / height)"
            )
        if self._info_pub is not None:
            self._info_pub.publish(camera_info_msg(header, calib))
        self.published_frames += 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console script ``camera_node``; ``--autostart`` configures and activates at start-up,
    ``--help`` prints the parameters (descriptions, defaults, allowed values) and exits."""
    from edge_perception.ros.spin import lifecycle_main

    return lifecycle_main(argv, "camera_node", __doc__, CameraNodeConfig, CameraNode)


if __name__ == "__main__":
    sys.exit(main())
