"""Bad parameters at start-up and live: one line naming the parameter, the value and what is
allowed; a bad start-up value leaves the node alive (configure fails until it is changed)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("rclpy")

from edge_perception.config import LaneNodeConfig  # noqa: E402
from edge_perception.ros.detection_node import DetectionNode, DetectionParams  # noqa: E402
from edge_perception.ros.lane_node import LaneSegmentationNode  # noqa: E402
from edge_perception.ros.params import config_errors, read_config  # noqa: E402
from lifecycle_msgs.msg import State  # noqa: E402
from rcl_interfaces.msg import ParameterType  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

pytestmark = pytest.mark.ros


def _state(node) -> int:
    return node._state_machine.current_state[0]


@pytest.mark.parametrize(
    "value, words",
    [
        (-1, ["threads: -1 is below the minimum 0", "allowed: an integer in 0..256"]),
        ("abc", ["threads: expected an integer, got 'abc'", "allowed: an integer in 0..256"]),
        (1.5, ["threads: expected an integer, got 1.5", "0..256"]),
    ],
)
def test_bad_start_value_keeps_the_node_alive_and_fails_configure(rclpy_context, value, words):
    # rclpy raised InvalidParameterValueException / InvalidParameterTypeException from the
    # constructor here (the node process died at start-up with a traceback).
    node = LaneSegmentationNode(
        context=rclpy_context, parameter_overrides=[Parameter("threads", value=value)]
    )
    try:
        assert node.get_parameter("threads").value == value  # the given value is kept
        errors = config_errors(node, LaneNodeConfig)
        assert len(errors) == 1 and all(w in errors[0] for w in words), errors
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert _state(node) == State.PRIMARY_STATE_UNCONFIGURED
        assert all(w in node._last_error for w in words), node._last_error
        # Fixed live, the parameter is accepted and the config is valid again.
        assert node.set_parameters([Parameter("threads", value=2)])[0].successful
        assert read_config(node, LaneNodeConfig).threads == 2
        assert node.describe_parameter("threads").type == ParameterType.PARAMETER_INTEGER
    finally:
        node.destroy_node()


def test_two_bad_start_values_can_be_fixed_one_at_a_time(rclpy_context):
    node = DetectionNode(
        context=rclpy_context,
        parameter_overrides=[
            Parameter("score_threshold", value=1.5),
            Parameter("max_detections", value="many"),
        ],
    )
    try:
        errors = config_errors(node, DetectionParams)
        assert any("score_threshold: 1.5 is above the maximum 1.0" in e for e in errors)
        assert any("max_detections: expected an integer, got 'many'" in e for e in errors)
        assert all("allowed:" in e for e in errors)
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.set_parameters([Parameter("score_threshold", value=0.3)])[0].successful
        res = node.set_parameters([Parameter("max_detections", value=-5)])[0]
        # Out of a declared range: rclpy's own message, which names all three too.
        assert not res.successful and "max_detections" in res.reason and "-5" in res.reason
        assert "Min: 1, Max: 10000" in res.reason
        assert node.set_parameters([Parameter("max_detections", value=20)])[0].successful
        assert config_errors(node, DetectionParams) == []
    finally:
        node.destroy_node()


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("threads", "abc", ["threads", "'abc'", "0..256"]),  # was: "Wrong parameter type"
        ("threads", -1, ["threads", "-1", "0", "256"]),
        ("overlay", "yes", ["overlay", "'yes'", "true or false"]),
        ("overlay_alpha", "half", ["overlay_alpha", "'half'", "0.0..1.0"]),
        ("input_size", [256], ["input_size", "expected 2 values", "a list of 2 integers >= 0"]),
        ("qos", "fast", ["qos", "'fast'", "['sensor_data', 'reliable']"]),
        ("diagnostics_period", 0.0, ["diagnostics_period", "0.0", ">= 0.05"]),
    ],
)
def test_live_errors_name_parameter_value_and_range(rclpy_context, name, value, words):
    node = LaneSegmentationNode(context=rclpy_context)
    try:
        before = node.describe_parameter(name).type
        res = node.set_parameters([Parameter(name, value=value)])[0]
        assert not res.successful
        assert "\n" not in res.reason and all(w in res.reason for w in words), res.reason
        assert node.describe_parameter(name).type == before  # the rejected type is not kept
    finally:
        node.destroy_node()


def _read_until(proc: subprocess.Popen, wanted: int, timeout_s: float) -> list:
    """Error lines the process writes, until ``wanted`` of them or ``timeout_s``.

    Reads the pipe's file descriptor directly: a buffered ``readline`` after ``select`` can pull
    both error lines into Python's buffer at once, and ``select`` then never fires for the
    second one (this test failed that way once, on a fresh clone)."""
    import os
    import selectors

    fd = proc.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    errors: list = []
    pending = b""
    end = time.monotonic() + timeout_s
    while len(errors) < wanted and time.monotonic() < end and proc.poll() is None:
        if sel.select(timeout=0.5):
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            errors += [ln.decode("utf-8", "replace").strip() for ln in lines if b"[ERROR]" in ln]
    return errors


def test_command_line_bad_values_log_one_line_each_and_the_node_lives():
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_perception.ros.lane_node", "--ros-args"]
        + ["-p", "threads:=abc", "-p", "overlay_alpha:=-1.0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        errors = _read_until(proc, 2, 90.0)
        assert proc.poll() is None, "the node died at start-up"
        assert len(errors) == 2, errors
        assert (
            "threads: expected an integer, got 'abc'; allowed: an integer in 0..256" in (errors[0])
        )
        assert (
            "overlay_alpha: -1.0 is below the minimum 0.0; allowed: a number in 0.0..1.0"
            in (errors[1])
        )
        time.sleep(3.0)  # spinning by now: Ctrl-C is a clean exit
        assert proc.poll() is None, "the node died after logging the bad parameters"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
