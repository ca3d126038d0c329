"""The runner (``edge-perception run``) and the shared ``launch:`` config reading."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest
import yaml
from edge_perception.ros.launch_common import LaunchConfigError, declared_arguments, resolve
from edge_perception.ros.runner import Runner, parse_overrides, ros_environment, write_params_file

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _config(tmp_path: Path, nodes: List[dict], arguments: Dict[str, object] = None) -> Path:
    cfg = tmp_path / "config" / "test.yaml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    section = {"arguments": arguments or {}, "nodes": nodes}
    section["lifecycle_manager"] = {"parameters": {"service_timeout_s": 20.0}}
    cfg.write_text(yaml.safe_dump({"launch": section}))
    return cfg


def _peer(name: str, **extra) -> dict:
    node = {
        "name": name,
        "executable": "runner_peer",
        "module": "test_runner_peer",
        "remappings": {"greeting": "$(var topic_prefix)/" + name},
        "parameters": {"greeting": "$(var greeting)"},
    }
    node.update(extra)
    return node


PEER_ARGS = {"greeting": "hi", "topic_prefix": "/peers"}


def test_resolve_applies_arguments_and_paths():
    plan = resolve(
        str(REPO / "config" / "cpu.yaml"),
        {"backend": "pytorch", "use_sim_time": "true", "enable_detection_node": "false"},
    )
    lane = next(n for n in plan.nodes if n.name == "lane_node")
    assert lane.parameters["backend"] == "pytorch"
    assert lane.parameters["use_sim_time"] is True
    # the same file (models/ at the root is a link into src/edge_perception/share)
    assert os.path.samefile(lane.parameters["model"], REPO / "models" / "lane_small.onnx")
    assert lane.parameters["input_topic"] == "/camera/image_raw"
    assert "detection_node" not in plan.managed_names and "lane_node" in plan.managed_names
    assert plan.manager_parameters["use_sim_time"] is True
    replay = resolve(
        str(REPO / "config" / "cpu.yaml"), {"camera_source": "dataset", "dataset_dir": "/d"}
    )
    pub = next(n for n in replay.nodes if n.name == "scenario_publisher")
    assert (pub.parameters["source"], pub.parameters["dataset_dir"]) == ("dataset", "/d")
    assert pub.parameters["split"] == "val"
    assert pub.parameters["sequences"] == 1  # one clip of the scenario unless asked
    clips = resolve(str(REPO / "config" / "cpu.yaml"), {"sequences": "4"})
    pub = next(n for n in clips.nodes if n.name == "scenario_publisher")
    assert pub.parameters["sequences"] == 4 and isinstance(pub.parameters["sequences"], int)


def test_resolve_rejects_bad_input(tmp_path):
    cfg = _config(tmp_path, [_peer("a")], PEER_ARGS)
    with pytest.raises(LaunchConfigError, match="unknown launch argument 'bakend'"):
        resolve(str(cfg), {"bakend": "x"})
    with pytest.raises(LaunchConfigError, match="not true/false"):
        resolve(str(cfg), {"enable_a": "maybe"})
    bad = _config(tmp_path, [_peer("a", parameters={"g": "$(var nope)"})], PEER_ARGS)
    with pytest.raises(LaunchConfigError, match=r"\$\(var nope\) names no launch argument"):
        resolve(str(bad), {})
    bad = _config(tmp_path, [_peer("a", typo=1)], PEER_ARGS)
    with pytest.raises(LaunchConfigError, match="unknown key"):
        resolve(str(bad), {})


def test_arguments_and_overrides():
    args = declared_arguments(str(REPO / "config" / "xavier.yaml"))
    for name in ("camera_topic", "backend", "precision", "use_sim_time", "enable_lane_node"):
        assert name in args
    assert args["backend"][0] == "tensorrt"
    assert parse_overrides(["a:=1", "b:=x:=y"]) == {"a": "1", "b": "x:=y"}
    with pytest.raises(ValueError, match="name:=value"):
        parse_overrides(["backend=onnxruntime"])


def test_environment_options_override_the_callers():
    # The caller's domain and range are kept (test/reliability/test_launch_iface.py); the
    # options override them, and the demo's confinement is asked for explicitly.
    env = ros_environment(base={"PATH": "/bin"})
    assert "ROS_DOMAIN_ID" not in env and "ROS_AUTOMATIC_DISCOVERY_RANGE" not in env
    env = ros_environment(7, "LOCALHOST", base={})
    assert env["ROS_DOMAIN_ID"] == "7" and env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert ros_environment(base={"ROS_DOMAIN_ID": "42"})["ROS_DOMAIN_ID"] == "42"
    with pytest.raises(ValueError):
        ros_environment(999, base={})


def test_params_file_and_commands(tmp_path):
    path = write_params_file(str(tmp_path / "p.yaml"), {"a": 1, "b": [1.0, 2.0]})
    assert yaml.safe_load(open(path)) == {"/**": {"ros__parameters": {"a": 1, "b": [1.0, 2.0]}}}
    with pytest.raises(ValueError, match="empty list"):
        write_params_file(str(tmp_path / "q.yaml"), {"a": []})
    cfg = _config(tmp_path, [_peer("a"), _peer("b")], PEER_ARGS)
    runner = Runner(resolve(str(cfg), {"enable_b": "false"}), env={}, work_dir=str(tmp_path / "w"))
    cmds = dict(runner.commands())
    assert list(cmds) == ["a", "lifecycle_manager"]
    assert cmds["a"][0] == sys.executable and cmds["a"][3:5] == ["test_runner_peer", "main"]
    assert "__node:=a" in cmds["a"] and "greeting:=/peers/a" in cmds["a"]
    manager = yaml.safe_load(open(cmds["lifecycle_manager"][-1]))
    assert manager["/**"]["ros__parameters"]["node_names"] == ["a"]


def _runner_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    return env


def _peer_events(log_dir: Path) -> List[tuple]:
    events = []
    for f in log_dir.glob("*.log"):
        for line in f.read_text().splitlines():
            if line.startswith("PEER "):
                _, name, what, t = line.split()
                events.append((int(t), name, what))
    return [(name, what) for _, name, what in sorted(events)]


@pytest.mark.ros
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_runner_brings_up_and_shuts_down_in_order(tmp_path, rclpy_context, stop_signal):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    cfg = _config(tmp_path, [_peer("peer_a"), _peer("peer_b")], PEER_ARGS)
    logs = tmp_path / "logs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_perception.ros.runner", str(cfg), "greeting:=hello"]
        + ["--log-dir", str(logs), "--grace", "5"],
        env=_runner_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    node = rclpy.create_node("runner_test_listener", context=rclpy_context)
    got: List[str] = []
    node.create_subscription(String, "/peers/peer_b", lambda m: got.append(m.data), 10)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    try:
        end = time.monotonic() + 30.0
        while not got and time.monotonic() < end and proc.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        assert got and got[0] == "hello", (proc.poll(), _peer_events(logs))
        proc.send_signal(stop_signal)
        out, _ = proc.communicate(timeout=30.0)
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        executor.shutdown()
    assert _peer_events(logs) == [
        ("peer_a", "configure"),
        ("peer_a", "activate"),
        ("peer_b", "configure"),
        ("peer_b", "activate"),
        ("peer_b", "deactivate"),
        ("peer_b", "cleanup"),
        ("peer_a", "deactivate"),
        ("peer_a", "cleanup"),
    ]


@pytest.mark.ros
def test_runner_exits_nonzero_when_a_node_dies(tmp_path):
    cfg = _config(
        tmp_path,
        [_peer("peer_a"), _peer("broken", module="no_such_module_for_runner_test")],
        PEER_ARGS,
    )
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "edge_perception.ros.runner", str(cfg), "--grace", "5"],
        env=_runner_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1, res.stderr
    assert "broken exited with status" in res.stderr
    assert time.monotonic() - t0 < 30.0


def test_cli_accepts_options_between_launch_arguments(capsys):
    import argparse

    from edge_perception.ros.runner import register

    parser = argparse.ArgumentParser()
    register(parser)
    args = parser.parse_args(
        ["--grace", "3", "xavier.yaml", "backend:=onnxruntime", "--print", "enable_lane_node:=0"]
    )
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert "detection_node:" in out and "lane_node:" not in out
    assert "backend: onnxruntime" in out and args.grace == 3.0
    args = parser.parse_args(["xavier.yaml", "nonsense:=1", "--print"])
    assert args.run(args) == 2
    assert "unknown launch argument 'nonsense'" in capsys.readouterr().err
