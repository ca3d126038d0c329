"""Lifecycle manager: brings a list of lifecycle nodes up in order and takes them down in reverse.

It drives the standard lifecycle services of each managed node (``<node>/get_state`` and
``<node>/change_state``, lifecycle_msgs) — nothing project-specific — so it manages any ROS 2
lifecycle node, in C++ or Python.

Parameters (``ros__parameters`` of the ``lifecycle_manager`` node):

``node_names`` (string[], required)
    Nodes to manage, in bring-up order. A relative name is resolved in the manager's namespace.
``autostart`` (bool, default true)
    Configure and activate every node as soon as the manager starts.
``stop_on_failure`` (bool, default true)
    When a node fails to configure/activate, leave the later nodes alone (they stay unconfigured),
    take down those already up (deactivate, clean up) and exit with status 1, so that ``ros2
    launch`` (an ``OnProcessExit`` -> ``Shutdown`` handler on the manager, see
    :mod:`edge_perception.ros.launch_common`) and ``edge-perception run`` stop the whole
    deployment instead of idling with unconfigured nodes. False: report and keep running.
``service_timeout_s`` (float, default 20.0)
    How long to wait for a node's lifecycle services to appear (node start-up, model imports).
``transition_timeout_s`` (float, default 30.0)
    Per ``change_state``/``get_state`` call; configure may load and warm up a model. While a
    reply is outstanding the node's state is polled every second, so a reply lost to the service
    discovery race (a server can answer before it has matched the client's reply reader) neither
    hangs bring-up nor costs the whole timeout: see :func:`after_poll`.
``diagnostics_period_s`` (float, default 1.0)
    Period of the ``/diagnostics`` report; 0 disables it.
``monitor_period_s`` (float, default 2.0)
    After bring-up, how often every node's state is polled (``get_state``, non-blocking); a node
    that left ``active`` or vanished is reported as an ERROR. 0 disables it.

Topics: ``~/status`` (diagnostic_msgs/DiagnosticArray, transient-local, re-published on every
change: one status per managed node plus an overall ``<manager>: bring-up`` entry whose ``values``
hold ``phase`` (starting/active/failed/stopping/stopped) and ``active`` ("n/m")), and the same
array on ``/diagnostics`` periodically.

Shutdown (SIGINT/SIGTERM or :meth:`LifecycleManager.shutdown`): active nodes are deactivated and
then cleaned up, last node first, each call bounded by ``transition_timeout_s``.

Exit status: 0 after a signal, 1 when bring-up failed with ``stop_on_failure``, 2 for a bad
parameter of the manager (one line naming it, the value and what is allowed).

Runs on Python 3.8 (Jetson): no ``X | Y`` annotations at run time.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.client import Client
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from edge_perception.ros.params import declare_manager_parameters
from edge_perception.ros.spin import spin_until_shutdown

STATE_LABELS: Dict[int, str] = {
    State.PRIMARY_STATE_UNKNOWN: "unknown",
    State.PRIMARY_STATE_UNCONFIGURED: "unconfigured",
    State.PRIMARY_STATE_INACTIVE: "inactive",
    State.PRIMARY_STATE_ACTIVE: "active",
    State.PRIMARY_STATE_FINALIZED: "finalized",
    State.TRANSITION_STATE_CONFIGURING: "configuring",
    State.TRANSITION_STATE_CLEANINGUP: "cleaningup",
    State.TRANSITION_STATE_SHUTTINGDOWN: "shuttingdown",
    State.TRANSITION_STATE_ACTIVATING: "activating",
    State.TRANSITION_STATE_DEACTIVATING: "deactivating",
    State.TRANSITION_STATE_ERRORPROCESSING: "errorprocessing",
}

STATUS_QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


# Start and goal primary state of each transition the manager requests.
TRANSITION_ENDS: Dict[int, Tuple[int, int]] = {
    Transition.TRANSITION_CONFIGURE: (
        State.PRIMARY_STATE_UNCONFIGURED,
        State.PRIMARY_STATE_INACTIVE,
    ),
    Transition.TRANSITION_ACTIVATE: (State.PRIMARY_STATE_INACTIVE, State.PRIMARY_STATE_ACTIVE),
    Transition.TRANSITION_DEACTIVATE: (State.PRIMARY_STATE_ACTIVE, State.PRIMARY_STATE_INACTIVE),
    Transition.TRANSITION_CLEANUP: (
        State.PRIMARY_STATE_INACTIVE,
        State.PRIMARY_STATE_UNCONFIGURED,
    ),
}
GET_STATE_ATTEMPT_S = 2.0  # one get_state attempt; lost replies are retried
POLL_S = 1.0  # how often the state is polled while a change_state reply is outstanding


def after_poll(state: Optional[int], start: int, goal: int, idle_polls: int) -> Tuple[str, int]:
    """What to do when a change_state reply is still outstanding and get_state said ``state``
    (None: no answer, the node is busy). Returns (action, idle polls so far), action one of
    ``"done"`` (the node reached the goal: the reply was lost), ``"resend"`` (the node answered
    from the start state twice in a row: it is idle, so the request or the reply to a refusal was
    lost) or ``"wait"``."""
    if state == goal:
        return "done", 0
    idle_polls = idle_polls + 1 if state == start else 0
    if idle_polls >= 2:
        return "resend", 0
    return "wait", idle_polls


class TransitionError(RuntimeError):
    """A lifecycle call failed, was refused or timed out; the message names node and step."""


class _Managed:
    """Clients and last known state of one managed node."""

    def __init__(self, name: str, get_state: Client, change_state: Client) -> None:
        self.name = name
        self.get_state = get_state
        self.change_state = change_state
        self.state = "unknown"
        self.level = DiagnosticStatus.STALE
        self.message = "not started"
        self.poll: Optional[Tuple[object, float]] = None  # (pending get_state future, sent at)


class LifecycleManager(Node):
    """ROS node that configures + activates ``node_names`` in order (see the module docstring).

    :meth:`startup` and :meth:`shutdown` block on service replies, so they must run on a thread
    other than the one spinning this node (``main()`` spins a multi-threaded executor in the
    background and calls them from the main thread).
    """

    def __init__(self, node_name: str = "lifecycle_manager", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        values = declare_manager_parameters(self)
        names = [n for n in values["node_names"] if n]
        if not names:
            raise ValueError(
                "lifecycle_manager: parameter 'node_names' is empty; list the lifecycle nodes to "
                "manage, e.g. --ros-args -p node_names:=[lane_node,detection_node]"
            )
        if len(set(names)) != len(names):
            raise ValueError("lifecycle_manager: 'node_names' lists a node twice: %s" % names)
        self.autostart = bool(values["autostart"])
        self.stop_on_failure = bool(values["stop_on_failure"])
        self.service_timeout_s = float(values["service_timeout_s"])
        self.transition_timeout_s = float(values["transition_timeout_s"])
        self.phase = "idle"
        self.failure = ""  # the first bring-up error, for the exit message
        # Set (e.g. by a signal handler) to abandon a bring-up between two steps.
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._nodes: List[_Managed] = []
        for name in names:
            fq = self._resolve(name)
            self._nodes.append(
                _Managed(
                    fq,
                    self.create_client(GetState, fq + "/get_state"),
                    self.create_client(ChangeState, fq + "/change_state"),
                )
            )
        self._status_pub = self.create_publisher(DiagnosticArray, "~/status", STATUS_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        period = float(values["diagnostics_period_s"])
        if period > 0:
            self.create_timer(period, lambda: self._diag_pub.publish(self.status_array()))
        self._monitor_period = float(values["monitor_period_s"])
        if self._monitor_period > 0:
            self.create_timer(self._monitor_period, self._monitor)
        self._publish_status()

    # ------------------------------------------------------------------ public API
    @property
    def node_names(self) -> List[str]:
        """Fully qualified names of the managed nodes, in bring-up order."""
        return [m.name for m in self._nodes]

    def states(self) -> Dict[str, str]:
        """Last known state of every managed node: a lifecycle state label (``active``,
        ``unconfigured``, ...) or ``waiting``, ``failed``, ``skipped``, ``unreachable``,
        ``left active: <state>``."""
        with self._lock:
            return {m.name: m.state for m in self._nodes}

    def startup(self) -> bool:
        """Configure and activate every node in order; True when all of them ended up active.

        A node already active is left alone; an inactive one is only activated. On a failure the
        node is reported (log + ``~/status``) and, with ``stop_on_failure``, later nodes are left
        unconfigured.
        """
        self._set_phase("starting")
        ok = True
        for i, m in enumerate(self._nodes):
            if self.cancelled.is_set():
                ok = False
                break
            try:
                self._bring_up(m)
            except TransitionError as exc:
                ok = False
                self.failure = self.failure or str(exc)
                self._report(m, "failed", DiagnosticStatus.ERROR, str(exc))
                self.get_logger().error(str(exc))
                if self.stop_on_failure:
                    for later in self._nodes[i + 1 :]:
                        self._report(
                            later,
                            "skipped",
                            DiagnosticStatus.WARN,
                            "not started: %s failed" % m.name,
                        )
                    break
        self._set_phase("active" if ok else "failed")
        if ok:
            self.get_logger().info("all %d lifecycle nodes active" % len(self._nodes))
        return ok

    def shutdown(self) -> None:
        """Deactivate then clean up every node, last first; failures are logged, never raised."""
        self._set_phase("stopping")
        timeout = min(self.transition_timeout_s, 10.0)
        for m in reversed(self._nodes):
            try:
                state = self._get_state(m, timeout=min(timeout, 2.0), wait=False)
                if state == State.PRIMARY_STATE_ACTIVE:
                    self._transition(m, Transition.TRANSITION_DEACTIVATE, "deactivate", timeout)
                    state = State.PRIMARY_STATE_INACTIVE
                if state == State.PRIMARY_STATE_INACTIVE:
                    self._transition(m, Transition.TRANSITION_CLEANUP, "cleanup", timeout)
                self._report(m, "unconfigured", DiagnosticStatus.OK, "stopped")
            except TransitionError as exc:
                self._report(m, "unreachable", DiagnosticStatus.WARN, str(exc))
                self.get_logger().warning("shutdown: %s" % exc)
        self._set_phase("stopped")

    def status_array(self) -> DiagnosticArray:
        """The current report: an overall entry then one DiagnosticStatus per managed node."""
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        me = self.get_fully_qualified_name()
        with self._lock:
            n_active = sum(1 for m in self._nodes if m.state == "active")
            overall = DiagnosticStatus(
                name="%s: bring-up" % me,
                hardware_id=me,
                level=_phase_level(self.phase),
                message="%s (%d/%d active)" % (self.phase, n_active, len(self._nodes)),
                values=[
                    KeyValue(key="phase", value=self.phase),
                    KeyValue(key="active", value="%d/%d" % (n_active, len(self._nodes))),
                ],
            )
            msg.status.append(overall)
            for m in self._nodes:
                msg.status.append(
                    DiagnosticStatus(
                        name="%s: %s" % (me, m.name),
                        hardware_id=m.name,
                        level=m.level,
                        message=m.message,
                        values=[KeyValue(key="state", value=m.state)],
                    )
                )
        return msg

    # ------------------------------------------------------------------ internals
    def _resolve(self, name: str) -> str:
        if name.startswith("/"):
            return name
        ns = self.get_namespace().rstrip("/")
        return "%s/%s" % (ns, name)

    def _bring_up(self, m: _Managed) -> None:
        self._report(m, "waiting", DiagnosticStatus.WARN, "waiting for lifecycle services")
        state = self._get_state(m, self.transition_timeout_s, wait=True)
        if state == State.PRIMARY_STATE_UNCONFIGURED:
            self._report(m, "configuring", DiagnosticStatus.WARN, "configuring")
            self._transition(m, Transition.TRANSITION_CONFIGURE, "configure")
            state = State.PRIMARY_STATE_INACTIVE
        if state == State.PRIMARY_STATE_INACTIVE:
            self._report(m, "activating", DiagnosticStatus.WARN, "activating")
            self._transition(m, Transition.TRANSITION_ACTIVATE, "activate")
            state = State.PRIMARY_STATE_ACTIVE
        if state != State.PRIMARY_STATE_ACTIVE:
            raise TransitionError(
                "%s is in state '%s' and cannot be activated; restart the node"
                % (m.name, STATE_LABELS.get(state, str(state)))
            )
        self._report(m, "active", DiagnosticStatus.OK, "active")
        self.get_logger().info("%s: active" % m.name)

    def _get_state(self, m: _Managed, timeout: float, wait: bool) -> int:
        """The node's current state id; retried in short attempts until ``timeout``.

        get_state is idempotent, so a reply lost to the service-discovery race (the server can
        answer before it has matched this client's reply reader, and the reply is then dropped)
        costs one attempt, not the whole timeout.
        """
        if not wait and not m.get_state.service_is_ready():
            raise TransitionError("%s: lifecycle services are gone" % m.name)
        if wait and not m.get_state.wait_for_service(timeout_sec=self.service_timeout_s):
            raise TransitionError(
                "%s: no lifecycle service %s after %.1f s; is the node running (and a lifecycle "
                "node) under that name? Raise service_timeout_s if it starts slowly"
                % (m.name, m.get_state.service_name, self.service_timeout_s)
            )
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            attempt = max(0.05, min(GET_STATE_ATTEMPT_S, left))
            try:
                reply = self._call(
                    m.get_state, GetState.Request(), attempt, "%s get_state" % m.name
                )
                return int(reply.current_state.id)
            except TransitionError:
                if time.monotonic() + 0.05 >= deadline:
                    raise TransitionError(
                        "%s get_state timed out after %.1f s (raise transition_timeout_s if the "
                        "node needs longer)" % (m.name, timeout)
                    ) from None

    def _transition(
        self, m: _Managed, transition_id: int, label: str, timeout: Optional[float] = None
    ) -> None:
        """Ask for one transition and wait for its outcome (at most ``timeout``).

        While the reply is outstanding the node's state is polled: if it already reached the
        transition's goal, the reply was lost (see :meth:`_get_state`) and the transition counts as
        done; if it answers twice in a row from the start state, the node is idle and the
        request (or the reply to a refusal) was lost, so it is sent again.
        """
        if not m.change_state.wait_for_service(timeout_sec=self.service_timeout_s):
            raise TransitionError(
                "%s: no lifecycle service %s" % (m.name, m.change_state.service_name)
            )
        start, goal = TRANSITION_ENDS[transition_id]
        what = "%s %s" % (m.name, label)
        timeout = timeout or self.transition_timeout_s
        deadline = time.monotonic() + timeout
        req = ChangeState.Request()
        req.transition.id = transition_id
        done = threading.Event()
        future = self._send(m.change_state, req, done)
        idle_polls = 0
        while not done.wait(min(POLL_S, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                self._abandon(m.change_state, future)
                raise TransitionError(
                    "%s timed out after %.1f s (raise transition_timeout_s if the node needs "
                    "longer)" % (what, timeout)
                )
            action, idle_polls = after_poll(self._poll_state(m), start, goal, idle_polls)
            if action == "done":
                self._abandon(m.change_state, future)
                self.get_logger().warning("%s: reply lost, the node reports it done" % what)
                return
            if action == "resend":
                self._abandon(m.change_state, future)
                done = threading.Event()
                future = self._send(m.change_state, req, done)
        if future.exception() is not None:
            raise TransitionError("%s: %s" % (what, future.exception()))
        if not future.result().success:
            raise TransitionError(
                "%s failed: the node refused or its on_%s callback failed (see that node's log)"
                % (what, label)
            )

    def _poll_state(self, m: _Managed) -> Optional[int]:
        """One short get_state attempt; None while the node is busy (or the reply was lost)."""
        try:
            reply = self._call(m.get_state, GetState.Request(), POLL_S, "get_state")
        except TransitionError:
            return None
        return int(reply.current_state.id)

    @staticmethod
    def _send(client: Client, request, done: threading.Event):
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        return future

    @staticmethod
    def _abandon(client: Client, future) -> None:
        client.remove_pending_request(future)
        future.cancel()

    def _call(self, client: Client, request, timeout: float, what: str):
        done = threading.Event()
        future = self._send(client, request, done)
        if not done.wait(timeout):
            self._abandon(client, future)
            raise TransitionError("%s timed out after %.1f s" % (what, timeout))
        if future.exception() is not None:
            raise TransitionError("%s: %s" % (what, future.exception()))
        return future.result()

    def _report(self, m: _Managed, state: str, level: int, message: str) -> None:
        with self._lock:
            m.state, m.level, m.message = state, _level_byte(level), message
        self._publish_status()

    def _set_phase(self, phase: str) -> None:
        with self._lock:
            self.phase = phase
        self._publish_status()

    def _monitor(self) -> None:
        """Timer: poll the nodes that bring-up left active; report those that are not any more."""
        if self.phase not in ("active", "failed"):
            return
        for m in self._nodes:
            if m.state not in ("active", "unreachable") and not m.state.startswith("left "):
                continue
            pending = m.poll
            if pending is not None and not pending[0].done():  # type: ignore[attr-defined]
                if time.monotonic() - pending[1] < max(3.0 * self._monitor_period, 2.0):
                    continue
                m.get_state.remove_pending_request(pending[0])
                m.poll = None
                self._lost(m, "no get_state reply")
                continue
            if not m.get_state.service_is_ready():
                self._lost(m, "lifecycle services gone")
                continue
            future = m.get_state.call_async(GetState.Request())
            m.poll = (future, time.monotonic())
            future.add_done_callback(lambda f, m=m: self._on_polled(m, f))

    def _lost(self, m: _Managed, why: str) -> None:
        if m.state != "unreachable":
            self._report(m, "unreachable", DiagnosticStatus.ERROR, "node vanished: " + why)
            self.get_logger().error("%s: %s (node died?)" % (m.name, why))

    def _on_polled(self, m: _Managed, future) -> None:
        if future.cancelled() or future.exception() is not None or future.result() is None:
            return
        state = int(future.result().current_state.id)
        if state == State.PRIMARY_STATE_ACTIVE:
            if m.state != "active":
                self._report(m, "active", DiagnosticStatus.OK, "active")
            return
        label = STATE_LABELS.get(state, str(state))
        if m.state != "left active: " + label:
            self._report(m, "left active: " + label, DiagnosticStatus.ERROR, "now " + label)
            self.get_logger().error("%s left the active state (now %s)" % (m.name, label))

    def _publish_status(self) -> None:
        self._status_pub.publish(self.status_array())


def _level_byte(level: int) -> bytes:
    return level if isinstance(level, bytes) else bytes([level])


def _phase_level(phase: str) -> bytes:
    if phase == "failed":
        return DiagnosticStatus.ERROR
    if phase in ("active", "stopped"):
        return DiagnosticStatus.OK
    return DiagnosticStatus.WARN


def parse_status(msg: DiagnosticArray) -> Tuple[str, Dict[str, str]]:
    """(phase, {node: state}) from a ``~/status`` message; helper for tools and tests."""
    phase = ""
    states: Dict[str, str] = {}
    for st in msg.status:
        values = {kv.key: kv.value for kv in st.values}
        if "phase" in values:
            phase = values["phase"]
        elif "state" in values:
            states[st.hardware_id] = values["state"]
    return phase, states


def main(args: Optional[Sequence[str]] = None) -> int:
    """Entry point: run the manager until SIGINT/SIGTERM, then take the nodes down in reverse.

    rclpy's own signal handlers are disabled so that the managed nodes can still be reached after
    the signal; a second signal exits at once.
    """
    argv = list(sys.argv if args is None else args)
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()

    node: Optional[LifecycleManager] = None

    def _on_signal(signum, _frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        if node is not None:
            node.cancelled.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        node = LifecycleManager()
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    spinner = threading.Thread(target=_spin, args=(executor,), daemon=True)
    spinner.start()
    status = 0
    try:
        ok = True
        if node.autostart and not stop.is_set():
            ok = node.startup()
        if not ok and node.stop_on_failure and not stop.is_set():
            node.get_logger().error(
                "bring-up failed (%s); stop_on_failure is true: taking the nodes down and "
                "exiting with status 1" % (node.failure or "cancelled")
            )
            status = 1
        else:
            while not stop.wait(0.2):
                pass
        node.shutdown()
    except KeyboardInterrupt:
        pass
    finally:
        executor.shutdown(timeout_sec=2.0)
        spinner.join(timeout=2.0)  # a spinning thread left behind aborts the process at exit
        node.destroy_node()
        rclpy.try_shutdown()
    return status


def _spin(executor: MultiThreadedExecutor) -> None:
    spin_until_shutdown(executor)


if __name__ == "__main__":
    sys.exit(main())
