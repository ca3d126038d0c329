"""Launch interface (issue 13, item 4): params_file, log_level, rviz, namespace, the caller's
ROS environment. ROS-free: the launch files are run with recording stand-ins of launch /
launch_ros (not installable here), as in test_manager_exit.py."""

from __future__ import annotations

import argparse
import runpy
import sys
import types
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml
from edge_perception.ros import rviz
from edge_perception.ros.launch_common import (
    LaunchConfigError,
    declared_arguments,
    params_file_for,
    resolve,
)
from edge_perception.ros.runner import (
    LOCALHOST_PROFILE,
    Runner,
    register,
    ros_environment,
)

REPO = Path(__file__).resolve().parents[2]
CPU = str(REPO / "config" / "cpu.yaml")
SHIPPED_RVIZ = REPO / "config" / "edge_perception.rviz"


class _Action:
    """Stand-in of a launch action: records its arguments."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration(_Action):
    def perform(self, context):
        return context[self.args[0]]


def _stub_launch(monkeypatch) -> None:
    names = {
        "launch": ["LaunchDescription"],
        "launch.actions": ["DeclareLaunchArgument", "OpaqueFunction", "RegisterEventHandler"]
        + ["Shutdown"],
        "launch.conditions": ["IfCondition"],
        "launch.event_handlers": ["OnProcessExit"],
        "launch.substitutions": [],
        "launch_ros": [],
        "launch_ros.actions": ["LifecycleNode", "Node"],
    }
    for mod, classes in names.items():
        m = types.ModuleType(mod)
        for cls in classes:
            setattr(m, cls, type(cls, (_Action,), {}))
        monkeypatch.setitem(sys.modules, mod, m)
    sys.modules["launch.substitutions"].LaunchConfiguration = _LaunchConfiguration


def _params(tmp_path: Path, data: Any, name: str = "params.yaml") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


USER_PARAMS = {
    "lane_node": {"ros__parameters": {"overlay_alpha": 0.25, "output_qos": "best_effort"}},
    "/**": {"ros__parameters": {"threads": 1}},
}


# ------------------------------------------------------------------------------ params_file
def test_params_file_layout_is_checked(tmp_path):
    good = _params(tmp_path, USER_PARAMS)
    plan = resolve(CPU, {"params_file": good})
    assert plan.params_file == good and plan.log_level == "info" and plan.rviz is False
    for data, words in (
        ("a: [1, 2\n", "not valid YAML (line"),
        ("[1, 2]\n", "expected node names at the top level"),
        ({"lane_node": {"threads": 2}}, "no ros__parameters: under it"),
        ({"lane_node": {"ros__parameters": [1]}}, "must map parameter names to values"),
    ):
        path = _params(tmp_path, data, "bad.yaml")
        with pytest.raises(LaunchConfigError, match="params_file") as info:
            resolve(CPU, {"params_file": path})
        assert words in str(info.value), info.value
    with pytest.raises(LaunchConfigError, match="no such file"):
        resolve(CPU, {"params_file": str(tmp_path / "missing.yaml")})
    with pytest.raises(LaunchConfigError, match="log_level='loud'; allowed: debug, info"):
        resolve(CPU, {"log_level": "loud"})
    assert resolve(CPU, {"log_level": "DEBUG"}).log_level == "debug"


def test_params_file_node_names_move_under_the_namespace(tmp_path):
    given = _params(tmp_path, USER_PARAMS)
    assert params_file_for(resolve(CPU, {"params_file": given}), str(tmp_path)) == given
    plan = resolve(CPU, {"params_file": given, "namespace": "robot1/"})
    moved = yaml.safe_load(open(params_file_for(plan, str(tmp_path / "out"))))
    assert moved == {
        "/robot1/lane_node": USER_PARAMS["lane_node"],
        "/**": USER_PARAMS["/**"],
    }


# ------------------------------------------------------------------------------------- rviz
def test_rviz_layout_follows_namespace_and_camera_topic(tmp_path):
    shipped = rviz.display_topics(yaml.safe_load(SHIPPED_RVIZ.read_text()))
    plan = resolve(CPU, {"namespace": "/robot1"})
    from edge_perception.ros.launch_common import rviz_config_for

    layout = yaml.safe_load(open(rviz_config_for(plan, str(tmp_path / "a.rviz"))))
    got = rviz.display_topics(layout)
    started = {n.name for n in plan.enabled_nodes}
    expected = {
        ("/robot1" + t if not t.startswith("/camera/") else t): c
        for t, c in shipped.items()
        if t.startswith("/camera/") or t.split("/")[1] in started
    }
    assert got == expected
    # Displays of nodes not started are left out (here the detection node's).
    off = resolve(CPU, {"namespace": "/robot1", "enable_detection_node": "false"})
    got = rviz.display_topics(yaml.safe_load(open(rviz_config_for(off, str(tmp_path / "d")))))
    assert "/robot1/lane_node/overlay" in got
    assert not [t for t in got if "detection_node" in t]
    # Everything but the topics is kept.
    shipped_doc = yaml.safe_load(SHIPPED_RVIZ.read_text())
    assert (
        layout["Visualization Manager"]["Global Options"]
        == (shipped_doc["Visualization Manager"]["Global Options"])
    )
    # A relative camera topic is under the namespace, as the nodes resolve it.
    plan = resolve(CPU, {"namespace": "robot1", "camera_topic": "front/image"})
    got = rviz.display_topics(yaml.safe_load(open(rviz_config_for(plan, str(tmp_path / "b")))))
    assert "/robot1/front/image" in got and "/robot1/lane_node/overlay" in got
    # No namespace, default camera: the shipped topics.
    plan = resolve(CPU, {})
    assert rviz.display_topics(yaml.safe_load(open(rviz_config_for(plan, str(tmp_path / "c")))))
    assert rviz.resolve_topic("~/overlay", "/r", "lane_node") == "/r/lane_node/overlay"
    assert rviz.normalize_namespace("/") == "" and rviz.normalize_namespace("a//b/") == "/a/b"


# ------------------------------------------------------------------------------ launch files
def _actions(monkeypatch, launch_file: str, overrides: Dict[str, str]) -> List[Any]:
    _stub_launch(monkeypatch)
    ld = runpy.run_path(str(REPO / "launch" / launch_file))["generate_launch_description"]()
    declared = {a.args[0]: a.kwargs for a in ld.args[0] if type(a).__name__.startswith("Declare")}
    for name in ("params_file", "log_level", "rviz", "namespace"):
        assert name in declared and declared[name]["description"], name
    config = REPO / "config" / launch_file.replace(".launch.py", ".yaml")
    context = {k: v[0] for k, v in declared_arguments(str(config)).items()}
    context.update(overrides)
    opaque = [a for a in ld.args[0] if type(a).__name__ == "OpaqueFunction"]
    return opaque[0].kwargs["function"](context)


@pytest.mark.parametrize("launch_file", ["cpu.launch.py", "xavier.launch.py"])
def test_launch_files_pass_params_file_log_level_and_rviz(monkeypatch, tmp_path, launch_file):
    given = _params(tmp_path, USER_PARAMS)
    actions = _actions(
        monkeypatch,
        launch_file,
        {"params_file": given, "log_level": "debug", "namespace": "robot1", "rviz": "true"},
    )
    nodes = [a for a in actions if type(a).__name__ in ("LifecycleNode", "Node")]
    rviz_nodes = [a for a in nodes if a.kwargs["executable"] == "rviz2"]
    ours = [a for a in nodes if a.kwargs["executable"] != "rviz2"]
    assert len(rviz_nodes) == 1 and any(
        a.kwargs["executable"] == "lifecycle_manager" for a in ours
    )
    for node in ours:
        params = node.kwargs["parameters"]
        # The config's own parameters first, the user's file (names under /robot1) last: it wins.
        assert isinstance(params[0], dict) and len(params) == 2
        assert "/robot1/lane_node" in yaml.safe_load(open(params[1]))
        assert node.kwargs["arguments"] == ["--ros-args", "--log-level", "debug"]
        assert node.kwargs["namespace"] == "robot1"
    args = rviz_nodes[0].kwargs["arguments"]
    assert args[0] == "-d"
    topics = rviz.display_topics(yaml.safe_load(open(args[1])))
    assert "/robot1/lane_node/overlay" in topics and "/robot1/detection_node/markers" in topics
    # Defaults: no params file, info, no rviz.
    plain = _actions(monkeypatch, launch_file, {})
    assert not [a for a in plain if a.kwargs.get("executable") == "rviz2"]
    for node in [a for a in plain if type(a).__name__ in ("LifecycleNode", "Node")]:
        assert len(node.kwargs["parameters"]) == 1
        assert node.kwargs["arguments"] == ["--ros-args", "--log-level", "info"]


# --------------------------------------------------------------------------- the runner
def test_runner_environment_is_the_callers():
    # Nothing set by the caller: nothing set for the nodes (ROS defaults), no random domain.
    env = ros_environment(base={"PATH": "/bin"})
    assert "ROS_DOMAIN_ID" not in env and "ROS_AUTOMATIC_DISCOVERY_RANGE" not in env
    caller = {"ROS_DOMAIN_ID": "42", "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    env = ros_environment(base=dict(caller))
    assert env["ROS_DOMAIN_ID"] == "42" and env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in env
    # A caller on localhost (env.sh) keeps it, with the loopback profile unless it set its own.
    env = ros_environment(base={"ROS_LOCALHOST_ONLY": "1"})
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == LOCALHOST_PROFILE
    # Options override.
    env = ros_environment(7, "LOCALHOST", base=dict(caller))
    assert env["ROS_DOMAIN_ID"] == "7" and env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    for bad in ({"ROS_DOMAIN_ID": "abc"}, {"ROS_DOMAIN_ID": "999"}):
        with pytest.raises(ValueError, match="0..232"):
            ros_environment(base=bad)
    with pytest.raises(ValueError, match="0..232"):
        ros_environment(999, base={})


def test_runner_commands_carry_params_file_and_log_level(tmp_path):
    given = _params(tmp_path, USER_PARAMS)
    plan = resolve(CPU, {"params_file": given, "log_level": "warn", "namespace": "r2"})
    cmds = dict(Runner(plan, env={}, work_dir=str(tmp_path / "w")).commands())
    for name, cmd in cmds.items():
        files = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--params-file"]
        assert len(files) == 2 and files[0].endswith(name + ".yaml"), cmd
        assert "/r2/lane_node" in yaml.safe_load(open(files[1]))
        assert cmd[cmd.index("--log-level") + 1] == "warn" and "__ns:=/r2" in cmd


def _run(argv: List[str]) -> int:
    parser = argparse.ArgumentParser()
    register(parser)
    args = parser.parse_args(argv)
    return args.run(args)


def test_run_cli_params_file_option_rviz_and_errors(tmp_path, capsys):
    given = _params(tmp_path, USER_PARAMS)
    out_rviz = tmp_path / "ns.rviz"
    assert _run(["cpu.yaml", "namespace:=robot1", "--params-file", given, "--print"]
                + ["--write-rviz", str(out_rviz)]) == 0  # fmt: skip
    printed = capsys.readouterr()
    assert "/robot1/lane_node:" in printed.out and "overlay_alpha: 0.25" in printed.out
    assert "rviz2 -d %s" % out_rviz in printed.err
    assert "/robot1/lane_node/overlay" in rviz.display_topics(yaml.safe_load(out_rviz.read_text()))
    assert _run(["cpu.yaml", "--params-file", str(tmp_path / "nope.yaml"), "--print"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "params_file" in err[0] and "no such file" in err[0]
    assert _run(["cpu.yaml", "log_level:=loud", "--print"]) == 2
    assert "log_level='loud'" in capsys.readouterr().err


def test_run_rviz_needs_rviz2_on_path(monkeypatch, capsys):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert _run(["cpu.yaml", "rviz:=true", "--print"]) == 2
    err = capsys.readouterr().err
    assert "rviz2 is not on PATH" in err and "--write-rviz FILE" in err


def test_readme_params_example_is_valid(tmp_path):
    """The README's params_file example has the layout and only parameters the nodes declare."""
    import dataclasses
    import re
    import textwrap

    from edge_perception.config import DetectionNodeConfig, LaneNodeConfig

    text = (REPO / "README.md").read_text()
    block = re.search(r"```yaml\n( *lane_node:\n.*?)\n *```", text, re.S)
    assert block, "README: the params_file example is gone"
    path = _params(tmp_path, textwrap.dedent(block.group(1)), "readme.yaml")
    assert resolve(CPU, {"params_file": path}).params_file == path
    data = yaml.safe_load(open(path))
    fields = {
        "lane_node": {f.name for f in dataclasses.fields(LaneNodeConfig)},
        "detection_node": {f.name for f in dataclasses.fields(DetectionNodeConfig)},
    }
    fields["/**"] = fields["lane_node"] & fields["detection_node"]
    for node, section in data.items():
        unknown = set(section["ros__parameters"]) - fields[node]
        assert not unknown, (node, unknown)
