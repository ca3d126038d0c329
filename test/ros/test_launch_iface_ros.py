"""Launch interface on real rclpy (issue 13, item 4): a params file reaches the node, output_qos
is the publishers' reliability, a namespaced deployment publishes exactly the topics of the RViz
layout generated for it, and ``edge-perception run`` keeps the caller's ROS_DOMAIN_ID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
import yaml

pytest.importorskip("rclpy")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from edge_perception.ros import rviz  # noqa: E402
from edge_perception.ros.lane_node import LaneSegmentationNode  # noqa: E402
from rcl_interfaces.srv import GetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter, parameter_value_to_python  # noqa: E402
from rclpy.qos import ReliabilityPolicy  # noqa: E402
from rclpy.qos import qos_profile_sensor_data as SENSOR  # noqa: E402
from tiny_models import lane_onnx  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

from edge_perception_msgs.msg import LaneSegmentation  # noqa: E402

pytestmark = pytest.mark.ros
LANE_PARAMS = {"overlay_alpha": 0.25, "output_qos": "best_effort"}
RVIZ_TYPES = {
    "rviz_default_plugins/Image": "sensor_msgs/msg/Image",
    "rviz_default_plugins/MarkerArray": "visualization_msgs/msg/MarkerArray",
}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return lane_onnx(str(tmp_path_factory.mktemp("lane") / "lane.onnx"))


def _spin_until(executor: Any, cond: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        executor.spin_once(timeout_sec=0.1)
    return cond()


def _get_parameters(peer: Node, executor: Any, node: str, names: List[str]) -> Dict[str, Any]:
    client = peer.create_client(GetParameters, node + "/get_parameters")
    assert _spin_until(executor, client.service_is_ready, 60.0), node + ": no parameter service"
    future = client.call_async(GetParameters.Request(names=names))
    assert _spin_until(executor, future.done, 30.0)
    values = future.result().values
    return {n: parameter_value_to_python(v) for n, v in zip(names, values)}


@pytest.mark.parametrize(
    "kind, depth, policy",
    [
        ("reliable", 0, ReliabilityPolicy.RELIABLE),
        ("best_effort", 3, ReliabilityPolicy.BEST_EFFORT),
    ],
)
def test_output_qos_is_the_publishers_qos(rclpy_context, model, kind, depth, policy):
    node = LaneSegmentationNode(
        "qos_lane",
        context=rclpy_context,
        parameter_overrides=[
            Parameter("model", value=model),
            Parameter("threads", value=1),
            Parameter("output_qos", value=kind),
            Parameter("output_depth", value=depth),
        ],
    )
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        for topic, default_depth in (("lanes", 5), ("class_mask", 5), ("timing", 10)):
            infos = node.get_publishers_info_by_topic("/qos_lane/" + topic)
            assert len(infos) == 1, topic
            assert infos[0].qos_profile.reliability == policy, topic
            pub = next(p for p in node._own_publishers if p.topic_name == "/qos_lane/" + topic)
            assert pub.qos_profile.depth == (depth or default_depth)
        # /diagnostics keeps its own QoS.
        diag = node.get_publishers_info_by_topic("/diagnostics")
        assert diag[0].qos_profile.reliability == ReliabilityPolicy.RELIABLE
    finally:
        node.destroy_node()


def test_node_takes_a_params_file(rclpy_context, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "pf_lane": {
                    "ros__parameters": {"overlay_alpha": 0.25, "output_qos": "best_effort"}
                },
                "/**": {"ros__parameters": {"threads": 3}},
                "other_node": {"ros__parameters": {"threads": 7}},
            }
        )
    )
    cmd = [sys.executable, "-m", "edge_perception.ros.lane_node", "--ros-args"]
    cmd += ["-r", "__node:=pf_lane", "--params-file", str(params), "--log-level", "debug"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ)
    peer = Node("pf_peer", context=rclpy_context)
    ex = SingleThreadedExecutor(context=rclpy_context)
    ex.add_node(peer)
    try:
        got = _get_parameters(peer, ex, "/pf_lane", ["overlay_alpha", "output_qos", "threads"])
        assert got == {"overlay_alpha": 0.25, "output_qos": "best_effort", "threads": 3}
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert b"[DEBUG]" in out  # --log-level reached the node
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ex.remove_node(peer)
        peer.destroy_node()
        ex.shutdown()


def test_namespaced_run_matches_its_rviz_layout(rclpy_context, ros_domain_id, tmp_path):
    """``edge-perception run cpu.yaml namespace:=robot1`` with a params file and log_level: every
    topic of the generated RViz layout is published with its display's type, the file's values
    and output_qos reach the nodes, and the run is on the caller's domain (passed explicitly)."""
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "lane_node": {
                    "ros__parameters": {"overlay_alpha": 0.25, "output_qos": "best_effort"}
                },
                "/**": {"ros__parameters": {"threads": 1}},
            }
        )
    )
    layout, logs = tmp_path / "robot1.rviz", tmp_path / "logs"
    env = dict(os.environ)
    # The network rule for tests: a domain of this test's own, discovery on this host only.
    env.update(ROS_DOMAIN_ID=str(ros_domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    cmd = [sys.executable, "-m", "edge_perception.ros.runner", "cpu.yaml", "namespace:=robot1"]
    cmd += ["log_level:=debug", "rate_hz:=2.0", "--params-file", str(params)]
    cmd += ["--write-rviz", str(layout), "--log-dir", str(logs), "--grace", "10"]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peer = Node("ns_peer", context=rclpy_context)
    ex = SingleThreadedExecutor(context=rclpy_context)
    ex.add_node(peer)
    try:
        assert _spin_until(ex, layout.exists, 30.0), "no RViz layout written"
        wanted = {
            t: RVIZ_TYPES[c]
            for t, c in rviz.display_topics(yaml.safe_load(layout.read_text())).items()
        }
        assert "/robot1/lane_node/overlay" in wanted and "/camera/image_raw" in wanted

        def published() -> Dict[str, List[str]]:
            return dict(peer.get_topic_names_and_types())

        def all_there() -> bool:
            have = published()
            return all(t in have and ty in have[t] for t, ty in wanted.items())

        assert _spin_until(ex, lambda: all_there() or proc.poll() is not None, 180.0)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert all_there(), (sorted(wanted), sorted(published()))
        # Active: results arrive (a best-effort subscriber matches either reliability).
        got_msgs: Dict[str, list] = {"lanes": [], "detections": []}
        peer.create_subscription(
            LaneSegmentation, "/robot1/lane_node/lanes", got_msgs["lanes"].append, SENSOR
        )
        peer.create_subscription(
            Detection2DArray, "/robot1/detection_node/detections", got_msgs["detections"].append, 5
        )
        assert _spin_until(ex, lambda: all(got_msgs.values()), 120.0), got_msgs
        # Nothing of ours outside the namespace (the camera topic is absolute by default).
        stray = [t for t in published() if t.startswith(("/lane_node", "/detection_node"))]
        assert not stray, stray
        lanes = peer.get_publishers_info_by_topic("/robot1/lane_node/lanes")
        dets = peer.get_publishers_info_by_topic("/robot1/detection_node/detections")
        assert lanes and lanes[0].qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
        assert dets and dets[0].qos_profile.reliability == ReliabilityPolicy.RELIABLE
        got = _get_parameters(peer, ex, "/robot1/lane_node", ["overlay_alpha", "threads"])
        assert got == {"overlay_alpha": 0.25, "threads": 1}
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:]
        assert "ROS_DOMAIN_ID=%d" % ros_domain_id in err and "namespace /robot1" in err
        assert "[DEBUG]" in (logs / "lane_node.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ex.remove_node(peer)
        peer.destroy_node()
        ex.shutdown()
