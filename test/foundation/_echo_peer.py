"""Round-trip peer process: echoes every message from rt/<T>/in to rt/<T>/out."""

from __future__ import annotations

import importlib
import sys

import rclpy
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy


def main() -> None:
    types = sys.argv[1:]
    rclpy.init()
    node = rclpy.create_node("roundtrip_echo")
    qos = QoSProfile(
        depth=10,
        reliability=QoSReliabilityPolicy.RELIABLE,
        durability=QoSDurabilityPolicy.TRANSIENT_LOCAL,
    )
    keep = []
    for t in types:
        pkg, name = t.split("/")
        cls = getattr(importlib.import_module(pkg + ".msg"), name)
        topic = "rt/%s_%s" % (pkg, name)
        pub = node.create_publisher(cls, topic + "/out", qos)
        keep.append(node.create_subscription(cls, topic + "/in", pub.publish, qos))
        keep.append(pub)
    print("READY", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
