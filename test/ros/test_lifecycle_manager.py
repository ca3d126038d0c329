"""The lifecycle manager against real rclpy lifecycle nodes over DDS (loopback, own domain)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, List

import pytest

pytestmark = pytest.mark.ros


def _peer_class():
    from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

    class Peer(LifecycleNode):
        """A minimal lifecycle node recording its transitions; can be told to fail a step."""

        def __init__(self, name: str, fail_on: str = "", log: List[str] = None, **kw) -> None:
            super().__init__(name, **kw)
            self.fail_on = fail_on
            self.log = log if log is not None else []

        def _step(self, what: str):
            self.log.append("%s:%s" % (self.get_name(), what))
            if what == self.fail_on:
                return TransitionCallbackReturn.FAILURE
            return TransitionCallbackReturn.SUCCESS

        def on_configure(self, state):
            return self._step("configure")

        def on_activate(self, state):
            super().on_activate(state)
            return self._step("activate")

        def on_deactivate(self, state):
            super().on_deactivate(state)
            return self._step("deactivate")

        def on_cleanup(self, state):
            return self._step("cleanup")

    return Peer


class _Spinner:
    """Spins nodes on a background executor of the test's own context."""

    def __init__(self, context, nodes) -> None:
        from rclpy.executors import MultiThreadedExecutor

        self.executor = MultiThreadedExecutor(num_threads=2, context=context)
        for n in nodes:
            self.executor.add_node(n)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def stop(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)


def _wait(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def _state(node) -> str:
    return node._state_machine.current_state[1]


def _manager(context, names, **params):
    from edge_perception.ros.lifecycle_manager import LifecycleManager
    from rclpy.parameter import Parameter

    overrides = [Parameter("node_names", value=list(names))]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    return LifecycleManager(
        "test_manager",
        context=context,
        parameter_overrides=overrides,
        start_parameter_services=False,
    )


def test_brings_up_in_order_and_down_in_reverse(rclpy_context):
    Peer = _peer_class()
    log: List[str] = []
    a = Peer("peer_a", log=log, context=rclpy_context)
    b = Peer("peer_b", log=log, context=rclpy_context)
    mgr = _manager(rclpy_context, ["peer_a", "/peer_b"], service_timeout_s=5.0)
    spin = _Spinner(rclpy_context, [a, b, mgr])
    try:
        assert mgr.node_names == ["/peer_a", "/peer_b"]
        assert mgr.startup() is True
        assert (_state(a), _state(b)) == ("active", "active")
        assert log == [
            "peer_a:configure",
            "peer_a:activate",
            "peer_b:configure",
            "peer_b:activate",
        ]
        assert mgr.states() == {"/peer_a": "active", "/peer_b": "active"}
        # A second start-up leaves active nodes alone.
        assert mgr.startup() is True and len(log) == 4
        mgr.shutdown()
        assert log[4:] == [
            "peer_b:deactivate",
            "peer_b:cleanup",
            "peer_a:deactivate",
            "peer_a:cleanup",
        ]
        assert (_state(a), _state(b)) == ("unconfigured", "unconfigured")
        assert mgr.phase == "stopped"
    finally:
        spin.stop()


def test_failure_stops_bring_up_and_is_reported(rclpy_context):
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from edge_perception.ros.lifecycle_manager import STATUS_QOS, parse_status

    Peer = _peer_class()
    a = Peer("ok_node", context=rclpy_context)
    bad = Peer("bad_node", fail_on="configure", context=rclpy_context)
    c = Peer("late_node", context=rclpy_context)
    mgr = _manager(rclpy_context, ["ok_node", "bad_node", "late_node"], service_timeout_s=5.0)
    listener = rclpy.create_node("status_listener", context=rclpy_context)
    got: List[DiagnosticArray] = []
    listener.create_subscription(DiagnosticArray, "/test_manager/status", got.append, STATUS_QOS)
    spin = _Spinner(rclpy_context, [a, bad, c, mgr, listener])
    try:
        assert mgr.startup() is False
        assert _state(a) == "active"
        assert _state(bad) == "unconfigured"
        assert _state(c) == "unconfigured"  # stop_on_failure: never configured
        states = mgr.states()
        assert states["/bad_node"] == "failed" and states["/late_node"] == "skipped"
        assert _wait(lambda: got and parse_status(got[-1])[0] == "failed")
        last = got[-1]
        errors = [s for s in last.status if s.level == DiagnosticStatus.ERROR]
        assert any("bad_node configure failed" in s.message for s in errors)
    finally:
        spin.stop()


def test_continue_on_failure_and_missing_node_times_out(rclpy_context):
    Peer = _peer_class()
    late = Peer("after_missing", context=rclpy_context)
    mgr = _manager(
        rclpy_context,
        ["no_such_node", "after_missing"],
        stop_on_failure=False,
        service_timeout_s=0.5,
    )
    spin = _Spinner(rclpy_context, [late, mgr])
    try:
        t0 = time.monotonic()
        assert mgr.startup() is False
        assert time.monotonic() - t0 < 5.0
        assert mgr.states()["/no_such_node"] == "failed"
        assert _state(late) == "active"
    finally:
        spin.stop()


def test_empty_node_list_is_rejected(rclpy_context):
    with pytest.raises(ValueError, match="node_names"):
        _manager(rclpy_context, [""])


def test_main_process_shuts_down_nodes_on_sigint(rclpy_context):
    """``python -m ...lifecycle_manager`` activates a node, and on SIGINT cleans it up."""
    Peer = _peer_class()
    log: List[str] = []
    peer = Peer("proc_peer", log=log, context=rclpy_context)
    spin = _Spinner(rclpy_context, [peer])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_perception.ros.lifecycle_manager",
            "--ros-args",
            "-r",
            "__node:=proc_manager",
            "-p",
            "node_names:=[proc_peer]",
            "-p",
            "diagnostics_period_s:=0.0",
        ],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert _wait(lambda: _state(peer) == "active", timeout=20.0), proc.poll()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20.0)
        assert proc.returncode == 0, out
        assert _state(peer) == "unconfigured"
        assert log == [
            "proc_peer:configure",
            "proc_peer:activate",
            "proc_peer:deactivate",
            "proc_peer:cleanup",
        ]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        spin.stop()


