"""Up to which image size best-effort (sensor-data QoS) frames arrive, per Fast DDS profile.

    python bench/dds_frame_size.py [--frames 20] [--rate 5] [--profiles 16,64,96]

Two processes on this host (a publisher and a subscriber: within one process Fast DDS would
deliver without a transport), the project's loopback profile
(``edge_perception/ros/fastdds_localhost.xml``) rewritten with each shared-memory segment size of
``--profiles`` (MiB; ``project`` = the file as it is). For every camera size from 640x480 to
4096x2160 rgb8 the publisher sends ``--frames`` frames at ``--rate`` Hz on best-effort, depth-5
QoS (what the perception nodes subscribe with by default) and the subscriber counts what arrives
and the publish -> callback latency. Discovery stays on loopback (LOCALHOST, a random domain).

Results: bench/results/dds_frame_size.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Tuple

NOTE = """A frame larger than the profile's shared-memory ``maxMessageSize`` goes out as fragmented
UDP, and best-effort readers lose most of those (the 16 MiB rows past 11 MB). Latency and the odd
lost frame at a segment that holds only one 4K frame (32 MiB: 18/20 at 3840x2160 in an earlier
run) follow the load of the shared 2-core machine: the subscriber copies each frame into Python.
``publisher /dev/shm MB``: what the publishing process's segment commits (the whole segment)."""

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PROFILE = os.path.join(
    ROOT, "src", "edge_perception", "edge_perception", "ros", "fastdds_localhost.xml"
)
SIZES: List[Tuple[int, int]] = [
    (640, 480),
    (1280, 720),
    (1920, 1080),
    (2560, 1440),
    (3840, 2160),
    (4096, 2160),
]
sys.path.insert(0, HERE)


