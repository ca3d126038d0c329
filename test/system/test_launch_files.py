"""Launch files, configs and the RViz layout agree with the nodes and the package metadata.

``launch``/``launch_ros`` are not installable here, so the launch files are checked by parsing
them; the configs they load are resolved with the same code the runner uses, and the nodes they
name are constructed (real rclpy, no model needed) to compare the parameters they declare.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path
from typing import Dict, Tuple

import pytest
import yaml
from edge_perception.ros.launch_common import declared_arguments, resolve

REPO = Path(__file__).resolve().parents[2]
CONFIGS = ["cpu.yaml", "xavier.yaml"]
LAUNCH = {"cpu.launch.py": "cpu.yaml", "xavier.launch.py": "xavier.yaml"}
# Parameters a node's main() declares beside those of its class.
MAIN_DECLARED = {"carla_bridge.ros.scenario_publisher": {"autostart"}}


def console_scripts(package: str) -> Dict[str, Tuple[str, str]]:
    """``name -> (module, function)`` of the console scripts in ``src/<package>/setup.py``."""
    text = (REPO / "src" / package / "setup.py").read_text()
    found = re.findall(r"[\"']\s*([\w.-]+)\s*=\s*([\w.]+):(\w+)\s*[\"']", text)
    return {name: (module, func) for name, module, func in found}


@pytest.mark.parametrize("launch_file", sorted(LAUNCH))
def test_launch_file_parses_and_loads_its_config(launch_file):
    tree = ast.parse((REPO / "launch" / launch_file).read_text())
    funcs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert "generate_launch_description" in funcs
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    assert LAUNCH[launch_file] in strings
    args = declared_arguments(str(REPO / "config" / LAUNCH[launch_file]))
    for name in ("camera_topic", "backend", "precision", "use_sim_time"):
        assert name in args
    assert any(k.startswith("enable_") for k in args)


@pytest.mark.parametrize("config", CONFIGS)
def test_config_executables_are_console_scripts(config):
    plan = resolve(str(REPO / "config" / config))
    wanted = [(n.package, n.executable, n.module) for n in plan.nodes]
    wanted.append(
        ("edge_perception", "lifecycle_manager", "edge_perception.ros.lifecycle_manager")
    )
    missing = []
    for package, executable, module in wanted:
        scripts = console_scripts(package)
        if scripts.get(executable) != (
            module.partition(":")[0],
            module.partition(":")[2] or "main",
        ):
            missing.append("%s: '%s = %s:main'" % (package, executable, module))
    assert not missing, "add to setup.py console_scripts: " + ", ".join(missing)


def _node_class(module_name: str):
    from rclpy.node import Node

    module = importlib.import_module(module_name)
    classes = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, Node) and v.__module__ == module_name
    ]
    assert len(classes) == 1, (module_name, classes)
    return classes[0]


@pytest.mark.ros
@pytest.mark.parametrize("config", CONFIGS)
def test_config_parameters_are_declared_by_the_nodes(config, rclpy_context):
    from rclpy.parameter import Parameter

    plan = resolve(str(REPO / "config" / config))
    for spec in plan.nodes:
        cls = _node_class(spec.module.partition(":")[0])
        overrides = [Parameter(k, value=v) for k, v in spec.parameters.items()]
        # Construction applies the overrides: a value of the wrong type raises here.
        node = cls(context=rclpy_context, parameter_overrides=overrides)
        try:
            declared = set(node._parameters) | MAIN_DECLARED.get(spec.module, set())
            unknown = sorted(set(spec.parameters) - declared)
            assert not unknown, "%s: %s sets undeclared parameters %s" % (
                config,
                spec.name,
                unknown,
            )
        finally:
            node.destroy_node()


def test_rviz_config_shows_the_perception_topics_in_the_camera_frame():
    rviz = yaml.safe_load((REPO / "config" / "edge_perception.rviz").read_text())
    manager = rviz["Visualization Manager"]
    plan = resolve(str(REPO / "config" / "cpu.yaml"))
    publisher = next(n for n in plan.nodes if n.name == "scenario_publisher")
    assert manager["Global Options"]["Fixed Frame"] == publisher.parameters["frame_id"]
    topics = {d["Name"]: d["Topic"]["Value"] for d in manager["Displays"] if "Topic" in d}
    assert topics == {
        "Camera": plan.arguments["camera_topic"],
        "Lane class mask": "/lane_node/class_mask",
        "Lane overlay": "/lane_node/overlay",
        "Detection overlay": "/detection_node/overlay",
        "Detection markers": "/detection_node/markers",
        "VIS overlay": "/vis_node/overlay",
    }
    names = {n.name for n in plan.nodes}
    for topic in list(topics.values())[1:]:
        assert topic.split("/")[1] in names
    assert {p["Class"] for p in rviz["Panels"]} >= {"rviz_common/Displays"}


def test_package_folder_alone_installs_launch_config_and_models(tmp_path):
    """A source release of src/edge_perception alone (what bloom packages) must carry the launch
    files, configs and bundled models it installs: none may come from outside its folder."""
    import shutil
    import subprocess
    import sys

    pkg = tmp_path / "edge_perception"
    shutil.copytree(
        REPO / "src" / "edge_perception",
        pkg,
        ignore=shutil.ignore_patterns("checkpoints", "__pycache__", "*.egg-info"),
    )
    code = (
        "import json\n"
        "from distutils.core import run_setup\n"
        "d = run_setup('setup.py', stop_after='init')\n"
        "print(json.dumps(d.data_files))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=pkg, capture_output=True, text=True, check=True
    )
    data_files = dict(json.loads(out.stdout.strip().splitlines()[-1]))
    installed = {
        f"{dest}/{Path(src).name}": src for dest, srcs in data_files.items() for src in srcs
    }
    for dest in (
        "share/edge_perception/launch/xavier.launch.py",
        "share/edge_perception/launch/cpu.launch.py",
        "share/edge_perception/config/xavier.yaml",
        "share/edge_perception/config/cpu.yaml",
        "share/edge_perception/config/edge_perception.rviz",
        "share/edge_perception/models/det_small.onnx",
        "share/edge_perception/models/lane_small.onnx",
    ):
        assert dest in installed, f"{dest} is not installed from the package folder"
    for src in installed.values():
        assert not src.startswith(".."), f"{src} lies outside the package folder"
        assert (pkg / src).is_file(), src