def test_monitor_reports_a_node_that_leaves_active_or_exits(rclpy_context):
    """A node deactivated behind the manager's back, and a node process that exits."""
    from pathlib import Path

    Peer = _peer_class()
    a = Peer("mon_a", context=rclpy_context)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "test_runner_peer", "--ros-args", "-r", "__node:=mon_b"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    mgr = _manager(rclpy_context, ["mon_a", "mon_b"], monitor_period_s=0.2)
    spin = _Spinner(rclpy_context, [a, mgr])
    try:
        assert mgr.startup() is True
        a.trigger_deactivate()
        assert _wait(lambda: mgr.states()["/mon_a"] == "left active: inactive")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        assert _wait(lambda: mgr.states()["/mon_b"] == "unreachable", timeout=15.0)
        a.trigger_activate()
        assert _wait(lambda: mgr.states()["/mon_a"] == "active")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        spin.stop()


@pytest.mark.ros
def test_outstanding_transition_policy():
    """Lost change_state replies: goal reached -> done; idle twice in the start state -> resend."""
    from edge_perception.ros.lifecycle_manager import TRANSITION_ENDS, after_poll
    from lifecycle_msgs.msg import State, Transition

    start, goal = TRANSITION_ENDS[Transition.TRANSITION_CONFIGURE]
    assert (start, goal) == (State.PRIMARY_STATE_UNCONFIGURED, State.PRIMARY_STATE_INACTIVE)
    assert after_poll(goal, start, goal, 1) == ("done", 0)
    assert after_poll(None, start, goal, 1) == ("wait", 0)  # busy in on_configure
    configuring = State.TRANSITION_STATE_CONFIGURING
    assert after_poll(configuring, start, goal, 0) == ("wait", 0)
    action, idle = after_poll(start, start, goal, 0)
    assert (action, idle) == ("wait", 1)
    assert after_poll(start, start, goal, idle) == ("resend", 0)
    down = TRANSITION_ENDS[Transition.TRANSITION_CLEANUP]
    assert down == (State.PRIMARY_STATE_INACTIVE, State.PRIMARY_STATE_UNCONFIGURED)
