"""Bad header stamps do not ruin latency reporting (issue 12, finding 2).

A zero, far-past or future stamp used to put ~1e12 ms (or a negative number) into
``FrameTiming.end_to_end_ms`` and into every ``/diagnostics`` percentile for a whole window, with
nothing logged. Now such a frame is processed and published as usual, its latency is unknown
(NaN) and left out of the statistics, and it is counted per kind and logged. A stamp that went
backwards but is recent (bag loop) is a valid latency, counted as ``stamp_backwards``. The node
clock is the reference, so under ``use_sim_time`` a wall-clock stamp is the one in the future.
"""

from __future__ import annotations

import math

import pytest

pytest.importorskip("rclpy")

from _node_harness import NodeHarness, frame, lane_params  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from edge_perception.ros.lane_node import LaneSegmentationNode  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from tiny_models import lane_onnx  # noqa: E402

pytestmark = pytest.mark.ros
HOUR_NS = 3600 * 10**9


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return lane_onnx(str(tmp_path_factory.mktemp("lane") / "lane.onnx"))


def _e2e(h: NodeHarness, stamp: int) -> float:
    assert h.spin_until(lambda: bool(h.processed(stamp)), 15.0), f"frame {stamp} not processed"
    return h.processed(stamp)[0].end_to_end_ms


def test_zero_stale_future_stamps_processed_and_kept_out_of_latency(rclpy_context, model):
    node = LaneSegmentationNode(
        "lane_stamps", context=rclpy_context, parameter_overrides=lane_params(model)
    )
    h = NodeHarness(rclpy_context, node)
    try:
        h.bring_to("active")
        h.wait_subscribed()
        for i in range(3):
            assert 0 <= _e2e(h, h.send(frame(i))) < 10_000
        cases = [
            ("zero", 0),
            ("future", h.now_ns() + HOUR_NS),
            ("stale", h.now_ns() - HOUR_NS),
        ]
        for kind, stamp in cases:
            e2e = _e2e(h, h.send(frame(7), stamp))
            assert math.isnan(e2e), (kind, e2e)
            # processed anyway, and the next good frame has a sane latency
            assert 0 <= _e2e(h, h.send(frame(8))) < 10_000, kind
        # backwards but recent: a real latency (about 2 s), counted
        back = h.now_ns() - 2 * 10**9
        assert 1_500 < _e2e(h, h.send(frame(9), back)) < 60_000
        assert 0 <= _e2e(h, h.send(frame(10))) < 10_000

        st = h.fresh_diag(lambda s: h.value(s, "stamp_invalid") == "3", 10.0)
        assert st is not None, "stamp counts not in /diagnostics"
        for kind in ("zero", "future", "stale", "backwards"):
            assert h.value(st, f"stamp_{kind}") == "1", kind
        # the percentiles hold real latencies only (1e12 ms before the fix)
        assert 0 < float(h.value(st, "end_to_end_ms_p99")) < 60_000
        assert st.level == st.WARN and "stamp_zero" in st.message
        for kind in ("zero", "future", "stale"):
            assert h.spin_until(lambda k=kind: bool(h.log_lines(f"is {k} (node clock")), 5.0), kind
        assert h.last_diag() is not None and h.value(h.last_diag(), "state") == "active"
    finally:
        h.close()


def test_sim_time_node_clock_is_the_reference(rclpy_context, model):
    params = lane_params(model, use_sim_time=True)
    node = LaneSegmentationNode("lane_simtime", context=rclpy_context, parameter_overrides=params)
    h = NodeHarness(rclpy_context, node)
    sim_ns = [1_000 * 10**9]
    clock_pub = h.peer.create_publisher(
        Clock, "/clock", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    )

    def tick() -> None:
        sim_ns[0] += 20_000_000  # 20 ms of sim time per 20 ms tick
        clock_pub.publish(Clock(clock=Time(sec=sim_ns[0] // 10**9, nanosec=sim_ns[0] % 10**9)))

    h.peer.create_timer(0.02, tick)
    try:
        h.bring_to("active")
        h.wait_subscribed()
        assert h.spin_until(lambda: node.get_clock().now().nanoseconds > 1_000 * 10**9, 10.0)
        # a camera on sim time: latency measured against /clock
        e2e = _e2e(h, h.send(frame(1), sim_ns[0] - 50_000_000))
        assert 0 < e2e < 30_000, e2e
        # a wall-clock stamp is decades ahead of the sim clock: no latency, counted as future
        assert math.isnan(_e2e(h, h.send(frame(2), h.now_ns())))
        st = h.fresh_diag(lambda s: h.value(s, "stamp_future") == "1", 10.0)
        assert st is not None
        assert 0 < float(h.value(st, "end_to_end_ms_p99")) < 30_000
    finally:
        h.close()
