"""Compressed camera input (``input_transport: compressed``) through the real lane node.

A peer publishes ``sensor_msgs/CompressedImage`` on ``<input_topic>/compressed`` (image_transport's
naming); the node decodes it with OpenCV and its results equal the offline pipeline's on the
decoded frame (PNG: the very pixels; JPEG: the decoded pixels). Malformed compressed frames are
counted per kind and the node keeps serving.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("cv2")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from edge_perception.backends import create_backend  # noqa: E402
from edge_perception.ros.convert import (  # noqa: E402
    array_to_compressed,
    image_to_array,
    make_header,
    stamp_to_ns,
)
from edge_perception.ros.lane_node import LaneSegmentationNode  # noqa: E402
from edge_perception.runtime.compressed import decode_compressed  # noqa: E402
from edge_perception.runtime.lane import LanePipeline  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from tiny_models import lane_onnx  # noqa: E402

from edge_perception_msgs.msg import FrameTiming  # noqa: E402

pytestmark = pytest.mark.ros
TOPIC = "cam/image"
RELIABLE = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
OK = TransitionCallbackReturn.SUCCESS


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return lane_onnx(str(tmp_path_factory.mktemp("lane_c") / "lane.onnx"))


def _spin_until(executor, cond: Callable[[], bool], timeout: float = 15.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and not cond():
        executor.spin_once(timeout_sec=0.05)
    return cond()


def test_compressed_round_trip_through_lane_node(rclpy_context, model):
    ctx = rclpy_context
    node = LaneSegmentationNode(
        context=ctx,
        parameter_overrides=[
            Parameter("model", value=model),
            Parameter("input_topic", value=TOPIC),
            Parameter("input_transport", value="compressed"),
            Parameter("qos", value="reliable"),
            Parameter("threads", value=1),
            Parameter("overlay", value=False),
        ],
    )
    peer = Node("peer", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    executor.add_node(peer)
    masks: list = []
    timing: list = []
    peer.create_subscription(Image, "/lane_node/class_mask", masks.append, RELIABLE)
    peer.create_subscription(FrameTiming, "/lane_node/timing", timing.append, RELIABLE)
    pub = peer.create_publisher(CompressedImage, TOPIC + "/compressed", RELIABLE)
    raw_pub = peer.create_publisher(Image, TOPIC, RELIABLE)
    try:
        assert node.trigger_configure() == OK and node.trigger_activate() == OK
        assert _spin_until(executor, lambda: pub.get_subscription_count() > 0)
        assert raw_pub.get_subscription_count() == 0  # subscribed to the compressed topic only
        assert _spin_until(executor, lambda: peer.count_publishers("/lane_node/timing") > 0)
        offline = LanePipeline(create_backend("onnxruntime", model))
        rng = np.random.default_rng(7)
        rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        rgb[:, :32] = (200, 60, 20)  # a flat area: JPEG keeps it, so colour order shows
        for stamp, codec in ((1_000, "png"), (2_000, "jpeg")):
            msg = array_to_compressed(rgb, codec, make_header(stamp, "camera_optical_frame"))
            assert msg.format == f"rgb8; {codec} compressed bgr8"
            pub.publish(msg)

            def got(s=stamp) -> bool:
                return any(stamp_to_ns(m.header.stamp) == s for m in masks)

            assert _spin_until(executor, got), (codec, len(masks), node.stats.malformed)
            mask_msg = next(m for m in masks if stamp_to_ns(m.header.stamp) == stamp)
            assert mask_msg.header.frame_id == "camera_optical_frame"
            decoded = decode_compressed(msg.data, msg.format)
            if codec == "png":
                np.testing.assert_array_equal(decoded, rgb)  # lossless
            else:  # lossy, but RGB stays RGB (no channel swap)
                assert np.abs(decoded[8:40, 4:28].astype(int) - (200, 60, 20)).max() < 12
            expect = offline.process(decoded).result.class_mask
            np.testing.assert_array_equal(image_to_array(mask_msg)[..., 0], expect)
        assert _spin_until(executor, lambda: len(timing) >= 2)
        assert all(t.preprocess_ms > 0 for t in timing)  # decode is counted in preprocess

        # Malformed compressed frames: counted per kind, the node keeps serving.
        bad = [
            CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xe0" + bytes(60)),
            CompressedImage(format="16UC1; compressedDepth png", data=bytes(16)),
            CompressedImage(format="png", data=b""),
        ]
        for k, msg in enumerate(bad):
            msg.header = make_header(5_000 + k, "camera_optical_frame")
            pub.publish(msg)
            assert _spin_until(executor, lambda k=k: sum(node.stats.malformed.values()) == k + 1)
        assert node.stats.malformed == {
            "compressed_undecodable": 1,
            "compressed_format": 1,
            "compressed_empty": 1,
        }
        pub.publish(array_to_compressed(rgb, "png", make_header(9_000, "camera_optical_frame")))
        assert _spin_until(
            executor, lambda: any(stamp_to_ns(m.header.stamp) == 9_000 for m in masks)
        )
    finally:
        executor.remove_node(node)
        executor.remove_node(peer)
        node.destroy_node()
        peer.destroy_node()
        executor.shutdown()


def test_truncated_jpeg_is_refused():
    rgb = np.full((16, 16, 3), 90, np.uint8)
    msg = array_to_compressed(rgb, "jpeg")
    data = bytes(msg.data)
    from edge_perception.runtime.compressed import CompressedDecodeError

    with pytest.raises(CompressedDecodeError) as err:
        decode_compressed(data[: len(data) // 2], "jpeg")
    assert err.value.kind == "compressed_undecodable"
    assert decode_compressed(data, "").shape == (16, 16, 3)  # format may be empty: magic bytes
