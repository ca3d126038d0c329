"""The real node processes survive their own lifecycle (issue 12, findings 1 and 5).

``python -m edge_perception.ros.lane_node`` / ``detection_node`` driven through the lifecycle
services: cleanup used to destroy the ``/diagnostics`` publisher (``self._publishers`` replaced
rclpy's own list), so the next diagnostics tick killed the process with exit 1. Here: cycles of
configure -> activate -> frames -> deactivate -> cleanup -> configure with ``/diagnostics`` checked
after every step, shutdown, the process still alive afterwards, and exit 0 on Ctrl-C.

And at Ctrl-C a frame in flight must not log ``[ERROR] frame failed: RCLError: publisher's
context is invalid``: this file, run as a script, is a lane node whose ``publish_results`` says
``IN_FLIGHT`` and waits 1 s; the test sends SIGINT right then.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List

import pytest

if __name__ != "__main__":
    pytest.importorskip("rclpy")

HERE = Path(__file__).resolve()
pytestmark = pytest.mark.ros


def _inflight_main(argv: List[str]) -> int:
    """A lane node that holds every frame 1 s in ``publish_results`` (after saying so)."""
    import rclpy
    from edge_perception.ros.lane_node import LaneSegmentationNode
    from edge_perception.ros.node_base import spin_node

    class HoldingLaneNode(LaneSegmentationNode):
        def publish_results(self, header, output, rgb):
            print("IN_FLIGHT", flush=True)
            time.sleep(1.0)
            super().publish_results(header, output, rgb)

    rclpy.init(args=argv)
    node = HoldingLaneNode()
    node.trigger_configure()
    node.trigger_activate()
    spin_node(node)
    return 0


if __name__ == "__main__":
    sys.exit(_inflight_main(sys.argv))

from _node_harness import ALL_TRANSITIONS, RELIABLE, STATE_LABELS, frame  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from edge_perception.ros.convert import array_to_image, make_header  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from tiny_models import detector_onnx, lane_onnx  # noqa: E402

from edge_perception_msgs.msg import FrameTiming  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {"lane": lane_onnx(str(d / "lane.onnx")), "det": detector_onnx(str(d / "det.onnx"))}


class Proc:
    """A node process, its output collected by a thread, and a peer node driving it."""

    def __init__(self, ctx, cmd: List[str], name: str, topic: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ
        )
        self.lines: List[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.peer = Node("proc_peer", context=ctx)
        self.ex = SingleThreadedExecutor(context=ctx)
        self.ex.add_node(self.peer)
        self.diag: List = []
        self.timing: List = []
        self.peer.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, RELIABLE)
        self.peer.create_subscription(FrameTiming, f"/{name}/timing", self.timing.append, RELIABLE)
        self.pub = self.peer.create_publisher(Image, topic, RELIABLE)
        self.change = self.peer.create_client(ChangeState, f"/{name}/change_state")
        self.get = self.peer.create_client(GetState, f"/{name}/get_state")
        self._stream = None

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _on_diag(self, arr) -> None:
        self.diag.extend(st for st in arr.status if st.name.startswith(self.name + ":"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def spin_until(self, cond, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            assert self.proc.poll() is None, (
                f"node exited {self.proc.returncode}:\n{self.output()}"
            )
            self.ex.spin_once(timeout_sec=0.02)
        return cond()

    def call(self, client, request):
        assert self.spin_until(client.service_is_ready, 30.0), "service not ready"
        future = client.call_async(request)
        assert self.spin_until(future.done, 30.0), "service call timed out"
        return future.result()

    def go(self, step: str) -> None:
        req = ChangeState.Request()
        req.transition.id = ALL_TRANSITIONS[step]
        assert self.call(self.change, req).success, (step, self.output())

    def state(self) -> str:
        return STATE_LABELS[self.call(self.get, GetState.Request()).current_state.id]

    def diag_says(self, label: str, ticks: int = 3) -> bool:
        """``ticks`` fresh /diagnostics statuses arrive, the last reporting ``label``."""
        start = len(self.diag)

        def ok() -> bool:
            new = self.diag[start:]
            return len(new) >= ticks and any(
                kv.key == "state" and kv.value == label for kv in new[-1].values
            )

        return self.spin_until(ok, 15.0)

    def stream(self, on: bool) -> None:
        if self._stream is not None:
            self.peer.destroy_timer(self._stream)
            self._stream = None
        if on:
            img = frame(5)
            self._stream = self.peer.create_timer(
                0.05,
                lambda: self.pub.publish(array_to_image(img, "rgb8", make_header(time.time_ns()))),
            )

    def sigint(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(timeout=30)
        self._reader.join(timeout=5)
        return rc

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stream(False)
        self.ex.remove_node(self.peer)
        self.peer.destroy_node()
        self.ex.shutdown()


def _cmd(module: str, name: str, model: str, topic: str) -> List[str]:
    return [
        sys.executable, "-m", module, "--ros-args", "-r", f"__node:={name}",
        "-p", f"model:={model}", "-p", f"input_topic:={topic}", "-p", "qos:=reliable",
        "-p", "diagnostics_period:=0.2", "-p", "warmup_runs:=0", "-p", "threads:=1",
        "-p", "overlay:=false",
    ]  # fmt: skip


def _assert_clean(p: Proc) -> None:
    out = p.output()
    for bad in ("Traceback", "InvalidHandle", "frame failed", "[ERROR]"):
        assert bad not in out, out


def test_lane_node_process_cycles_cleanup_configure_then_shutdown(rclpy_context, models):
    name, topic = "lane_cycle", "/cycle/image"
    p = Proc(rclpy_context, _cmd("edge_perception.ros.lane_node", name, models["lane"], topic),
             name, topic)  # fmt: skip
    try:
        assert p.diag_says("unconfigured", 1)
        p.stream(True)
        for _cycle in range(2):
            p.go("configure")
            assert p.diag_says("inactive")
            p.go("activate")
            n = len(p.timing)
            assert p.spin_until(lambda n=n: len(p.timing) >= n + 3, 20.0), "no frames processed"
            assert p.diag_says("active")
            p.go("deactivate")
            assert p.diag_says("inactive")
            p.go("cleanup")
            assert p.diag_says("unconfigured")  # the process died here before the fix
        p.go("configure")
        p.go("activate")
        assert p.diag_says("active")
        p.go("active_shutdown")
        assert p.state() == "finalized"
        assert p.diag_says("finalized", 5)  # alive, still reporting
        assert p.sigint() == 0, p.output()
        _assert_clean(p)
    finally:
        p.close()


@pytest.mark.parametrize("start", ["unconfigured", "inactive"])
def test_detection_node_process_shutdown_exits_clean(rclpy_context, models, start):
    name, topic = f"det_{start}", f"/det_{start}/image"
    p = Proc(rclpy_context, _cmd("edge_perception.ros.detection_node", name, models["det"], topic),
             name, topic)  # fmt: skip
    try:
        assert p.diag_says("unconfigured", 1)
        if start == "inactive":
            p.go("configure")
            p.go("cleanup")
            assert p.diag_says("unconfigured")
            p.go("configure")
            assert p.diag_says("inactive")
        p.go(f"{start}_shutdown")
        assert p.diag_says("finalized", 5)
        assert p.sigint() == 0, p.output()
        _assert_clean(p)
    finally:
        p.close()


def test_ctrl_c_with_a_frame_in_flight_logs_no_error(rclpy_context, models):
    name, topic = "lane_inflight", "/inflight/image"
    cmd = [sys.executable, str(HERE)] + _cmd("x", name, models["lane"], topic)[3:]
    p = Proc(rclpy_context, cmd, name, topic)
    try:
        assert p.spin_until(lambda: p.pub.get_subscription_count() > 0, 30.0)
        p.stream(True)
        assert p.spin_until(lambda: "IN_FLIGHT" in p.lines, 30.0), p.output()
        p.stream(False)
        assert p.sigint() == 0, p.output()
        _assert_clean(p)
    finally:
        p.close()
