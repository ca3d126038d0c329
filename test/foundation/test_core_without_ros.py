"""The core packages import with rclpy (and every message package) absent."""

from __future__ import annotations

import subprocess
import sys

BLOCKER = r"""
import importlib.abc, sys
BLOCKED = ("rclpy", "sensor_msgs", "std_msgs", "vision_msgs", "edge_perception_msgs",
           "lifecycle_msgs", "diagnostic_msgs", "visualization_msgs", "rosgraph_msgs")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("blocked for this test: " + name)
sys.meta_path.insert(0, Block())
import pkgutil, importlib
for top in ("edge_perception", "carla_bridge"):
    pkg = importlib.import_module(top)
    for info in pkgutil.walk_packages(pkg.__path__, top + "."):
        if ".ros" in info.name or info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)
        print("ok", info.name)
try:
    import rclpy
except ImportError:
    print("rclpy blocked")
"""


def test_core_imports_without_rclpy():
    out = subprocess.run(
        [sys.executable, "-c", BLOCKER], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ok edge_perception.cli" in out.stdout
    assert "rclpy blocked" in out.stdout
