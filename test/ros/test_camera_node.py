"""camera_node over real DDS: a generated video file, an image folder, compressed output,
CameraInfo from a camera_calibration YAML, clear configure failures.

The video is written with ``cv2.VideoWriter`` in tmp_path (MJPG in AVI, which every OpenCV build
with FFmpeg writes); a plain rclpy peer subscribes to the node's topics.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import pytest

pytest.importorskip("rclpy")
cv2 = pytest.importorskip("cv2")

from edge_perception.ros.camera_node import CameraNode  # noqa: E402
from edge_perception.ros.convert import image_to_array, stamp_to_ns  # noqa: E402
from edge_perception.runtime.camera import CameraCalibration  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402

pytestmark = pytest.mark.ros
OK = TransitionCallbackReturn.SUCCESS
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
H, W = 48, 64
COLOURS = [(220, 30, 30), (30, 220, 30), (30, 30, 220), (200, 200, 40), (40, 200, 200)]  # RGB


def _frames() -> List[np.ndarray]:
    out = []
    for rgb in COLOURS:
        img = np.zeros((H, W, 3), np.uint8)
        img[:] = rgb
        img[4:12, 4:20] = 255  # a white patch: a fixed feature at a known place
        out.append(img)
    return out


def _video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, (W, H))
    assert writer.isOpened(), "this OpenCV cannot write MJPG AVI"
    for rgb in _frames():
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _calibration(tmp_path: Path) -> Path:
    calib = CameraCalibration(
        W, H, "test_cam", "plumb_bob", [0.1, -0.05, 0.0, 0.0, 0.01],
        [50.0, 0.0, 32.0, 0.0, 51.0, 24.0, 0.0, 0.0, 1.0],
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        [50.0, 0.0, 32.0, 0.0, 0.0, 51.0, 24.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    )  # fmt: skip
    path = tmp_path / "test_cam.yaml"
    path.write_text(calib.to_yaml())
    return path


class Peer:
    """The camera node plus a subscriber node, spun by one executor in this thread."""

    def __init__(self, ctx, **params) -> None:
        overrides = [Parameter("qos", value="reliable")]
        overrides += [Parameter(k, value=v) for k, v in params.items()]
        self.node = CameraNode(context=ctx, parameter_overrides=overrides)
        self.peer = Node("camera_peer", context=ctx)
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self.got: Dict[str, list] = {"image": [], "compressed": [], "info": []}
        for key, typ, topic in (
            ("image", Image, "/image_raw"),
            ("compressed", CompressedImage, "/image_raw/compressed"),
            ("info", CameraInfo, "/camera_info"),
        ):
            self.peer.create_subscription(typ, topic, self.got[key].append, RELIABLE)

    def spin_until(self, cond: Callable[[], bool], timeout: float = 15.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not cond():
            self.executor.spin_once(timeout_sec=0.05)
        return cond()

    def start(self, topics=("/image_raw", "/camera_info")) -> None:
        assert self.node.trigger_configure() == OK, self.node.last_error
        assert self.spin_until(
            lambda: (
                all(self.peer.count_subscribers(t) > 0 for t in topics)
                and all(p.get_subscription_count() > 0 for p in self.node._pubs)
            )
        )
        assert self.node.trigger_activate() == OK

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.executor.remove_node(self.peer)
        self.node.destroy_node()
        self.peer.destroy_node()
        self.executor.shutdown()


def _mean_rgb(img: np.ndarray) -> np.ndarray:
    return img[20:, 24:].reshape(-1, 3).mean(axis=0)


def test_camera_node_from_video_file(rclpy_context, tmp_path):
    p = Peer(
        rclpy_context,
        source=str(_video(tmp_path)),
        rate_hz=50.0,
        camera_info_url="file://" + str(_calibration(tmp_path)),
        camera_name="test_cam",
    )
    try:
        p.start()
        assert p.node.source.kind == "video"
        assert p.spin_until(lambda: p.node.finished and len(p.got["info"]) >= 5)
        assert p.spin_until(lambda: len(p.got["image"]) >= 5)
        assert p.node.published_frames == 5
        images = p.got["image"]
        for img, rgb in zip(images, COLOURS):  # in order, colours kept (RGB, not BGR)
            assert img.encoding == "rgb8" and (img.height, img.width) == (H, W)
            assert img.header.frame_id == "camera_optical_frame"
            assert np.abs(_mean_rgb(image_to_array(img)) - rgb).max() < 12
        stamps = [stamp_to_ns(m.header.stamp) for m in images]
        assert stamps == sorted(stamps) and len(set(stamps)) == 5
        gaps = np.diff(stamps) / 1e9
        assert gaps.min() > 0.01  # paced at rate_hz (50 Hz: 20 ms), not as fast as decoded
        info = p.got["info"][0]
        assert stamp_to_ns(info.header.stamp) == stamps[0]  # one header per frame
        assert info.header.frame_id == "camera_optical_frame"
        assert (info.width, info.height, info.distortion_model) == (W, H, "plumb_bob")
        assert list(info.k) == [50.0, 0.0, 32.0, 0.0, 51.0, 24.0, 0.0, 0.0, 1.0]
        assert list(info.d) == pytest.approx([0.1, -0.05, 0.0, 0.0, 0.01])
        assert list(info.p)[:3] == [50.0, 0.0, 32.0]
    finally:
        p.close()


def test_camera_node_from_image_folder_with_loop_and_compressed(rclpy_context, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, rgb in enumerate(_frames()[:3]):
        cv2.imwrite(str(folder / f"frame_{i:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not an image")
    p = Peer(
        rclpy_context,
        source=str(folder),
        rate_hz=40.0,
        loop=True,
        image_transport="both",
        compressed_format="png",
        frame_id="front_camera_optical_frame",
    )
    try:
        p.start(("/image_raw", "/image_raw/compressed", "/camera_info"))
        assert p.node.source.kind == "images"
        assert p.spin_until(lambda: len(p.got["image"]) >= 7 and len(p.got["compressed"]) >= 7)
        expect = _frames()[:3]
        for i, img in enumerate(p.got["image"][:7]):  # PNG: exact pixels, looping 0 1 2 0 ...
            np.testing.assert_array_equal(image_to_array(img), expect[i % 3])
            assert img.header.frame_id == "front_camera_optical_frame"
        comp = p.got["compressed"][0]
        assert comp.format == "rgb8; png compressed bgr8"
        np.testing.assert_array_equal(image_to_array(comp), expect[0])
        info = p.got["info"][0]  # no calibration: uncalibrated CameraInfo (size, zero K)
        assert (info.width, info.height) == (W, H) and not any(info.k)
        assert not p.node.finished
        assert p.node.trigger_deactivate() == OK
        n = len(p.got["image"])
        p.spin_until(lambda: False, 0.3)
        assert len(p.got["image"]) <= n + 1  # stopped publishing
        assert p.node.trigger_cleanup() == OK and p.node.source is None
    finally:
        p.close()


def test_camera_node_configure_failures_are_one_line(rclpy_context, tmp_path):
    cases = [
        ({"source": "/dev/video97"}, "camera device /dev/video97 is absent"),
        ({"source": str(tmp_path / "missing.mp4")}, "does not exist"),
        ({"source": str(tmp_path)}, "holds no images"),
        ({"source": "videotestsrc ! videoconvert"}, "GStreamer"),
        ({"source": str(tmp_path), "camera_info_url": str(tmp_path / "x.yaml")}, "cannot read"),
        ({"source": ""}, "source: must name"),
    ]
    for params, text in cases:
        node = CameraNode(
            context=rclpy_context,
            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
        )
        try:
            assert node.trigger_configure() != OK, params
            assert text in node.last_error, (params, node.last_error)
            assert "\n" not in node.last_error
        finally:
            node.destroy_node()


def test_camera_node_help_lists_parameters(capsys):
    from edge_perception.ros.camera_node import main

    assert main(["camera_node", "--help"]) == 0
    out = capsys.readouterr().out
    assert "camera_optical_frame" in out and "image_transport" in out and "--autostart" in out
    assert main(["camera_node", "--bogus"]) == 2
