"""LaneSegmentationNode over real DDS: lifecycle services, results, malformed input, stale frames.

A tiny U-Net-like model with the lane I/O contract is exported to ONNX in tmp_path; a plain
rclpy peer node publishes camera images and calls the node's lifecycle / parameter services.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, List

import numpy as np
import pytest

pytest.importorskip("rclpy")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from edge_perception.backends import create_backend  # noqa: E402
from edge_perception.ros.convert import (  # noqa: E402
    array_to_image,
    image_to_array,
    make_header,
    stamp_to_ns,
)
from edge_perception.ros.lane_node import LaneSegmentationNode  # noqa: E402
from edge_perception.runtime.lane import LanePipeline  # noqa: E402
from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from tiny_models import lane_onnx  # noqa: E402

from edge_perception_msgs.msg import FrameTiming, LaneSegmentation  # noqa: E402

pytestmark = pytest.mark.ros
TOPIC = "cam/image"
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return lane_onnx(str(tmp_path_factory.mktemp("lane") / "lane.onnx"))


def _frame(seed: int = 0, h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


class Harness:
    """The node under test plus a peer node, spun by one executor in this thread."""

    def __init__(self, ctx, node: LaneSegmentationNode) -> None:
        self.node = node
        self.peer = Node("peer", context=ctx)
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(node)
        self.executor.add_node(self.peer)
        self.received = {"mask": [], "lanes": [], "overlay": [], "timing": [], "diag": []}
        for key, typ, topic in (
            ("mask", Image, "/lane_node/class_mask"),
            ("lanes", LaneSegmentation, "/lane_node/lanes"),
            ("overlay", Image, "/lane_node/overlay"),
            ("timing", FrameTiming, "/lane_node/timing"),
            ("diag", DiagnosticArray, "/diagnostics"),
        ):
            self.peer.create_subscription(typ, topic, self.received[key].append, RELIABLE)
        self.pub = self.peer.create_publisher(Image, TOPIC, RELIABLE)
        self.change = self.peer.create_client(ChangeState, "/lane_node/change_state")
        self.get = self.peer.create_client(GetState, "/lane_node/get_state")

    def spin_until(self, cond: Callable[[], bool], timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return cond()

    def call(self, client, request):
        assert self.spin_until(lambda: client.service_is_ready(), 10.0), "service not ready"
        future = client.call_async(request)
        assert self.spin_until(future.done, 30.0), "service call timed out"
        return future.result()

    def transition(self, tid: int) -> bool:
        req = ChangeState.Request()
        req.transition.id = tid
        return self.call(self.change, req).success

    def state(self) -> int:
        return self.call(self.get, GetState.Request()).current_state.id

    def wait_subscribed(self) -> None:
        assert self.spin_until(lambda: self.pub.get_subscription_count() > 0, 10.0)
        # ...and our result subscriptions matched the node's publishers
        assert self.spin_until(lambda: self.peer.count_publishers("/lane_node/timing") > 0, 10.0)

    def send(self, rgb: np.ndarray, stamp_ns: int, encoding: str = "rgb8") -> None:
        self.pub.publish(array_to_image(rgb, encoding, make_header(stamp_ns, "camera_optical")))

    def diag_value(self, key: str) -> str:
        for arr in reversed(self.received["diag"]):
            for st in arr.status:
                if st.name.startswith("lane_node"):
                    for kv in st.values:
                        if kv.key == key:
                            return kv.value
        return ""

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.executor.remove_node(self.peer)
        self.node.destroy_node()
        self.peer.destroy_node()
        self.executor.shutdown()


def _node(ctx, model: str, **params) -> LaneSegmentationNode:
    overrides: List[Parameter] = [
        Parameter("model", value=model),
        Parameter("input_topic", value=TOPIC),
        Parameter("qos", value="reliable"),
        Parameter("threads", value=1),
        Parameter("diagnostics_period", value=0.2),
    ]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    return LaneSegmentationNode(context=ctx, parameter_overrides=overrides)


def _by_stamp(msgs, stamp_ns: int):
    return [m for m in msgs if stamp_to_ns(m.header.stamp) == stamp_ns]


def test_lifecycle_services_and_results_keep_stamp(rclpy_context, model):
    h = Harness(rclpy_context, _node(rclpy_context, model))
    try:
        assert h.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert h.transition(Transition.TRANSITION_CONFIGURE)
        assert h.state() == State.PRIMARY_STATE_INACTIVE
        assert h.transition(Transition.TRANSITION_ACTIVATE)
        assert h.state() == State.PRIMARY_STATE_ACTIVE
        h.wait_subscribed()

        rgb, stamp = _frame(1), 1_700_000_000_000_000_123
        h.send(rgb, stamp, "bgr8")  # the node converts to RGB before inference
        got = h.spin_until(
            lambda: all(
                _by_stamp(h.received[k], stamp) for k in ("mask", "lanes", "overlay", "timing")
            )
        )
        assert got, {k: len(v) for k, v in h.received.items()}
        mask_msg = _by_stamp(h.received["mask"], stamp)[0]
        assert mask_msg.header.frame_id == "camera_optical" and mask_msg.encoding == "mono8"
        mask = image_to_array(mask_msg)[..., 0]
        offline = LanePipeline(create_backend("onnxruntime", model)).process(rgb).result
        assert mask.shape == (48, 64)
        np.testing.assert_array_equal(mask, offline.class_mask)

        lanes = _by_stamp(h.received["lanes"], stamp)[0]
        assert lanes.header.frame_id == "camera_optical"
        assert lanes.class_mask_topic == "/lane_node/class_mask"
        assert list(lanes.class_names) == ["background", "drivable", "lane_solid", "lane_dashed"]
        assert lanes.class_mask.height == 0  # embed_mask defaults to false

        overlay = _by_stamp(h.received["overlay"], stamp)[0]
        assert overlay.encoding == "bgr8" and (overlay.height, overlay.width) == (48, 64)
        timing = _by_stamp(h.received["timing"], stamp)[0]
        assert timing.node == "lane_node" and timing.backend == "onnxruntime"
        assert timing.keyframe and timing.inference_ms > 0 and timing.header.frame_id

        # overlay switched off at run time: no overlay for the next frame, others still come
        assert h.node.set_parameters([Parameter("overlay", value=False)])[0].successful
        h.send(rgb, stamp + 1)
        assert h.spin_until(lambda: _by_stamp(h.received["timing"], stamp + 1))
        h.spin_until(lambda: False, 0.3)
        assert not _by_stamp(h.received["overlay"], stamp + 1)

        assert h.spin_until(lambda: h.diag_value("frames_processed") not in ("", "0"))
        assert h.diag_value("backend") == "onnxruntime" and h.diag_value("state") == "active"

        assert h.transition(Transition.TRANSITION_DEACTIVATE)
        assert h.state() == State.PRIMARY_STATE_INACTIVE
        assert h.transition(Transition.TRANSITION_CLEANUP)
        assert h.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert h.node.pipeline is None
        assert h.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        assert h.state() == State.PRIMARY_STATE_FINALIZED
    finally:
        h.close()


def test_malformed_images_are_dropped_and_node_keeps_serving(rclpy_context, model):
    h = Harness(rclpy_context, _node(rclpy_context, model, overlay=False))
    try:
        assert h.transition(Transition.TRANSITION_CONFIGURE)
        assert h.transition(Transition.TRANSITION_ACTIVATE)
        h.wait_subscribed()
        bad = [
            Image(height=4, width=4, encoding="rgb8", step=5, data=bytes(20)),  # bad_step
            Image(height=4, width=4, encoding="rgb8", step=12, data=bytes(10)),  # short_data
            Image(height=4, width=4, encoding="32FC1", step=16, data=bytes(64)),
            Image(height=0, width=0, encoding="rgb8", step=0, data=b""),
        ]
        for k, msg in enumerate(bad):
            msg.header = make_header(100 + k, "camera")
            h.pub.publish(msg)
            # one at a time so none replaces another in the mailbox
            assert h.spin_until(lambda k=k: sum(h.node.stats.malformed.values()) == k + 1)
        h.send(_frame(2), 500)
        assert h.spin_until(lambda: _by_stamp(h.received["mask"], 500))
        assert h.node.stats.malformed == {
            "bad_step": 1,
            "short_data": 1,
            "unknown_encoding": 1,
            "zero_size": 1,
        }
        assert h.spin_until(lambda: h.diag_value("malformed") == "4")
        assert h.diag_value("malformed_bad_step") == "1"
        assert not any(_by_stamp(h.received["mask"], 100 + k) for k in range(4))
        assert h.state() == State.PRIMARY_STATE_ACTIVE
    finally:
        h.close()


class SlowLaneNode(LaneSegmentationNode):
    """The real node with 50 ms of extra publishing work per frame, so a burst outruns it."""

    def publish_results(self, header, output, rgb):
        time.sleep(0.05)
        super().publish_results(header, output, rgb)


def test_burst_drops_stale_frames_without_queueing(rclpy_context, model):
    overrides = [
        Parameter("model", value=model),
        Parameter("input_topic", value=TOPIC),
        Parameter("qos", value="reliable"),
        Parameter("overlay", value=False),
    ]
    h = Harness(rclpy_context, SlowLaneNode(context=rclpy_context, parameter_overrides=overrides))
    try:
        assert h.transition(Transition.TRANSITION_CONFIGURE)
        assert h.transition(Transition.TRANSITION_ACTIVATE)
        h.wait_subscribed()
        n = 30
        rgb = _frame(3)
        for i in range(n):
            h.send(rgb, 1000 + i)
            h.executor.spin_once(timeout_sec=0.0)
            assert len(h.node.mailbox) <= 1
        last = 1000 + n - 1
        assert h.spin_until(lambda: _by_stamp(h.received["timing"], last), 15.0)
        h.spin_until(lambda: False, 0.2)  # nothing else is pending
        processed = {stamp_to_ns(t.header.stamp) for t in h.received["timing"]}
        dropped, received = h.node.mailbox.dropped, h.node.mailbox.received
        assert dropped > 0 and len(processed) < n
        # every frame that reached the callback was either processed or dropped, never queued
        assert len(processed) + dropped == received
        assert sum(t.frames_dropped for t in h.received["timing"]) == dropped
    finally:
        h.close()


def test_missing_or_corrupt_model_fails_configure_node_stays_alive(rclpy_context, model, tmp_path):
    missing = str(tmp_path / "absent.onnx")
    h = Harness(rclpy_context, _node(rclpy_context, missing))
    try:
        assert not h.transition(Transition.TRANSITION_CONFIGURE)
        assert h.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert h.spin_until(lambda: "absent.onnx" in h.diag_value("last_error"))
        errors = [
            st
            for arr in h.received["diag"]
            for st in arr.status
            if st.name.startswith("lane_node") and st.level == st.ERROR
        ]
        assert errors and "file not found" in errors[-1].message

        corrupt = tmp_path / "corrupt.onnx"
        corrupt.write_bytes(b"\x00garbage" * 50)
        assert h.node.set_parameters([Parameter("model", value=str(corrupt))])[0].successful
        assert not h.transition(Transition.TRANSITION_CONFIGURE)
        assert "cannot be loaded" in h.node._last_error

        # bad values are rejected with a reason and do not change the parameter
        res = h.node.set_parameters([Parameter("qos", value="fast")])[0]
        assert not res.successful and "allowed values" in res.reason
        assert h.node.get_parameter("qos").value == "reliable"
        res = h.node.set_parameters([Parameter("input_size", value=[32])])[0]
        assert not res.successful and "input_size" in res.reason

        # the same node configures once given a good model
        assert h.node.set_parameters([Parameter("model", value=model)])[0].successful
        assert h.transition(Transition.TRANSITION_CONFIGURE)
        assert h.state() == State.PRIMARY_STATE_INACTIVE
    finally:
        h.close()


def test_main_in_own_process_autostarts_and_exits_on_sigint(rclpy_context, model):
    """``python -m edge_perception.ros.lane_node --autostart``: serves a peer, stops on Ctrl-C."""
    import os
    import signal
    import subprocess

    cmd = [
        sys.executable, "-m", "edge_perception.ros.lane_node", "--autostart", "--ros-args",
        "-r", "__node:=lane_proc", "-p", f"model:={model}", "-p", "input_topic:=/proc/image",
        "-p", "qos:=reliable", "-p", "overlay:=false",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ)
    peer = Node("proc_peer", context=rclpy_context)
    ex = SingleThreadedExecutor(context=rclpy_context)
    ex.add_node(peer)
    masks: list = []
    peer.create_subscription(Image, "/lane_proc/class_mask", masks.append, RELIABLE)
    pub = peer.create_publisher(Image, "/proc/image", RELIABLE)
    try:
        end = time.monotonic() + 60.0
        while time.monotonic() < end and not masks and proc.poll() is None:
            if pub.get_subscription_count() > 0:
                pub.publish(array_to_image(_frame(4), "rgb8", make_header(77, "cam")))
            ex.spin_once(timeout_sec=0.2)
        assert masks, proc.stdout.read().decode() if proc.poll() is not None else "no mask"
        assert stamp_to_ns(masks[0].header.stamp) == 77 and masks[0].header.frame_id == "cam"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ex.remove_node(peer)
        peer.destroy_node()
        ex.shutdown()
