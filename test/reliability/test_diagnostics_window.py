"""Bad-input logging and ``/diagnostics`` reflect the recent past (issue 12, finding 3).

Before: a malformed-input warning was logged once per kind per configure (a camera that broke
hours later stayed silent in the log) and one bad frame left the node WARN until the next
configure. Now: one line per kind per ``diagnostics_window`` with the count since the last
line; the level comes from the last ``diagnostics_window`` seconds; WARN below
``min_input_rate``, ERROR when no frame came for ``stall_timeout`` s while active (what
diagnostic_updater's FrequencyStatus / TimeStampStatus give).
"""

from __future__ import annotations

import re
import time

import pytest

pytest.importorskip("rclpy")

from _node_harness import ALL_TRANSITIONS, NodeHarness, lane_params  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from edge_perception.ros.convert import make_header  # noqa: E402
from edge_perception.ros.lane_node import LaneSegmentationNode  # noqa: E402
from lifecycle_msgs.msg import State  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from tiny_models import lane_onnx  # noqa: E402

pytestmark = pytest.mark.ros
OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
WINDOW = 2.0


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return lane_onnx(str(tmp_path_factory.mktemp("lane") / "lane.onnx"))


def _bad_step(h: NodeHarness) -> None:
    msg = Image(height=4, width=4, encoding="rgb8", step=5, data=bytes(20))
    msg.header = make_header(h.now_ns(), "camera")
    h.send_msg(msg)


def _one_bad_step(h: NodeHarness) -> None:
    """One bad frame that reaches the worker (amid a stream a newer frame may replace it)."""
    n = h.node.stats.malformed.get("bad_step", 0)
    for _ in range(50):
        _bad_step(h)
        if h.spin_until(lambda: h.node.stats.malformed.get("bad_step", 0) > n, 0.5):
            return
    raise AssertionError("no bad frame reached the node")


def test_window_throttled_logs_rate_and_stall(rclpy_context, model):
    params = lane_params(model, diagnostics_window=WINDOW, min_input_rate=5.0, stall_timeout=1.5)
    h = NodeHarness(rclpy_context, LaneSegmentationNode("lane_diag", context=rclpy_context,
                                                        parameter_overrides=params))  # fmt: skip
    node = h.node
    try:
        h.bring_to("active")
        h.wait_subscribed()
        h.start_stream(25.0)
        assert h.fresh_diag(lambda s: s.level == OK, 10.0), "never OK with a healthy camera"

        # One bad frame: WARN for about a window, then OK again (it used to stay WARN).
        _one_bad_step(h)
        st = h.fresh_diag(lambda s: s.level == WARN, 5.0)
        assert st is not None and "malformed_bad_step x1" in st.message, st
        assert h.value(st, "recent_malformed_bad_step") == "1"
        t_bad = time.monotonic()
        assert h.fresh_diag(lambda s: s.level == OK, WINDOW + 8.0), "still WARN after the window"
        assert time.monotonic() - t_bad >= WINDOW * 0.5
        st = h.last_diag()
        assert h.value(st, "malformed") == "1"  # the total since configure stays
        assert "recent_malformed_bad_step" not in [kv.key for kv in st.values]

        # A camera that keeps sending bad frames is logged again each window, with a count.
        first = len(h.log_lines("(bad_step)"))
        assert first == 1
        end = time.monotonic() + WINDOW * 1.6
        while time.monotonic() < end:
            _bad_step(h)
            h.spin_for(0.1)
        h.spin_for(WINDOW * 0.5)  # the due summary comes with a diagnostics tick
        lines = h.log_lines("(bad_step)")
        assert len(lines) >= 2, lines
        counts = [int(m.group(1)) for m in map(re.compile(r"\((\d+) of this kind").search, lines)
                  if m]  # fmt: skip
        assert counts and max(counts) > 1, lines
        assert 1 + sum(counts) <= node.stats.malformed["bad_step"]

        # Input rate below min_input_rate: WARN; no frame for stall_timeout: ERROR (+ a log).
        h.start_stream(1.5)
        st = h.fresh_diag(lambda s: s.level == WARN and "input rate" in s.message, WINDOW + 10)
        assert st is not None, "no WARN for a slow camera"
        assert float(h.value(st, "input_rate_hz")) < 5.0
        h.stop_stream()
        st = h.fresh_diag(lambda s: s.level == ERROR, 10.0)
        assert st is not None and "no input frame" in st.message, st
        assert h.spin_until(lambda: bool(h.log_lines("no input frame")), 5.0)
        assert h.state() == State.PRIMARY_STATE_ACTIVE  # alive, still active

        # The camera comes back: OK again, and the next good frame is processed.
        h.start_stream(25.0)
        assert h.fresh_diag(lambda s: s.level == OK, WINDOW + 10.0), "not OK after recovery"
        assert h.spin_until(lambda: bool(h.log_lines("input frames again")), 5.0)
        assert h.good_frame_processed()

        # Inactive: no rate or stall verdict.
        h.stop_stream()
        assert h.transition(ALL_TRANSITIONS["deactivate"])
        h.spin_for(2.0)
        st = h.fresh_diag(lambda s: True, 5.0)
        assert st is not None and st.level == OK and h.value(st, "state") == "inactive", st
    finally:
        h.close()
