"""The loopback Fast DDS profile: selected with LOCALHOST discovery, and it carries camera frames.

Large best-effort frames (640x480 rgb8, 921 KB) between two processes: with Fast DDS's default
512 KB shared-memory segments they go out as fragmented UDP and are lost under load; the project's
profile (16 MiB segments, UDP on 127.0.0.1 only) must deliver them.
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
    assert root.find(".//d:useBuiltinTransports", ns).text == "false"


@pytest.mark.ros
def test_best_effort_camera_frames_arrive(rclpy_context):
    import numpy as np
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    assert os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] == LOCALHOST_PROFILE  # conftest's choice
    peer = subprocess.Popen([sys.executable, "-c", ECHO], stdout=subprocess.PIPE, text=True)
    try:
        assert peer.stdout.readline().strip() == "READY"
        node = rclpy.create_node("frame_source", context=rclpy_context)
        ex = SingleThreadedExecutor(context=rclpy_context)
        ex.add_node(node)
        got = set()
        node.create_subscription(Header, "frames_back", lambda h: got.add(h.frame_id), 50)
        pub = node.create_publisher(Image, "frames", qos_profile_sensor_data)
        end = time.monotonic() + 20
        while pub.get_subscription_count() == 0 and time.monotonic() < end:
            ex.spin_once(timeout_sec=0.05)
        time.sleep(0.5)  # let the echo's reply publisher match too
        data = np.random.default_rng(0).integers(0, 255, 640 * 480 * 3, np.uint8).tobytes()
        n = 40
        for i in range(n):
            msg = Image(height=480, width=640, encoding="rgb8", step=640 * 3, data=data)
            msg.header.frame_id = str(i)
            pub.publish(msg)
            wait = time.monotonic() + 1.0
            while str(i) not in got and time.monotonic() < wait:
                ex.spin_once(timeout_sec=0.01)
        assert len(got) >= n - 2, "only %d of %d best-effort 921 KB frames arrived" % (len(got), n)
        node.destroy_node()
    finally:
        peer.terminate()
        peer.wait(timeout=10)
