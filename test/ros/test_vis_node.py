"""VisNode over real DDS: a real rclpy peer publishes frames and reads InstanceArray (RLE masks,
track ids, keyframe flags), Detection2DArray (id = track id), overlay, id mask, timing and
diagnostics; lifecycle configure / activate / deactivate / cleanup and a failed configure.

The model is the tiny seeded VIS variant exported to tmp_path (test/vis/vis_tiny.py).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import pytest

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vis"))
from vis_tiny import CLASSES, export_tiny_vis  # noqa: E402


@pytest.fixture(scope="module")
def tiny_vis(tmp_path_factory) -> Path:
    return export_tiny_vis(tmp_path_factory.mktemp("vis") / "models", (64, 96))


def _wait(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


class _Rig:
    """VisNode + a peer node on one multi-threaded executor of a private context."""

    def __init__(self, context, model: Path, **params) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from edge_perception.ros.vis_node import VisNode
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.parameter import Parameter
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray

        from edge_perception_msgs.msg import FrameTiming, InstanceArray

        overrides = {"model": str(model), "input_topic": "/cam/image", "qos": "reliable"}
        overrides.update(params)
        self.node = VisNode(
            "vis_under_test",
            context=context,
            parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
        )
        self.peer = rclpy.create_node("vis_peer", context=context)
        self.got: Dict[str, List] = {
            k: [] for k in ("inst", "dets", "overlay", "id_mask", "timing", "diag")
        }
        ns = "/vis_under_test/"
        sub = self.peer.create_subscription
        sub(InstanceArray, ns + "instances", self.got["inst"].append, 10)
        sub(Detection2DArray, ns + "detections", self.got["dets"].append, 10)
        sub(Image, ns + "overlay", self.got["overlay"].append, 10)
        sub(Image, ns + "id_mask", self.got["id_mask"].append, 10)
        sub(FrameTiming, ns + "timing", self.got["timing"].append, 10)
        sub(DiagnosticArray, "/diagnostics", self.got["diag"].append, 10)
        self.image_pub = self.peer.create_publisher(Image, "/cam/image", 10)
        self.executor = MultiThreadedExecutor(num_threads=3, context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()
        self.frame = np.random.default_rng(0).integers(0, 255, (72, 112, 3), np.uint8)

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def send(self, stamp_ns: int) -> None:
        from edge_perception.ros.convert import array_to_image, make_header

        self.image_pub.publish(array_to_image(self.frame, "rgb8", make_header(stamp_ns, "cam")))

    def result(self, key: str, stamp_ns: int):
        from edge_perception.ros.convert import stamp_to_ns

        found = [m for m in self.got[key] if stamp_to_ns(m.header.stamp) == stamp_ns]
        return found[0] if found else None

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self.peer.destroy_node()


@pytest.mark.parametrize("fuse_head", [True, False], ids=["fused", "three_graphs"])
def test_instances_detections_track_ids_keyframes(rclpy_context, tiny_vis, fuse_head):
    from edge_perception.ros.convert import msg_to_instances
    from lifecycle_msgs.msg import State
    from rclpy.lifecycle import TransitionCallbackReturn

    rig = _Rig(
        rclpy_context,
        tiny_vis,
        keyframe_interval=3,
        max_keyframe_age_s=0.0,
        track_min_hits=1,
        score_threshold=0.3,
        id_mask=True,
        fuse_head=fuse_head,
    )
    try:
        node = rig.node
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_ACTIVE
        assert node.class_names == CLASSES
        assert _wait(lambda: rig.image_pub.get_subscription_count() > 0)
        assert _wait(lambda: node._pubs["overlay"].get_subscription_count() > 0)
        assert _wait(lambda: node._pubs["id_mask"].get_subscription_count() > 0)
        stamps = [1_000_000_000 + i * 33_333_333 for i in range(7)]
        for s in stamps:  # one at a time: the node keeps only the newest frame
            rig.send(s)
            assert _wait(lambda s=s: rig.result("inst", s) is not None), node.diagnostic_values()
            assert _wait(lambda s=s: rig.result("dets", s) is not None)
        insts = [rig.result("inst", s) for s in stamps]
        assert [m.keyframe for m in insts] == [True, False, False, True, False, False, True]
        for s, msg in zip(stamps, insts):
            dets = rig.result("dets", s)
            assert msg.header.frame_id == "cam" and len(msg.instances) == len(dets.detections) > 0
            read = msg_to_instances(msg)
            assert read.masks.shape[1:] == (72, 112) and read.masks.any(axis=(1, 2)).all()
            assert (read.track_ids >= 1).all()
            assert read.ids == [str(t) for t in read.track_ids]
            assert [d.id for d in dets.detections] == read.ids
            assert all(d.results[0].hypothesis.class_id == "0" for d in dets.detections)
        assert _wait(lambda: all(rig.result("timing", s) is not None for s in stamps))
        assert [rig.result("timing", s).keyframe for s in stamps] == [m.keyframe for m in insts]
        assert _wait(lambda: rig.got["overlay"] and rig.got["id_mask"])
        ov, ids = rig.got["overlay"][-1], rig.got["id_mask"][-1]
        assert (ov.height, ov.width, ov.encoding) == (72, 112, "bgr8")
        assert (ids.height, ids.width, ids.encoding) == (72, 112, "mono16")
        values = node.diagnostic_values()
        assert values["key_frames"] == "3" and values["nonkey_frames"] == "4"
        assert float(values["key_ratio"]) == pytest.approx(3 / 7, abs=1e-3)
        for k in ("key_path_ms", "nonkey_path_ms", "key_ms", "nonkey_ms"):
            assert float(values[k]) > 0
        # ONNX Runtime runs the head inside the key / non-key sessions unless told otherwise
        assert (values["head_ms"] == "fused") == fuse_head
        assert fuse_head or float(values["head_ms"]) > 0
        assert values["last_keyframe_reason"] == "interval"
        # lifecycle: deactivate, cleanup, configure + activate again: the stream starts anew
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert node.pipeline is None
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        s = stamps[-1] + 33_333_333
        assert _wait(lambda: rig.image_pub.get_subscription_count() > 0)
        rig.send(s)
        assert _wait(lambda: rig.result("inst", s) is not None)
        assert rig.result("inst", s).keyframe  # first frame after configure
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    finally:
        rig.close()


def test_configure_fails_with_the_reason_for_a_bad_model_name(rclpy_context, tiny_vis, tmp_path):
    from rclpy.lifecycle import TransitionCallbackReturn

    # not named <name>_key.onnx
    rig = _Rig(rclpy_context, tiny_vis.with_name("vis_tiny_head.onnx"))
    try:
        assert rig.node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "_key" in rig.node._last_error
        assert rig.node.pipeline is None
    finally:
        rig.close()
    # the key graph alone, without its siblings
    lone = tmp_path / "lone_key.onnx"
    lone.write_bytes(tiny_vis.read_bytes())
    rig = _Rig(rclpy_context, lone)
    try:
        assert rig.node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "lone_nonkey.onnx" in rig.node._last_error
    finally:
        rig.close()