# ------------------------------------------------------------------------- child processes
def publish(frames: int, rate: float, sizes: List[Tuple[int, int]]) -> None:
    import numpy as np
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    rclpy.init()
    node = rclpy.create_node("frame_size_pub")
    pub = node.create_publisher(Image, "frames", qos_profile_sensor_data)
    ctl = node.create_publisher(String, "frames_control", 10)
    end = time.monotonic() + 30.0
    while (pub.get_subscription_count() == 0 or ctl.get_subscription_count() == 0) and (
        time.monotonic() < end
    ):
        time.sleep(0.05)
    time.sleep(1.0)  # let discovery settle on both sides
    rng = np.random.default_rng(0)
    for w, h in sizes:
        msg = Image(height=h, width=w, encoding="rgb8", step=w * 3)
        msg.data = rng.integers(0, 255, w * h * 3, np.uint8).tobytes()
        t_next = time.monotonic()
        for i in range(frames):
            msg.header.frame_id = "%dx%d/%d" % (w, h, i)
            msg.header.stamp = node.get_clock().now().to_msg()
            pub.publish(msg)
            t_next += 1.0 / rate
            time.sleep(max(0.0, t_next - time.monotonic()))
        time.sleep(1.0)
    for _ in range(3):
        ctl.publish(String(data="done"))
        time.sleep(0.3)
    print("SHM %d" % shm_committed(), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


def shm_committed() -> int:
    """Bytes of /dev/shm that this process's Fast DDS segments occupy (allocated blocks)."""
    paths = set()
    with open("/proc/self/maps", encoding="utf-8") as fh:
        for line in fh:
            path = line.split()[-1]
            if re.match(r"^/dev/shm/fastdds_[0-9a-f]+$", path):
                paths.add(path)
    return sum(os.stat(p).st_blocks * 512 for p in paths if os.path.exists(p))


def subscribe(timeout_s: float) -> None:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    rclpy.init()
    node = rclpy.create_node("frame_size_sub")
    got: Dict[str, List[float]] = {}
    done: List[bool] = []

    def on_image(msg: Image) -> None:
        now = node.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        ok = len(msg.data) == msg.height * msg.step
        key = "%dx%d" % (msg.width, msg.height)
        if ok:
            got.setdefault(key, []).append((now - stamp) / 1e6)

    node.create_subscription(Image, "frames", on_image, qos_profile_sensor_data)
    node.create_subscription(String, "frames_control", lambda m: done.append(True), 10)
    print("READY", flush=True)
    end = time.monotonic() + timeout_s
    while not done and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    print("RESULT " + json.dumps(got), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


# ------------------------------------------------------------------------------- driver
def profile_with_segment(mib: int, folder: str) -> str:
    """The project profile with shared-memory segment and max message size set to ``mib``."""
    text = open(PROFILE, encoding="utf-8").read()
    size = str(mib * 1024 * 1024)
    text = re.sub(
        r"<segment_size>\d+</segment_size>", "<segment_size>%s</segment_size>" % size, text
    )
    text = re.sub(
        r"<maxMessageSize>\d+</maxMessageSize>", "<maxMessageSize>%s</maxMessageSize>" % size, text
    )
    path = os.path.join(folder, "segment_%dmib.xml" % mib)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def run_profile(profile: str, frames: int, rate: float) -> Tuple[Dict[str, List[float]], int]:
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_LOCALHOST_ONLY"] = "1"
    env["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 101))
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = profile
    env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
    budget = len(SIZES) * (frames / rate + 2.0) + 60.0
    me = os.path.abspath(__file__)
    sub = subprocess.Popen(
        [sys.executable, me, "--role", "sub", "--timeout", str(budget)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sub.stdout is not None
        if sub.stdout.readline().strip() != "READY":
            raise RuntimeError("subscriber did not start")
        pub = subprocess.run(
            [sys.executable, me, "--role", "pub", "--frames", str(frames), "--rate", str(rate)],
            env=env,
            timeout=budget,
            stdout=subprocess.PIPE,
            text=True,
        )
        if pub.returncode != 0:
            raise RuntimeError("publisher exited with %d" % pub.returncode)
        out, _ = sub.communicate(timeout=60)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    shm = [int(ln.split()[1]) for ln in pub.stdout.splitlines() if ln.startswith("SHM ")]
    return (json.loads(line[-1][7:]) if line else {}), (shm[-1] if shm else -1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", choices=["driver", "pub", "sub"], default="driver")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument(
        "--profiles",
        default="16,32,64",
        help="comma-separated: 'project' (the file as it is) or a segment size in MiB",
    )
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    args = ap.parse_args()
    if args.role == "pub":
        publish(args.frames, args.rate, SIZES)
        return 0
    if args.role == "sub":
        subscribe(args.timeout)
        return 0

    from common import environment, markdown_table, summarize, write_results

    results: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dds-frame-size-") as tmp:
        for name in args.profiles.split(","):
            name = name.strip()
            path = PROFILE if name == "project" else profile_with_segment(int(name), tmp)
            label = "project file" if name == "project" else "SHM segment %s MiB" % name
            got, shm = run_profile(path, args.frames, args.rate)
            print(
                "%s: publisher's shared-memory segments hold %.1f MB of /dev/shm"
                % (label, shm / 1e6)
            )
            for w, h in SIZES:
                lat = got.get("%dx%d" % (w, h), [])
                row: Dict[str, Any] = {
                    "profile": label,
                    "size": "%dx%d" % (w, h),
                    "frame_mb": round(w * h * 3 / 1e6, 2),
                    "sent": args.frames,
                    "delivered": len(lat),
                    "publisher_shm_mb": round(shm / 1e6, 1),
                }
                if lat:
                    row["latency_ms"] = summarize(lat)
                results.append(row)
                print(
                    "%-22s %-10s %6.2f MB  %2d/%d  p50 %s ms"
                    % (
                        label,
                        row["size"],
                        row["frame_mb"],
                        len(lat),
                        args.frames,
                        "%.1f" % row["latency_ms"]["p50"] if lat else "-",
                    ),
                    flush=True,
                )
    data = {
        "benchmark": "dds_frame_size",
        "environment": environment(),
        "settings": {
            "frames_per_size": args.frames,
            "rate_hz": args.rate,
            "qos": "sensor_data (best effort, keep last 5)",
            "rmw": "rmw_fastrtps_cpp",
            "transport": "two processes on this host, LOCALHOST discovery",
            "command": "python bench/dds_frame_size.py " + " ".join(sys.argv[1:]),
        },
        "results": results,
    }
    rows = [
        [
            r["profile"],
            r["size"],
            r["frame_mb"],
            "%d/%d" % (r["delivered"], r["sent"]),
            "%.1f" % r["latency_ms"]["p50"] if "latency_ms" in r else "-",
            r["publisher_shm_mb"],
        ]
        for r in results
    ]
    md = "# Best-effort camera frames on loopback, per Fast DDS shared-memory segment size\n\n"
    md += __doc__.split("\n\n", 2)[2].split("\n\nResults")[0] + "\n\n"
    md += (
        markdown_table(
            rows, ["profile", "size (rgb8)", "MB", "delivered", "p50 ms", "publisher /dev/shm MB"]
        )
        + "\n"
    )
    md += "\n" + NOTE + "\n"
    paths = write_results("dds_frame_size", data, md, args.out)
    print("wrote", paths["md"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
