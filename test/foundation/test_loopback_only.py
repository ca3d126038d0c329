"""Nothing the project runs sends a packet off loopback: not DDS, not ONNX Runtime's telemetry.

- DDS: a capture on this host's other interfaces sees none of this run's DDS ports. Loopback is
  captured at the same time as a control: it must show this run's DDS packets, so an empty capture
  on the other interface means something.
- Any packet (issue 12, finding 7: ONNX Runtime's 1DS telemetry sent DNS queries for
  mobile.events.data.microsoft.com from every process that imported it): a lane node with an ORT
  session, a frame publisher and the CLIs (carla-bridge generate, edge-perception lane-eval) run in
  a network namespace of their own whose only non-loopback interface is a veth with an address and
  a default route, so any packet they would send to the network (a DNS query to the resolver of
  /etc/resolv.conf included) leaves through it; a capture of *every* packet on it must show nothing
  but the test's own control packet. A namespace of our own makes every captured packet ours: the
  host's interfaces carry other programs' traffic. IPv6 is off on that veth (else the kernel's own
  router / neighbour solicitations would show up).
- Without root: ORT's telemetry store (created in ~/.cache at import when telemetry is on) must not
  appear for a process that creates a session through the project.

Captures need tcpdump, iproute2 and the right to capture (root); skipped with that reason
otherwise. Nothing here ever opens discovery beyond the host.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[2]
LANE_MODEL = str(ROOT / "models" / "lane_small.onnx")
ORT_STORE = (".cache", "Microsoft", "DeveloperTools", ".onnxruntime")  # ORT 1.31's telemetry store

CHATTER = r"""
import sys, time, rclpy
from std_msgs.msg import String
rclpy.init()
a, b = rclpy.create_node("loop_a"), rclpy.create_node("loop_b")
got = []
b.create_subscription(String, "loop", lambda m: got.append(m), 10)
pub = a.create_publisher(String, "loop", 10)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    pub.publish(String(data="x" * 100))
    rclpy.spin_once(a, timeout_sec=0.02)
    rclpy.spin_once(b, timeout_sec=0.02)
print("received", len(got))
"""


def _dds_filter(domain: int) -> str:
    # RTPS well-known ports: PB 7400 + DG 250 * domain, + offsets below 250 (discovery and user).
    low = 7400 + 250 * domain
    return "udp portrange %d-%d" % (low, low + 249)


def _up_interfaces() -> list:
    names = [name for _, name in socket.if_nameindex() if name != "lo"]
    up = []
    for name in names:
        try:
            with open("/sys/class/net/%s/operstate" % name) as f:
                if f.read().strip() == "up":
                    up.append(name)
        except OSError:
            continue
    return up


def _tcpdump(iface: str, flt: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["tcpdump", "-i", iface, "-n", "-l", "-q", flt],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lines(proc: subprocess.Popen) -> list:
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    return [line for line in out.splitlines() if line.strip()]


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="capturing packets needs root")
def test_no_dds_traffic_leaves_loopback(ros_domain_id):
    ifaces = _up_interfaces()
    if not ifaces:
        pytest.skip("no non-loopback interface is up")
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"  # set by conftest
    flt = _dds_filter(ros_domain_id)
    caps = {name: _tcpdump(name, flt) for name in ["lo", *ifaces]}
    time.sleep(1.0)  # let tcpdump attach
    try:
        run = subprocess.run(
            [sys.executable, "-c", CHATTER, "3"], capture_output=True, text=True, timeout=60
        )
        time.sleep(1.0)
    finally:
        seen = {name: _lines(proc) for name, proc in caps.items()}
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(run.stdout.split()[-1]) > 0, run.stdout
    assert seen["lo"], "control failed: no DDS packets captured on loopback (filter %s)" % flt
    for name in ifaces:
        assert seen[name] == [], "DDS traffic left loopback on %s:\n%s" % (
            name,
            "\n".join(seen[name][:5]),
        )


# --- any packet, ONNX Runtime included ---

SESSION = r"""
import sys
from edge_perception.backends.factory import create_backend
create_backend("onnxruntime", sys.argv[1])
"""

PUBLISHER = r"""
import sys, time
import numpy as np, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from edge_perception.ros.convert import array_to_image, make_header
rclpy.init()
node = rclpy.create_node("loop_camera")
qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
got = []
node.create_subscription(Image, "/loop_lane/class_mask", got.append, qos)
pub = node.create_publisher(Image, "/loop/image", qos)
rgb = np.random.default_rng(0).integers(0, 255, (96, 160, 3), dtype=np.uint8)
end, k = time.monotonic() + float(sys.argv[1]), 0
while time.monotonic() < end:
    if pub.get_subscription_count() > 0:
        k += 1
        pub.publish(array_to_image(rgb, "rgb8", make_header(k * 1000, "cam")))
    rclpy.spin_once(node, timeout_sec=0.1)
