"""Record frames as a rosbag2 MCAP bag without running any node (``carla-bridge-record``).

The bag holds exactly what :mod:`carla_bridge.ros.scenario_publisher` would publish for the same
frames (its topic names, one bag time per frame = the frame's stamp), so ``ros2 bag play`` or the
publisher's ``source:=bag`` replays it. Stamps are ``start_ns + frame.timestamp`` plus an offset
that keeps them increasing across sequences; ``/clock`` is written too, so a replay can drive
``use_sim_time`` consumers.

Usage::

    carla-bridge-record --scenario config/scenarios/default.yaml --out /tmp/run1 --sequences 2
    # render a CARLA recorder log (server-side path) with the scenario's camera, fps and frames:
    carla-bridge-record --scenario carla.yaml --carla-log recording01.log --out /tmp/run2
    # a camera-like bag: JPEG CompressedImage on /camera/image_raw/compressed, no raw images
    carla-bridge-record --out /tmp/run3 --image-transport compressed --compressed-format jpeg
"""

from __future__ import annotations

import argparse
import sys
from typing import Iterable, List, Optional

from rclpy.serialization import serialize_message

from carla_bridge.bag import BagWriter
from carla_bridge.frame import Frame
from carla_bridge.replay import load_scenario, replay_frames, scenario_frames
from carla_bridge.ros.frames import (
    COMPRESSED_FORMATS,
    IMAGE_TRANSPORTS,
    clock,
    frame_messages,
    label_info,
    msg_type_name,
    topic_of,
)


def record_frames(
    frames: Iterable[Frame],
    path: str,
    frame_id: str = "camera",
    start_ns: int = 1_000_000_000,
    period_ns: int = 100_000_000,
    with_clock: bool = True,
    transport: str = "raw",
    codec: str = "jpeg",
    quality: int = 80,
) -> int:
    """Write ``frames`` into a new bag at ``path``; returns the number of frames written.

    ``period_ns`` is the gap inserted when a new sequence restarts its timestamps at 0. The bag is
    complete only when this returns (an error removes the partial bag). ``transport`` (raw,
    compressed, both), ``codec`` and ``quality``: how the camera image is stored (compressed:
    ``sensor_msgs/CompressedImage`` on ``/camera/image_raw/compressed``).
    """
    base, last, n = int(start_ns), -1, 0
    with BagWriter(path) as bag:
        for frame in frames:
            stamp = base + int(round(frame.timestamp * 1e9))
            if stamp <= last:
                base = last + int(period_ns) - int(round(frame.timestamp * 1e9))
                stamp = base + int(round(frame.timestamp * 1e9))
            last = stamp
            msgs = {}
            if with_clock:
                msgs["clock"] = clock(stamp)
            if n == 0:
                msgs["label_info"] = label_info(stamp, frame_id)
            msgs.update(frame_messages(frame, stamp, frame_id, transport, codec, quality))
            for key, msg in msgs.items():
                topic = topic_of(key)[0]
                bag.write(topic, msg_type_name(type(msg)), serialize_message(msg), stamp)
            n += 1
    return n


def main(argv: Optional[List[str]] = None) -> int:
    """CLI entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="carla-bridge-record", description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="", help="scenario YAML (default: built-in defaults)")
    ap.add_argument("--out", required=True, help="new bag directory to create")
    ap.add_argument("--sequences", type=int, default=1, help="sequences (seed, seed+1, ...)")
    ap.add_argument("--frame-id", default="camera")
    ap.add_argument("--no-clock", action="store_true", help="do not write /clock")
    ap.add_argument(
        "--image-transport",
        choices=IMAGE_TRANSPORTS,
        default="raw",
        help="camera image as rgb8 Image, CompressedImage on <topic>/compressed, or both",
    )
    ap.add_argument("--compressed-format", choices=COMPRESSED_FORMATS, default="jpeg")
    ap.add_argument("--jpeg-quality", type=int, default=80, help="1..100 (default 80)")
    ap.add_argument("--carla-log", default="", help="replay this CARLA recorder log instead")
    ap.add_argument("--log-start", type=float, default=0.0, help="seconds into the log")
    args = ap.parse_args(argv)
    try:
        config = load_scenario(args.scenario or None)
        if args.carla_log:
            frames = replay_frames(config, args.carla_log, start=args.log_start)
        else:
            frames = scenario_frames(config, args.sequences)
        n = record_frames(
            frames,
            args.out,
            args.frame_id,
            period_ns=int(1e9 / config.fps),
            with_clock=not args.no_clock,
            transport=args.image_transport,
            codec=args.compressed_format,
            quality=args.jpeg_quality,
        )
    except (ValueError, OSError, RuntimeError) as exc:
        print("carla-bridge-record: error: %s" % exc, file=sys.stderr)
        return 2
    print("wrote %d frames to %s" % (n, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
