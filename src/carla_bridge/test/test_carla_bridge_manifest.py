"""package.xml of carla_bridge: the rosdep keys are the list below, and every module the package
imports is declared (a ROS package or a rosdep key) or pip-only on purpose.

Runs under ``colcon test`` (this folder is the package's own test folder) and in the root suite.
"""

from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, Set

import pytest

PKG = "carla_bridge"
HERE = Path(__file__).resolve().parents[1]

EXPECTED_KEYS = {
    "diagnostic_msgs", "edge_perception", "edge_perception_msgs", "lifecycle_msgs", "rclpy",
    "rosgraph_msgs", "sensor_msgs", "std_msgs", "vision_msgs",
    "python3-numpy", "python3-opencv", "python3-pytest", "python3-scipy", "python3-tqdm",
    "python3-yaml",
}  # fmt: skip
PYTHON_KEYS: Dict[str, str] = {
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "yaml": "python3-yaml",
    "scipy": "python3-scipy",
    "tqdm": "python3-tqdm",
    "pytest": "python3-pytest",
}
#: no rosdep key: pip (requirements/base.txt); carla only with a CARLA server
PIP_ONLY = {"rosbags", "numba", "llvmlite", "pycocotools", "isal", "carla"}


def manifest_keys(path: Path) -> Set[str]:
    root = ET.parse(path).getroot()
    tags = ("depend", "build_depend", "exec_depend", "test_depend", "buildtool_depend")
    return {el.text.strip() for tag in tags for el in root.iter(tag) if el.text}


def imported_modules(folder: Path) -> Dict[str, str]:
    found: Dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(folder.parent)))
    return found


def test_manifest_keys_are_the_list():
    keys = manifest_keys(HERE / "package.xml")
    assert keys == EXPECTED_KEYS, {
        "missing from package.xml": sorted(EXPECTED_KEYS - keys),
        "not in the list": sorted(keys - EXPECTED_KEYS),
    }


@pytest.mark.skipif(sys.version_info < (3, 10), reason="needs sys.stdlib_module_names")
def test_every_import_is_declared():
    keys = manifest_keys(HERE / "package.xml")
    bad = []
    for module, where in imported_modules(HERE / PKG).items():
        if module in sys.stdlib_module_names or module == PKG or module in PIP_ONLY:
            continue
        key = PYTHON_KEYS.get(module, module)
        if key not in keys:
            bad.append(f"{module} ({where}) needs <depend>/<exec_depend>{key}</...>")
    assert not bad, bad


def test_console_scripts_exist():
    text = (HERE / "setup.py").read_text(encoding="utf-8")
    scripts = re.findall(r'"([\w-]+) = ([\w.]+):(\w+)"', text)
    assert {"scenario_publisher", "evaluator", "carla-bridge"} <= {s[0] for s in scripts}
    for _name, module, func in scripts:
        path = HERE / (module.replace(".", "/") + ".py")
        assert path.is_file(), path
        assert re.search(rf"^def {func}\(", path.read_text(encoding="utf-8"), re.M), (path, func)