print("masks", len(got))
"""


def _clean_env(home: str) -> dict:
    """This run's environment without the telemetry switch: the project must set it itself."""
    env = dict(os.environ, HOME=home, PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    for var in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME"):
        env.pop(var, None)
    return env


def test_ort_session_through_the_project_starts_no_telemetry(tmp_path):
    """No root needed: ORT's telemetry creates its event store at import; the project's must not.

    Control: a bare ``import onnxruntime`` without the variable does create it (where this ORT
    build has telemetry at all), so the store's absence is a real observation.
    """
    bare, ours = tmp_path / "bare", tmp_path / "ours"
    bare.mkdir()
    ours.mkdir()
    run = [sys.executable, "-c"]
    r = subprocess.run(run + ["import onnxruntime"], env=_clean_env(str(bare)), timeout=120)
    assert r.returncode == 0
    r = subprocess.run(
        run + [SESSION, LANE_MODEL], env=_clean_env(str(ours)), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    if not bare.joinpath(*ORT_STORE).exists():
        pytest.skip("this onnxruntime build keeps no telemetry store (nothing to switch off)")
    assert not ours.joinpath(*ORT_STORE).exists(), "ORT telemetry started in a project process"


class _Namespace:
    """A network namespace with lo and one veth (``ext0``, IPv4 only, default route through it)."""

    def __init__(self) -> None:
        self.name = "ep_loop_%s" % uuid.uuid4().hex[:8]
        self.exec = ["ip", "netns", "exec", self.name]

    def __enter__(self) -> _Namespace:
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        script = "; ".join(
            [
                "set -e",
                "ip link set lo up",
                "ip link add ext0 type veth peer name ext1",
                "sysctl -qw net.ipv6.conf.ext0.disable_ipv6=1 net.ipv6.conf.ext1.disable_ipv6=1",
                "ip addr add 192.0.2.77/24 dev ext0",
                "ip link set ext1 up",
                "ip link set ext0 up",
                "ip route add default via 192.0.2.1",
                # no ARP round trip: packets to the gateway leave at once, in the capture
                "ip neigh add 192.0.2.1 lladdr 02:00:00:00:00:01 dev ext0",
            ]
        )
        r = subprocess.run(self.exec + ["sh", "-c", script], capture_output=True, text=True)
        if r.returncode != 0:
            self.__exit__()
            pytest.skip("cannot set up a network namespace with a veth: %s" % r.stderr.strip())
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


CONTROL = "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'c', ('192.0.2.1', 9))"  # noqa: E501


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
@pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 (ip) is not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and captures need root")
def test_no_packet_leaves_loopback_while_node_and_clis_run(tmp_path):
    """Lane node (ORT session, frames flowing) + CLIs in a namespace: every packet is captured.

    ORT's uploader started about 9 s after the import (ORT 1.31.1): the node serves for longer.
    """
    env = _clean_env(str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    serve_s = 16.0
    with _Namespace() as ns:
        cap = subprocess.Popen(
            ns.exec + ["tcpdump", "-i", "ext0", "-n", "-l", "-q", "-U"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs = []
        try:
            time.sleep(1.0)  # let tcpdump attach
            subprocess.run(ns.exec + [sys.executable, "-c", CONTROL], check=True, timeout=30)
            node = subprocess.Popen(
                ns.exec + [
                    sys.executable, "-m", "edge_perception.ros.lane_node", "--autostart",
                    "--ros-args", "-r", "__node:=loop_lane", "-p", f"model:={LANE_MODEL}",
                    "-p", "input_topic:=/loop/image", "-p", "qos:=reliable",
                    "-p", "overlay:=false",
                ],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            procs.append(node)
            camera = subprocess.Popen(
                ns.exec + [sys.executable, "-c", PUBLISHER, str(serve_s)],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            procs.append(camera)
            data = str(tmp_path / "ds")
            clis = [
                [sys.executable, "-m", "carla_bridge.cli", "generate", "--out", data,
                 "--train-sequences", "1", "--val-sequences", "1", "--frames-per-seq", "2",
                 "--width", "160", "--height", "96", "--workers", "1"],
                [sys.executable, "-m", "edge_perception.cli", "lane-eval", "--model", LANE_MODEL,
                 "--data", data, "--limit", "2"],
            ]  # fmt: skip
            for cmd in clis:
                r = subprocess.run(
                    ns.exec + cmd, env=env, capture_output=True, text=True, timeout=300
                )
                assert r.returncode == 0, "%s\n%s" % (cmd[2:4], (r.stdout + r.stderr)[-2000:])
            out, _ = camera.communicate(timeout=120)
            node.send_signal(2)  # SIGINT
            node_out, _ = node.communicate(timeout=30)
            time.sleep(1.0)  # let the last packets reach the capture
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            seen = _lines(cap)
    assert int(out.split()[-1]) > 0, "the node served no frame:\n%s\n%s" % (out, node_out[-2000:])
    control = [line for line in seen if "192.0.2.1.9:" in line]
    assert control, "control failed: the capture did not see the control packet"
    other = [line for line in seen if line not in control]
    assert other == [], "packets left loopback:\n%s" % "\n".join(other[:10])
