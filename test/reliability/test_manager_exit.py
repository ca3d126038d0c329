"""A failed bring-up ends the deployment: the lifecycle manager exits 1 (``stop_on_failure``), the
launch files shut the launch down on that exit, and a bad manager parameter exits 2."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


class _Action:
    """Stand-in of a launch action: records its arguments."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration(_Action):
    def perform(self, context):
        return context[self.args[0]]


def _stub_launch(monkeypatch) -> None:
    """``launch`` / ``launch_ros`` are not installable here (no wheels): the modules the launch
    description imports, as recorders."""
    names = {
        "launch": ["LaunchDescription"],
        "launch.actions": ["DeclareLaunchArgument", "OpaqueFunction", "RegisterEventHandler"]
        + ["Shutdown", "LogInfo"],
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


@pytest.mark.parametrize("launch_file", ["cpu.launch.py", "xavier.launch.py"])
def test_launch_shuts_down_when_the_manager_exits(monkeypatch, launch_file):
    import runpy

    from edge_perception.ros.launch_common import declared_arguments

    _stub_launch(monkeypatch)
    ld = runpy.run_path(str(REPO / "launch" / launch_file))["generate_launch_description"]()
    declared = [a for a in ld.args[0] if type(a).__name__ == "DeclareLaunchArgument"]
    opaque = [a for a in ld.args[0] if type(a).__name__ == "OpaqueFunction"]
    assert declared and len(opaque) == 1
    config = launch_file.replace(".launch.py", ".yaml")
    context = {k: v[0] for k, v in declared_arguments(str(REPO / "config" / config)).items()}
    actions = opaque[0].kwargs["function"](context)
    managers = [a for a in actions if a.kwargs.get("executable") == "lifecycle_manager"]
    handlers = [a for a in actions if type(a).__name__ == "RegisterEventHandler"]
    assert len(managers) == 1 and len(handlers) == 1
    on_exit = handlers[0].args[0]
    assert type(on_exit).__name__ == "OnProcessExit"
    assert on_exit.kwargs["target_action"] is managers[0]
    shutdown = on_exit.kwargs["on_exit"](types.SimpleNamespace(returncode=1), None)
    assert [type(a).__name__ for a in shutdown] == ["Shutdown"]
    assert "status 1" in shutdown[0].kwargs["reason"]
    # vis_node: started when its model exists, else one log line saying why and how to get it
    logs = [a.kwargs["msg"] for a in actions if type(a).__name__ == "LogInfo"]
    started = [a.kwargs["name"] for a in actions if a.kwargs.get("executable") == "vis_node"]
    if (REPO / "models" / "vis_small_key.onnx").is_file():
        assert started == ["vis_node"] and not logs
    else:
        assert not started and len(logs) == 1
        assert "vis_node not started" in logs[0] and "vis-export" in logs[0]
        assert "vis_node" not in managers[0].kwargs["parameters"][0]["node_names"]


def _tensorrt_missing() -> bool:
    try:
        import tensorrt
    except ImportError:
        return True
    return not hasattr(tensorrt, "Builder")  # test/tensorrt/ is a namespace package here


@pytest.mark.ros
@pytest.mark.skipif(not _tensorrt_missing(), reason="TensorRT is installed: configure would work")
def test_manager_exits_1_when_bring_up_fails_with_stop_on_failure():
    # xavier.yaml's default backend on a machine without TensorRT: configure fails; the manager
    # used to log the error and then idle forever (and ros2 launch with it).
    node = subprocess.Popen(
        [sys.executable, "-m", "edge_perception.ros.lane_node", "--ros-args"]
        + ["-r", "__node:=trt_lane", "-p", "backend:=tensorrt", "-p", "model:=lane_small.onnx"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    t0 = time.monotonic()
    try:
        res = subprocess.run(
            [sys.executable, "-m", "edge_perception.ros.lifecycle_manager", "--ros-args"]
            + ["-p", "node_names:=[trt_lane]", "-p", "service_timeout_s:=60.0"]
            + ["-p", "transition_timeout_s:=60.0"],
            capture_output=True,
            text=True,
            timeout=150,
        )
        assert res.returncode == 1, res.stderr
        assert "bring-up failed (/trt_lane configure failed" in res.stderr
        assert "stop_on_failure is true" in res.stderr
        assert time.monotonic() - t0 < 120.0
        assert node.poll() is None  # the node itself lives on, unconfigured
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGINT)
            try:
                node.wait(timeout=20)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()


@pytest.mark.ros
@pytest.mark.parametrize(
    "param, words",
    [
        ("transition_timeout_s:=abc", ["transition_timeout_s:='abc'", "seconds > 0"]),
        ("service_timeout_s:=-1.0", ["service_timeout_s:=-1.0", "seconds > 0"]),
        ("stop_on_failure:=maybe", ["stop_on_failure:='maybe'", "true or false"]),
    ],
)
def test_manager_bad_parameter_is_one_line_and_exit_2(param, words):
    res = subprocess.run(
        [sys.executable, "-m", "edge_perception.ros.lifecycle_manager", "--ros-args"]
        + ["-p", "node_names:=[a]", "-p", param],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), res.stderr
