"""``PerceptionNodeBase``: the lifecycle node shared by the lane, detection and video nodes.

Subclasses set ``config_class`` and ``task`` and implement :meth:`make_pipeline` and
:meth:`publish_results` (plus, optionally, :meth:`create_publishers` for their result topics,
made with :meth:`add_publisher` so the base activates and releases them).

Lifecycle:

- *configure*: read and validate the parameters (:mod:`edge_perception.ros.params`), load the
  backend and pipeline, warm up, create publishers. A bad parameter or a missing / corrupt model
  returns FAILURE with the reason logged (and in ``/diagnostics``); the node stays unconfigured
  and alive, ready for another try.
- *activate*: subscribe to ``input_topic`` (sensor-data QoS, or reliable) and start the worker
  thread. The subscription callback only stores the latest frame in a one-slot mailbox
  (:class:`~edge_perception.runtime.mailbox.LatestMailbox`); a frame replaced before the worker
  took it counts as dropped. The worker decodes, runs the pipeline off the executor thread and
  publishes results and ``~/timing`` (``FrameTiming``) with the source header.
- *deactivate*: unsubscribe, stop the worker, reset pipeline state. *cleanup*: release the
  pipeline and the publishers this class made (never rclpy's own, nor ``/diagnostics``, whose
  publisher and timer live from construction to ``destroy_node``). *shutdown*: both, from any
  state; the node stays alive (finalized) until its process ends.

Bad input never stops the node (see :mod:`edge_perception.runtime.health`):

- malformed images are dropped and counted per kind;
- a frame whose stamp is zero, older than ``max_stamp_age`` or ahead of the node clock (which
  follows ``/clock`` under ``use_sim_time``) by more than ``future_stamp_tolerance`` is processed
  and published, but its latency is unknown: ``FrameTiming.end_to_end_ms`` is NaN and it is left
  out of the latency statistics; it is counted per kind (``stamp_zero``, ``stamp_stale``, ...);
- each kind of bad input is logged at most once per ``diagnostics_window`` seconds, with the
  count since the previous line (a camera that breaks hours after configure shows in the log).

``/diagnostics`` (``DiagnosticArray``, every ``diagnostics_period`` s, from construction on)
reports the lifecycle state, backend, fps, latency percentiles, totals since configure and the
counts of the last ``diagnostics_window`` seconds (``recent_*``), which set the level: WARN for
bad input in the window or an input rate below ``min_input_rate``, ERROR when no frame came for
``stall_timeout`` s while active (or configure failed). At Ctrl-C a frame in flight is abandoned
quietly (the context is gone; its results could not be published).

Python 3.8 compatible.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from edge_perception.backends.base import BackendError
from edge_perception.backends.factory import create_backend
from edge_perception.config import NodeConfig
from edge_perception.ros.convert import ImageDecodeError, image_to_array, stamp_to_ns, timing_msg
from edge_perception.ros.params import declare_config, install_validator, read_config
from edge_perception.ros.qos import output_profile
from edge_perception.runtime.health import (
    ERROR,
    OK,
    WARN,
    EventWindow,
    InputMonitor,
    ThrottledReporter,
    check_stamp,
)
from edge_perception.runtime.mailbox import LatestMailbox, RunningStats
from edge_perception.runtime.pipeline import FrameOutput, Pipeline
from edge_perception_msgs.msg import FrameTiming

_SUCCESS = TransitionCallbackReturn.SUCCESS
_FAILURE = TransitionCallbackReturn.FAILURE


def resolve_model_path(model: str) -> str:
    """A model path as given when it exists, else under ``$EP_ROOT/models`` or the package's
    installed ``share/edge_perception/models``; the original path when found nowhere."""
    if not model or os.path.isabs(model) or os.path.exists(model):
        return model
    roots: List[str] = []
    if os.environ.get("EP_ROOT"):
        roots.append(os.environ["EP_ROOT"])
    try:
        from ament_index_python.packages import get_package_share_directory

        roots.append(get_package_share_directory("edge_perception"))
    except Exception:  # noqa: BLE001 - no ament index (plain pip install)
        pass
    for root in roots:
        for cand in (os.path.join(root, model), os.path.join(root, "models", model)):
            if os.path.exists(cand):
                return cand
    return model


def input_qos(kind: str) -> QoSProfile:
    """Subscription QoS: ``sensor_data`` (best effort, shallow) or ``reliable`` (depth 5)."""
    if kind == "reliable":
        return QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    return qos_profile_sensor_data


class PerceptionNodeBase(LifecycleNode):
    """Lifecycle perception node; see the module docstring."""

    config_class = NodeConfig
    task = "perception"
    #: topic of the per-frame FrameTiming messages
    timing_topic = "~/timing"

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        declare_config(self, self.config_class)
        self.config: Any = None
        self.pipeline: Optional[Pipeline] = None
        self.mailbox: LatestMailbox[Image] = LatestMailbox()
        self.stats = RunningStats()
        # Ours only: rclpy's Node keeps its own ``_publishers`` list (/diagnostics is in it).
        self._own_publishers: List[Any] = []
        self._timing_pub: Any = None
        self._subscription: Any = None
        self._worker: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state_label = "unconfigured"
        self._last_error = ""
        self._reporter = ThrottledReporter(10.0)
        self._recent = EventWindow(10.0)
        self._input = InputMonitor(10.0)
        self._stamp_counts: Dict[str, int] = {}
        self._stall_logged = False
        self._dropped_reported = 0
        self._last_src_hw: Optional[Tuple[int, int]] = None
        self._last_stamp_ns = 0
        self._last_good_stamp_ns = 0
        install_validator(self, self.config_class, self._on_params_accepted)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        try:  # validated at configure; a bad value here must not kill the node
            period = max(0.05, float(self.get_parameter("diagnostics_period").value))
        except (TypeError, ValueError):
            period = 1.0
        self._diag_timer = self.create_timer(period, self.publish_diagnostics)

    # ------------------------------------------------------------------ subclass interface
    def make_pipeline(self, backend: Any, config: Any) -> Pipeline:  # pragma: no cover
        """Build the pipeline around a loaded backend (may raise ValueError / BackendError)."""
        raise NotImplementedError

    def create_publishers(self, config: Any) -> None:
        """Create the result publishers (use :meth:`add_publisher`); called in configure."""

    def publish_results(
        self, header: Header, output: FrameOutput, rgb: np.ndarray
    ) -> None:  # pragma: no cover
        """Publish one frame's results; ``header`` is the source image's (copy it into msgs)."""
        raise NotImplementedError

    def add_publisher(self, msg_type: Any, topic: str, qos: Any = 10) -> Any:
        """A lifecycle publisher (publishes only while active) released on cleanup."""
        # ``output_qos`` / ``output_depth`` (edge_perception.ros.qos) apply to a depth given here.
        pub = self.create_lifecycle_publisher(msg_type, topic, output_profile(self.config, qos))
        self._own_publishers.append(pub)
        return pub

    def on_parameters_changed(self, config: Any) -> None:
        """Hook: a validated parameter change was accepted (live-tunable settings go here).

        Settings of the model (file, backend, input size, ...) apply at the next configure.
        """

    def open_backend(self, kind: str, model: str, options: Dict[str, Any], config: Any) -> Any:
        """The backend of the configured ``model`` (a hook: the VIS node fuses its head graph
        into the model it loads)."""
        return create_backend(kind, model, **options)

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            cfg = read_config(self, self.config_class)
        except ValueError as exc:
            return self._fail("configure", f"invalid parameter: {exc}")
        backend = None
        try:
            bcfg = cfg.backend_config()
            bcfg.model = resolve_model_path(bcfg.model)
            if not bcfg.model:
                raise BackendError("parameter 'model' is empty: name a model file")
            kind, opts = bcfg.resolved_kind(), bcfg.options()
            if kind == "pytorch":
                opts.setdefault("task", self.task)  # I/O contract + training-checkpoint loader
            backend = self.open_backend(kind, bcfg.model, opts, cfg)
            pipeline = self.make_pipeline(backend, cfg)
            pipeline.warmup(cfg.warmup_runs)
        except (BackendError, ValueError, OSError) as exc:
            if backend is not None:
                backend.close()
            return self._fail("configure", str(exc))
        except Exception as exc:  # noqa: BLE001 - anything else: still FAILURE, node lives on
            if backend is not None:
                backend.close()
            return self._fail("configure", f"{type(exc).__name__}: {exc}")
        with self._lock:
            self.config = cfg
            self.pipeline = pipeline
        if abs(self._diag_timer.timer_period_ns / 1e9 - cfg.diagnostics_period) > 1e-6:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self.create_timer(cfg.diagnostics_period, self.publish_diagnostics)
        self._timing_pub = self.add_publisher(FrameTiming, self.timing_topic, 10)
        self.create_publishers(cfg)
        self.stats.reset()
        self._configure_health(cfg)
        self._last_error = ""
        self._set_state("inactive")
        info = pipeline.describe()
        self.get_logger().info(
            f"configured: {info.get('backend')} {info.get('model')} "
            f"input {info.get('input_size')} ({info.get('device')})"
        )
        return _SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        cfg = self.config
        self.mailbox.reopen()
        self._stop.clear()
        self._dropped_reported = self.mailbox.dropped
        self._input.start(time.monotonic())
        # input_transport: raw Image on input_topic, or CompressedImage on <input_topic>/compressed
        from edge_perception.ros.convert import input_subscription

        msg_type, topic = input_subscription(cfg.input_topic, cfg.input_transport)
        self._subscription = self.create_subscription(
            msg_type, topic, self._on_image, input_qos(cfg.qos)
        )
        self._worker = threading.Thread(
            target=self._work, name=f"{self.get_name()}-inference", daemon=True
        )
        self._worker.start()
        self._set_state("active")
        self.get_logger().info(
            f"active: subscribed to {self._subscription.topic_name} ({cfg.qos} QoS)"
        )
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._set_state("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._release()
        self._set_state("unconfigured")
        return _SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._release()
        self._set_state("finalized")
        return _SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._release()
        self._set_state("unconfigured")
        return _SUCCESS

    def destroy_node(self) -> None:
        self._stop_worker()
        self._release()
        self.destroy_timer(self._diag_timer)
        super().destroy_node()

    # ------------------------------------------------------------------ internals
    def _fail(self, what: str, reason: str) -> TransitionCallbackReturn:
        self._last_error = f"{what} failed: {reason}"
        self.get_logger().error(self._last_error)
        self._set_state("unconfigured")
        return _FAILURE

    def _set_state(self, label: str) -> None:
        self._state_label = label

    def _on_params_accepted(self, config: Any) -> None:
        if self.config is not None:
            self.on_parameters_changed(config)

    def _release(self) -> None:
        with self._lock:
            pipeline, self.pipeline = self.pipeline, None
        if pipeline is not None:
            pipeline.close()
        pubs, self._own_publishers = self._own_publishers, []
        for pub in pubs:
            self.destroy_lifecycle_publisher(pub)
        self._timing_pub = None

    def _stop_worker(self) -> None:
        if self._subscription is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None
        self._stop.set()
        self._input.stop()
        self.mailbox.close()
        worker, self._worker = self._worker, None
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=10.0)
        self.mailbox.clear()
        if self.pipeline is not None:
            self.pipeline.reset()
        self._last_src_hw = None
        self._last_good_stamp_ns = 0

    def _on_image(self, msg: Image) -> None:
        """Subscription callback: store the newest frame only (the worker does the rest)."""
        self._input.frame(time.monotonic())
        self.mailbox.put(msg)

    def _work(self) -> None:
        while not self._stop.is_set():
            item = self.mailbox.take(timeout=0.2)
            if item is None:
                continue
            if not self.context.ok():
                break  # Ctrl-C: rclpy's signal handler shut the context down; nothing to publish
            msg, received = item
            try:
                self._process(msg, received)
            except Exception as exc:  # noqa: BLE001 - keep serving; report in diagnostics
                if self._stop.is_set() or not self.context.ok():
                    # Ctrl-C while this frame was in flight: its publishers' context went away
                    # under it. Not a frame failure; the worker ends with the process.
                    break
                self.stats.count_error()
                self._last_error = f"frame failed: {type(exc).__name__}: {exc}"
                self._report_bad("frame_error", self._last_error, error=True)

    # ------------------------------------------------------------------ bad-input bookkeeping
    def _configure_health(self, cfg: Any) -> None:
        window = float(cfg.diagnostics_window)
        self._reporter = ThrottledReporter(window)
        self._recent = EventWindow(window)
        self._input = InputMonitor(window, float(cfg.min_input_rate), float(cfg.stall_timeout))
        self._stamp_counts = {}
        self._stall_logged = False

    def _report_bad(self, kind: str, text: str, error: bool = False) -> None:
        """Count one bad-input event of ``kind`` in the window; log it, throttled per kind."""
        now = time.monotonic()
        self._recent.add(kind, now)
        n = self._reporter.hit(kind, now, text)
        if n is None:
            return
        period = self._reporter.period_s
        if n == 1:
            tail = f"at most one line per {period:g} s for this kind; counts in /diagnostics"
        else:
            tail = f"{n} of this kind since the last report; counts in /diagnostics"
        log = self.get_logger()
        (log.error if error else log.warning)(f"{text} ({tail})")

    def _check_stamp(self, stamp_ns: int) -> Optional[str]:
        """None when the stamp gives a latency on the node clock, else its kind (counted and
        reported); a valid stamp older than the previous valid one counts as backwards."""
        cfg = self.config
        now_ns = self.get_clock().now().nanoseconds
        bad = check_stamp(
            stamp_ns, now_ns, float(cfg.max_stamp_age), float(cfg.future_stamp_tolerance)
        )
        if bad is not None:
            self._count_stamp(bad)
            self._report_bad(
                f"stamp_{bad}",
                f"frame stamp {stamp_ns * 1e-9:.3f} s is {bad} (node clock {now_ns * 1e-9:.3f} "
                "s): processed, latency left out of the statistics",
            )
            return bad
        if stamp_ns < self._last_good_stamp_ns:
            self._count_stamp("backwards")  # e.g. a bag loop; the latency itself is valid
        self._last_good_stamp_ns = stamp_ns
        return None

    def _count_stamp(self, kind: str) -> None:
        with self._lock:
            self._stamp_counts[kind] = self._stamp_counts.get(kind, 0) + 1

    def _report_suppressed(self) -> None:
        """Summarise bad input suppressed by the throttle once its period has passed."""
        for kind, n, text in self._reporter.due(time.monotonic()):
            log = self.get_logger()
            (log.error if kind == "frame_error" else log.warning)(
                f"{text} ({n} of this kind since the last report; counts in /diagnostics)"
            )

    def _process(self, msg: Image, received: float) -> None:
        pipeline = self.pipeline
        if pipeline is None:
            return
        t0 = time.perf_counter()
        try:
            rgb = image_to_array(msg)
        except ImageDecodeError as exc:
            self.stats.count_malformed(exc.kind)
            self._report_bad(
                f"malformed_{exc.kind}", f"dropping malformed image ({exc.kind}): {exc}"
            )
            return
        decode_ms = (time.perf_counter() - t0) * 1e3
        src_hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        stamp_ns = stamp_to_ns(msg.header.stamp)
        bad_stamp = self._check_stamp(stamp_ns)
        if self._last_src_hw is not None and (
            src_hw != self._last_src_hw or stamp_ns < self._last_stamp_ns
        ):
            # Video state does not survive a new camera size or time going back (bag loop).
            pipeline.reset()
        self._last_src_hw = src_hw
        self._last_stamp_ns = stamp_ns
        out = pipeline.process(rgb)
        out.times.preprocess_ms += decode_ms
        t1 = time.perf_counter()
        self.publish_results(msg.header, out, rgb)
        out.times.postprocess_ms += (time.perf_counter() - t1) * 1e3
        now_ns = self.get_clock().now().nanoseconds
        e2e_ms = (now_ns - stamp_ns) / 1e6 if bad_stamp is None else float("nan")
        dropped_total = self.mailbox.dropped
        dropped = dropped_total - self._dropped_reported
        self._dropped_reported = dropped_total
        if self._timing_pub is not None:
            self._timing_pub.publish(
                timing_msg(
                    msg.header,
                    self.get_name(),
                    pipeline.backend.info.kind,
                    out.times.preprocess_ms,
                    out.times.inference_ms,
                    out.times.postprocess_ms,
                    e2e_ms,
                    keyframe=out.keyframe,
                    frames_dropped=dropped,
                )
            )
        latencies = {
            "inference_ms": out.times.inference_ms,
            "node_ms": (time.monotonic() - received) * 1e3,
        }
        if bad_stamp is None:
            latencies["end_to_end_ms"] = e2e_ms
        self.stats.record(**latencies)

    # ------------------------------------------------------------------ diagnostics
    def diagnostic_values(self) -> Dict[str, str]:
        """Key/values of this node's diagnostics status (subclasses may extend)."""
        snap = self.stats.snapshot()
        values: Dict[str, str] = {
            "state": self._state_label,
            "frames_received": str(self.mailbox.received),
            "frames_processed": str(snap["processed"]),
            "frames_dropped": str(self.mailbox.dropped),
            "frame_errors": str(snap["errors"]),
            "malformed": str(sum(snap["malformed"].values())),
            "fps": f"{self.stats.fps():.2f}",
        }
        for kind, n in sorted(snap["malformed"].items()):
            values[f"malformed_{kind}"] = str(n)
        with self._lock:
            stamps = dict(self._stamp_counts)
        values["stamp_invalid"] = str(sum(n for k, n in stamps.items() if k != "backwards"))
        for kind, n in sorted(stamps.items()):
            values[f"stamp_{kind}"] = str(n)
        now = time.monotonic()
        window = self._recent.window_s
        values["window_s"] = f"{window:g}"
        for kind, n in sorted(self._recent.counts(now).items()):
            values[f"recent_{kind}"] = str(n)
        if self._input.active:
            values["input_rate_hz"] = f"{self._input.rate(now):.2f}"
            values["since_last_frame_s"] = f"{self._input.since_last(now) or 0.0:.2f}"
        for series in ("inference_ms", "node_ms", "end_to_end_ms"):
            for q, v in self.stats.percentiles(series).items():
                values[f"{series}_{q}"] = f"{v:.2f}"
        pipeline = self.pipeline
        if pipeline is not None:
            values.update({k: str(v) for k, v in pipeline.describe().items()})
        if self._last_error:
            values["last_error"] = self._last_error
        return values

    def diagnostic_level(self) -> Tuple[bytes, str]:
        """``(level, message)`` of the status: ERROR when configure failed or the input stalled
        while active, WARN for bad input in the last ``diagnostics_window`` s or a low input
        rate, else OK with the lifecycle state. ``level`` is a ``DiagnosticStatus`` byte."""
        if self._last_error and self.pipeline is None:
            return DiagnosticStatus.ERROR, self._last_error
        now = time.monotonic()
        in_level, in_text = self._input.status(now)
        self._log_input_change(in_level, in_text)
        parts = [in_text] if in_text else []
        recent = self._recent.counts(now)
        if recent:
            kinds = ", ".join(f"{k} x{n}" for k, n in sorted(recent.items()))
            parts.append(f"bad input in the last {self._recent.window_s:g} s: {kinds}")
        level = in_level if in_level == ERROR else (WARN if parts else OK)
        return bytes([level]), "; ".join([self._state_label] + parts)

    def _log_input_change(self, level: int, text: str) -> None:
        """One log line when the input stalls (ERROR) and one when frames come again."""
        if level == ERROR and not self._stall_logged:
            self._stall_logged = True
            self.get_logger().warning(
                f"{text} on {self._input_topic_name()} (/diagnostics: ERROR until frames come)"
            )
        elif level != ERROR and self._stall_logged:
            self._stall_logged = False
            self.get_logger().info(f"input frames again on {self._input_topic_name()}")

    def _input_topic_name(self) -> str:
        sub = self._subscription
        return sub.topic_name if sub is not None else str(getattr(self.config, "input_topic", ""))

    def publish_diagnostics(self) -> None:
        self._report_suppressed()
        values = self.diagnostic_values()
        level, message = self.diagnostic_level()
        status = DiagnosticStatus(
            level=level,
            name=f"{self.get_name()}: {self.task}",
            message=message,
            hardware_id=self.get_fully_qualified_name(),
            values=[KeyValue(key=k, value=v) for k, v in values.items()],
        )
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        try:
            self._diag_pub.publish(arr)
        except Exception:
            # Ctrl-C shuts the context down between the timer firing and this publish.
            if self.context.ok():
                raise


def spin_node(node: LifecycleNode) -> None:
    """Spin ``node`` until Ctrl-C / shutdown, then destroy it (used by the nodes' ``main``)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from edge_perception.ros.spin import spin_until_shutdown

    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        spin_until_shutdown(executor)
    finally:
        executor.remove_node(node)
        node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
