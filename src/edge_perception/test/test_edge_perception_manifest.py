"""package.xml of edge_perception: the rosdep keys are the list below, and every module the
package imports is declared (a ROS package or a rosdep key) or pip-only on purpose.

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

PKG = "edge_perception"
HERE = Path(__file__).resolve().parents[1]  # the package folder (package.xml, setup.py)

#: every dependency key of package.xml (rosdep resolves each one)
EXPECTED_KEYS = {
    "ament_index_python", "builtin_interfaces", "diagnostic_msgs", "edge_perception_msgs",
    "geometry_msgs", "launch", "launch_ros", "lifecycle_msgs", "rcl_interfaces", "rclpy",
    "sensor_msgs", "std_msgs", "vision_msgs", "visualization_msgs",
    "python3-matplotlib", "python3-numpy", "python3-opencv", "python3-pil", "python3-psutil",
    "python3-pytest", "python3-scipy", "python3-tqdm", "python3-yaml",
}  # fmt: skip
#: Python module -> its rosdep key
PYTHON_KEYS: Dict[str, str] = {
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "yaml": "python3-yaml",
    "scipy": "python3-scipy",
    "psutil": "python3-psutil",
    "matplotlib": "python3-matplotlib",
    "tqdm": "python3-tqdm",
    "PIL": "python3-pil",
    "pytest": "python3-pytest",
}
#: no rosdep key: installed with pip from requirements/ (TensorRT / CUDA from JetPack)
PIP_ONLY = {
    "torch", "onnx", "onnxruntime", "tensorrt", "pycuda", "cuda", "pycocotools", "trackeval",
}  # fmt: skip


def manifest_keys(path: Path) -> Set[str]:
    root = ET.parse(path).getroot()
    tags = ("depend", "build_depend", "exec_depend", "test_depend", "buildtool_depend")
    return {el.text.strip() for tag in tags for el in root.iter(tag) if el.text}


def imported_modules(folder: Path) -> Dict[str, str]:
    """Top-level module -> first file importing it (absolute imports, anywhere in a file)."""
    found: Dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
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
    stdlib = set(sys.stdlib_module_names)
    bad = []
    for module, where in imported_modules(HERE / PKG).items():
        if module in stdlib or module == PKG or module in PIP_ONLY:
            continue
        key = PYTHON_KEYS.get(module, module)  # a ROS package's key is its name
        if key not in keys:
            bad.append(f"{module} ({where}) needs <depend>/<exec_depend>{key}</...>")
    assert not bad, bad


def test_console_scripts_exist():
    text = (HERE / "setup.py").read_text(encoding="utf-8")
    scripts = re.findall(r'"([\w-]+) = ([\w.]+):(\w+)"', text)
    assert {"lane_node", "detection_node", "vis_node", "camera_node", "lifecycle_manager"} <= {
        s[0] for s in scripts
    }
    for _name, module, func in scripts:
        path = HERE / (module.replace(".", "/") + ".py")
        assert path.is_file(), path
        assert re.search(rf"^def {func}\(", path.read_text(encoding="utf-8"), re.M), (path, func)
