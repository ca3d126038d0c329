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
  pipeline and publishers. *shutdown*: both, from any state.

Malformed images are dropped, counted per kind and logged once per kind; the node keeps running.
``/diagnostics`` (``DiagnosticArray``, every ``diagnostics_period`` s, from construction on)
reports the lifecycle state, backend, fps, latency percentiles, dropped / malformed counts.

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
        self._publishers: List[Any] = []
        self._timing_pub: Any = None
        self._subscription: Any = None
        self._worker: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state_label = "unconfigured"
        self._last_error = ""
        self._logged_kinds: set = set()
        self._dropped_reported = 0
        self._last_src_hw: Optional[Tuple[int, int]] = None
        self._last_stamp_ns = 0
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
        pub = self.create_lifecycle_publisher(msg_type, topic, qos)
        self._publishers.append(pub)
        return pub

    def on_parameters_changed(self, config: Any) -> None:
        """Hook: a validated parameter change was accepted (live-tunable settings go here).

        Settings of the model (file, backend, input size, ...) apply at the next configure.
        """

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
            backend = create_backend(kind, bcfg.model, **opts)
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
        self._logged_kinds.clear()
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
        for pub in self._publishers:
            self.destroy_lifecycle_publisher(pub)
        self._publishers = []
        self._timing_pub = None

    def _stop_worker(self) -> None:
        if self._subscription is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None
        self._stop.set()
        self.mailbox.close()
        worker, self._worker = self._worker, None
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=10.0)
        self.mailbox.clear()
        if self.pipeline is not None:
            self.pipeline.reset()
        self._last_src_hw = None

    def _on_image(self, msg: Image) -> None:
        """Subscription callback: store the newest frame only (the worker does the rest)."""
        self.mailbox.put(msg)

    def _work(self) -> None:
        while not self._stop.is_set():
            item = self.mailbox.take(timeout=0.2)
            if item is None:
                continue
            msg, received = item
            try:
                self._process(msg, received)
            except Exception as exc:  # noqa: BLE001 - keep serving; report in diagnostics
                self.stats.count_error()
                self._last_error = f"frame failed: {type(exc).__name__}: {exc}"
                self.get_logger().error(self._last_error, throttle_duration_sec=5.0)

    def _process(self, msg: Image, received: float) -> None:
        pipeline = self.pipeline
        if pipeline is None:
            return
        t0 = time.perf_counter()
        try:
            rgb = image_to_array(msg)
        except ImageDecodeError as exc:
            self.stats.count_malformed(exc.kind)
            if exc.kind not in self._logged_kinds:
                self._logged_kinds.add(exc.kind)
                self.get_logger().warning(
                    f"dropping malformed image ({exc.kind}): {exc} "
                    "(logged once per kind; counts in /diagnostics)"
                )
            return
        decode_ms = (time.perf_counter() - t0) * 1e3
        src_hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        stamp_ns = stamp_to_ns(msg.header.stamp)
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
        e2e_ms = (now_ns - stamp_ns) / 1e6
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
        self.stats.record(
            inference_ms=out.times.inference_ms,
            node_ms=(time.monotonic() - received) * 1e3,
            end_to_end_ms=e2e_ms,
        )

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
        for series in ("inference_ms", "node_ms", "end_to_end_ms"):
            for q, v in self.stats.percentiles(series).items():
                values[f"{series}_{q}"] = f"{v:.2f}"
        pipeline = self.pipeline
        if pipeline is not None:
            values.update({k: str(v) for k, v in pipeline.describe().items()})
        if self._last_error:
            values["last_error"] = self._last_error
        return values

    def publish_diagnostics(self) -> None:
        values = self.diagnostic_values()
        level, message = DiagnosticStatus.OK, self._state_label
        if self._last_error and self.pipeline is None:
            level, message = DiagnosticStatus.ERROR, self._last_error
        elif values.get("malformed", "0") != "0" or values.get("frame_errors", "0") != "0":
            level, message = DiagnosticStatus.WARN, f"{self._state_label}; bad frames dropped"
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
