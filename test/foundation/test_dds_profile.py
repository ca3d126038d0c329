"""The loopback Fast DDS profile: selected with LOCALHOST discovery, and it carries camera frames.

Large best-effort frames (640x480 rgb8, 921 KB) between two processes: with Fast DDS's default
512 KB shared-memory segments they go out as fragmented UDP and are lost under load; the project's
profile (64 MiB segments, UDP on 127.0.0.1 only) must deliver them, and 4096x2160 rgb8 (26.5 MB)
too (with the earlier 16 MiB segments 9 of 20 arrived: bench/results/dds_frame_size.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest
from edge_perception.ros.runner import LOCALHOST_PROFILE, apply_discovery_range

ECHO = r"""
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Header
rclpy.init()
node = rclpy.create_node("frame_echo")
back = node.create_publisher(Header, "frames_back", 50)
sub = node.create_subscription(
    Image, "frames", lambda m: back.publish(m.header), qos_profile_sensor_data
)
print("READY", flush=True)
try:
    rclpy.spin(node)
except Exception:
    pass
"""


def test_localhost_selects_the_profile_and_other_ranges_drop_it():
    env = apply_discovery_range({}, "localhost")
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert env["ROS_LOCALHOST_ONLY"] == "1"
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == LOCALHOST_PROFILE
    assert "FASTRTPS_DEFAULT_PROFILES_FILE" not in env  # Fast DDS 3 warns about the old name
    humble = apply_discovery_range({"ROS_DISTRO": "humble"}, "LOCALHOST")
    assert humble["FASTRTPS_DEFAULT_PROFILES_FILE"] == LOCALHOST_PROFILE  # Fast DDS 2.x reads it
    apply_discovery_range(env, "SUBNET")
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in env and env["ROS_LOCALHOST_ONLY"] == "0"
    own = apply_discovery_range({"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"}, "SUBNET")
    assert own["FASTDDS_DEFAULT_PROFILES_FILE"] == "/etc/mine.xml"  # a user's file stays


def test_profile_keeps_udp_on_loopback_and_sizes_shared_memory():
    ns = {"d": "http://www.eprosima.com"}
    root = ET.parse(LOCALHOST_PROFILE).getroot()
    udp = [
        t
        for t in root.iter("{%s}transport_descriptor" % ns["d"])
        if t.findtext("d:type", "", ns) == "UDPv4"
    ]
    assert [a.text for a in udp[0].iter("{%s}address" % ns["d"])] == ["127.0.0.1"]
    shm = [
        t
        for t in root.iter("{%s}transport_descriptor" % ns["d"])
        if t.findtext("d:type", "", ns) == "SHM"
    ]
    assert int(shm[0].findtext("d:segment_size", "0", ns)) >= 4 * 640 * 480 * 3
    frame_4k = 4096 * 2160 * 3 + 4096  # rgb8 + header and serialisation overhead
    assert int(shm[0].findtext("d:segment_size", "0", ns)) >= 2 * frame_4k  # two in flight
    assert int(shm[0].findtext("d:maxMessageSize", "0", ns)) >= frame_4k
    assert root.find(".//d:useBuiltinTransports", ns).text == "false"


def _echo_frames(context, width: int, height: int, n: int, wait_s: float) -> int:
    """Send ``n`` best-effort rgb8 frames to an echo process, one at a time; how many came back."""
    import numpy as np
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    peer = subprocess.Popen([sys.executable, "-c", ECHO], stdout=subprocess.PIPE, text=True)
    try:
        assert peer.stdout.readline().strip() == "READY"
        node = rclpy.create_node("frame_source", context=context)
        ex = SingleThreadedExecutor(context=context)
        ex.add_node(node)
        got = set()
        node.create_subscription(Header, "frames_back", lambda h: got.add(h.frame_id), 50)
        pub = node.create_publisher(Image, "frames", qos_profile_sensor_data)
        end = time.monotonic() + 20
        while pub.get_subscription_count() == 0 and time.monotonic() < end:
            ex.spin_once(timeout_sec=0.05)
        time.sleep(0.5)  # let the echo's reply publisher match too
        size = width * height * 3
        data = np.random.default_rng(0).integers(0, 255, size, np.uint8).tobytes()
        msg = Image(height=height, width=width, encoding="rgb8", step=width * 3, data=data)
        for i in range(n):
            msg.header.frame_id = str(i)
            pub.publish(msg)
            wait = time.monotonic() + wait_s
            while str(i) not in got and time.monotonic() < wait:
                ex.spin_once(timeout_sec=0.01)
        node.destroy_node()
        return len(got)
    finally:
        peer.terminate()
        peer.wait(timeout=10)


@pytest.mark.ros
def test_best_effort_camera_frames_arrive(rclpy_context):
    assert os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] == LOCALHOST_PROFILE  # conftest's choice
    n = 40
    got = _echo_frames(rclpy_context, 640, 480, n, 1.0)
    assert got >= n - 2, "only %d of %d best-effort 921 KB frames arrived" % (got, n)


@pytest.mark.ros
def test_best_effort_4k_frames_arrive(rclpy_context):
    # 26.5 MB frames: past the earlier 16 MiB segment they went as UDP fragments and were lost.
    assert os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] == LOCALHOST_PROFILE
    n = 6
    got = _echo_frames(rclpy_context, 4096, 2160, n, 5.0)
    assert got >= n - 1, "only %d of %d best-effort 4096x2160 rgb8 frames arrived" % (got, n)
