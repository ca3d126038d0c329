"""Lifecycle abuse (issue 12, finding 1): every transition from every state, with frames flowing.

Valid transitions succeed, invalid ones are refused; after each the node is alive, keeps
publishing ``/diagnostics`` with the state it is in (the ``/diagnostics`` publisher and timer
live across cleanup / shutdown: cleanup used to destroy them, and the next diagnostics tick
raised ``InvalidHandle``), and, brought back to active, processes the next good frame.
"""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")

from _node_harness import (  # noqa: E402
    ALL_TRANSITIONS,
    STATE_LABELS,
    NodeHarness,
    lane_params,
)
from edge_perception.ros.lane_node import LaneSegmentationNode  # noqa: E402
from lifecycle_msgs.msg import State  # noqa: E402
from tiny_models import lane_onnx  # noqa: E402

pytestmark = pytest.mark.ros

# state -> transitions the lifecycle allows from it (the others must be refused)
VALID = {
    "unconfigured": {"configure", "unconfigured_shutdown"},
    "inactive": {"cleanup", "activate", "inactive_shutdown"},
    "active": {"deactivate", "active_shutdown"},
}
RESULT = {
    "configure": "inactive",
    "cleanup": "unconfigured",
    "activate": "active",
    "deactivate": "inactive",
    "unconfigured_shutdown": "finalized",
    "inactive_shutdown": "finalized",
    "active_shutdown": "finalized",
}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return lane_onnx(str(tmp_path_factory.mktemp("lane") / "lane.onnx"))


def _diag_says(h: NodeHarness, label: str) -> bool:
    """A /diagnostics status published from now on reports ``label``."""
    return h.fresh_diag(lambda st: h.value(st, "state") == label, 10.0) is not None


def _back_to_active(h: NodeHarness) -> None:
    for step in {
        "unconfigured": ["configure", "activate"],
        "inactive": ["activate"],
        "active": [],
    }[STATE_LABELS[h.state()]]:
        assert h.transition(ALL_TRANSITIONS[step]), step


@pytest.mark.parametrize("start", ["unconfigured", "inactive", "active"])
def test_every_transition_from_state_with_frames_flowing(rclpy_context, model, start):
    node = LaneSegmentationNode(context=rclpy_context, parameter_overrides=lane_params(model))
    h = NodeHarness(rclpy_context, node)
    valid = VALID[start]
    refused = [t for t in ALL_TRANSITIONS if t not in valid]
    onward = [t for t in ALL_TRANSITIONS if t in valid and RESULT[t] != "finalized"]
    (shutdown,) = [t for t in valid if RESULT[t] == "finalized"]
    try:
        h.start_stream(30.0)
        for name in refused + onward + [shutdown]:
            _reset_to(h, start)
            ok = h.transition(ALL_TRANSITIONS[name])
            assert ok == (name in valid), (start, name)
            now = RESULT[name] if ok else start
            assert STATE_LABELS[h.state()] == now, (start, name)
            assert _diag_says(h, now), (start, name, "diagnostics stopped or wrong state")
            if now == "finalized":
                break
            _back_to_active(h)
            h.wait_subscribed()
            assert h.good_frame_processed(), (start, name, "next good frame not processed")
            assert _diag_says(h, "active"), (start, name)
        # Finalized: no way back, yet the node stays alive and /diagnostics goes on.
        assert h.state() == State.PRIMARY_STATE_FINALIZED
        assert not h.transition(ALL_TRANSITIONS["configure"])
        h.spin_for(0.6)
        assert _diag_says(h, "finalized")
    finally:
        h.close()


def _reset_to(h: NodeHarness, label: str) -> None:
    """From any non-final state to ``label`` through valid transitions."""
    order = ["unconfigured", "inactive", "active"]
    down = {"active": "deactivate", "inactive": "cleanup"}
    up = {"unconfigured": "configure", "inactive": "activate"}
    cur = STATE_LABELS[h.state()]
    while cur != label:
        step = up[cur] if order.index(cur) < order.index(label) else down[cur]
        assert h.transition(ALL_TRANSITIONS[step]), step
        cur = RESULT[step]
