"""ROS traffic stays on loopback: a capture on the other interfaces sees none of it.

Needs tcpdump and the right to capture (root); skipped with that reason otherwise. Loopback is
captured at the same time as a control: it must show this run's DDS packets, so an empty capture on
the other interface means something. Nothing here ever opens discovery beyond the host.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.ros

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
