"""edge_perception: ament_python package whose Python package is a ROS-free core.

`pip install src/edge_perception` gives the core without ROS; colcon also installs the package's
launch/, config/ and models/ folders under share/edge_perception so `ros2 launch` finds them. They
live inside this package, under share/ (the repository root's launch/, config/ and models/ are
symbolic links to them), so a source release of this folder alone (bloom) carries everything the
nodes need.
"""

from __future__ import annotations

import os
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PKG = "edge_perception"
HERE = Path(__file__).resolve().parent


def _files(folder: str, pattern: str = "*") -> list[str]:
    # Relative to this package's folder (colcon and setuptools both resolve data files from it).
    return sorted(
        os.path.relpath(p, HERE)
        for p in glob(str(HERE / "share" / folder / pattern))
        if os.path.isfile(p)
    )


setup(
    name=PKG,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={PKG: ["ros/*.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PKG]),
        ("share/" + PKG, ["package.xml"]),
        ("share/" + PKG + "/launch", _files("launch", "*.py")),
        ("share/" + PKG + "/config", _files("config")),
        ("share/" + PKG + "/config/scenarios", _files("config/scenarios")),
        ("share/" + PKG + "/models", _files("models")),
    ],
    install_requires=["numpy", "pyyaml"],
    # colcon test runs pytest on the package's test/ folder when pytest is a test dependency
    extras_require={"test": ["pytest"]},
    zip_safe=True,
    maintainer="edge_perception developers",
    maintainer_email="dev@edge-perception.org",
    description="Edge perception stack: lane, RT-DETR detection, video instance segmentation",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "edge-perception = edge_perception.cli:main",
            "lane_node = edge_perception.ros.lane_node:main",
            "detection_node = edge_perception.ros.detection_node:main",
            "vis_node = edge_perception.ros.vis_node:main",
            "camera_node = edge_perception.ros.camera_node:main",
            "lifecycle_manager = edge_perception.ros.lifecycle_manager:main",
        ],
    },
)
