"""carla_bridge: ament_python package: a ROS-free core plus carla_bridge.ros."""

from setuptools import find_packages, setup

PKG = "carla_bridge"

setup(
    name=PKG,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PKG]),
        ("share/" + PKG, ["package.xml"]),
    ],
    # Versions are pinned in requirements/base.txt; names here serve a plain `pip install`.
    install_requires=[
        "numpy",
        "pyyaml",
        "opencv-python-headless",
        "pycocotools",
        "scipy",
        "tqdm",
        "pillow",
    ],
    # colcon test runs pytest on the package's test/ folder when pytest is a test dependency
    extras_require={"test": ["pytest"]},
    zip_safe=True,
    maintainer="edge_perception developers",
    maintainer_email="dev@edge-perception.org",
    description="CARLA / procedural scenario data generation, replay and evaluation",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "carla-bridge = carla_bridge.cli:main",
            "scenario_publisher = carla_bridge.ros.scenario_publisher:main",
            "evaluator = carla_bridge.ros.evaluator:main",
            "carla-bridge-record = carla_bridge.ros.record:main",
        ],
    },
)
