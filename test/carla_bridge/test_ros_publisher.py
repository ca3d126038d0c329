"""scenario_publisher over real DDS: images, camera info and ground truth; bag record/replay;
configure failure on an unreachable CARLA server (node alive, unconfigured)."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy", reason="rclpy is not importable: source env.sh")

from _cb_frames import tiny_frames  # noqa: E402


def _spin_until(ex, cond, timeout=10.0) -> bool:
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        ex.spin_once(timeout_sec=0.05)
    return cond()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _publisher(ctx, **params):
    from carla_bridge.ros.scenario_publisher import ScenarioPublisher
    from rclpy.parameter import Parameter

    overrides = [Parameter(k, value=v) for k, v in params.items()]
    return ScenarioPublisher(context=ctx, parameter_overrides=overrides)


def _listener(ctx, received):
    from carla_bridge.ros.frames import TOPICS
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    node = rclpy.create_node("gt_listener", context=ctx)
    reliable = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)  # fmt: skip
    for key, (topic, cls) in TOPICS.items():
        qos = qos_profile_sensor_data if key in ("image", "camera_info") else reliable
        qos = latched if key == "label_info" else qos
        received[key] = []
        node.create_subscription(cls, topic, lambda m, k=key: received[k].append(m), qos)
    return node


def test_publisher_from_bag_sends_images_info_and_ground_truth(rclpy_context, tmp_path):
    from carla_bridge.ros.record import record_frames
    from edge_perception.ros import convert
    from lifecycle_msgs.msg import State
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn

    from carla_bridge import bag

    frames = tiny_frames(3)
    record_frames(frames, str(tmp_path / "src"))
    ex = SingleThreadedExecutor(context=rclpy_context)
    received: dict = {}
    listener = _listener(rclpy_context, received)
    pub = _publisher(rclpy_context, source="bag", bag=str(tmp_path / "src"), rate_hz=20.0,
                     record_bag=str(tmp_path / "copy"))  # fmt: skip
    ex.add_node(listener)
    ex.add_node(pub)
    try:
        assert pub.trigger_configure() == TransitionCallbackReturn.SUCCESS
        # wait for discovery of every reliable subscriber before starting the stream
        assert _spin_until(ex, lambda: all(
            p.get_subscription_count() > 0 for p in pub._pubs.values()))  # fmt: skip
        assert pub.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert _spin_until(ex, lambda: pub.finished and len(received["lanes"]) == 3)
        assert _spin_until(ex, lambda: len(received["image"]) >= 2, timeout=2.0)
        img = received["image"][-1]
        assert img.encoding == "rgb8" and img.header.frame_id == "camera"
        k = [f.index for f in frames if abs(f.timestamp - (convert.stamp_to_ns(
            img.header.stamp) - 1e9) / 1e9) < 1e-6][0]  # fmt: skip
        np.testing.assert_array_equal(convert.image_to_array(img), frames[k].image)
        info = received["camera_info"][-1]
        assert (info.width, info.height, info.k[0]) == (32, 24, 20.0)
        stamps = [convert.stamp_to_ns(m.header.stamp) for m in received["detections"]]
        assert stamps == [1_000_000_000, 1_100_000_000, 1_200_000_000]
        det = convert.msg_to_detections(received["detections"][1])
        np.testing.assert_allclose(det.boxes_xyxy[0], (13.0, 14.0, 21.0, 20.0))
        inst = convert.msg_to_instances(received["instances"][2])
        np.testing.assert_array_equal(inst.masks[0], frames[2].objects[0].mask)
        lane = convert.msg_to_lane(received["lanes"][0])
        np.testing.assert_array_equal(lane.class_mask, frames[0].class_mask())
        assert received["label_info"][0].class_map[5].class_name == "pedestrian"
        assert len(received["clock"]) == 3
        assert pub.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert pub.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert pub._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
    finally:
        pub.destroy_node()
        listener.destroy_node()
    # record mode wrote what was published: same topics, counts and bytes as the source bag
    src = [(m.topic, m.data) for m in bag.read(str(tmp_path / "src"))]
    copy = [(m.topic, m.data) for m in bag.read(str(tmp_path / "copy"))]
    assert sorted(src) == sorted(copy)


def test_unreachable_carla_fails_configure_and_node_stays_usable(rclpy_context, tmp_path, capfd):
    from lifecycle_msgs.msg import State
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    port = _closed_port()
    scenario = tmp_path / "carla.yaml"
    scenario.write_text(
        "backend: carla\nframes: 2\ncarla: {host: 127.0.0.1, port: %d, timeout_s: 0.3}\n" % port
    )
    pub = _publisher(rclpy_context, scenario=str(scenario))
    try:
        t0 = time.monotonic()
        assert pub.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert time.monotonic() - t0 < 5.0
        assert pub._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
        assert pub._pubs == {}
        err = capfd.readouterr().err
        assert "configure failed" in err and "127.0.0.1:%d" % port in err and "0.3 s" in err
        # the node is alive: fix the parameters and configure again
        record_bag_src = tmp_path / "b"
        from carla_bridge.ros.record import record_frames

        record_frames(tiny_frames(1), str(record_bag_src))
        pub.set_parameters([Parameter("source", value="bag"),
                            Parameter("bag", value=str(record_bag_src))])  # fmt: skip
        assert pub.trigger_configure() == TransitionCallbackReturn.SUCCESS
        pub.trigger_cleanup()
    finally:
        pub.destroy_node()


def test_configure_error_message_names_host_port_timeout(tmp_path):
    """The reason the node logs is the backend's error: host, port and timeout in it."""
    from carla_bridge.carla_backend import CarlaUnavailableError
    from carla_bridge.replay import scenario_frames

    port = _closed_port()
    scenario = tmp_path / "carla.yaml"
    scenario.write_text(
        "backend: carla\nframes: 2\ncarla: {host: 127.0.0.1, port: %d, timeout_s: 0.3}\n" % port
    )
    with pytest.raises(CarlaUnavailableError, match="127.0.0.1:%d.*0.3 s" % port):
        next(scenario_frames(str(scenario)))


TINY_SCENARIO = (
    "backend: synthetic\nframes: 3\nfps: 20\nnum_vehicles: 2\nnum_walkers: 1\nseed: 3\n"
    "weather: clear\ntime_of_day: day\ncamera: {width: 64, height: 48}\n"
)


def test_synthetic_scenario_with_sim_time_publishes_clock_and_stamps(rclpy_context, tmp_path):
    from edge_perception.ros import convert
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn

    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(TINY_SCENARIO)
    ex = SingleThreadedExecutor(context=rclpy_context)
    received: dict = {}
    listener = _listener(rclpy_context, received)
    pub = _publisher(rclpy_context, scenario=str(scenario), use_sim_time=True, sequences=2,
                     frame_id="front_cam")  # fmt: skip
    ex.add_node(listener)
    ex.add_node(pub)
    try:
        assert pub.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert pub.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert _spin_until(ex, lambda: pub.finished and len(received["lanes"]) == 6)
        clock = [convert.stamp_to_ns(m.clock) for m in received["clock"]]
        assert clock == sorted(clock) and len(set(clock)) == len(clock)
        lanes = [convert.stamp_to_ns(m.header.stamp) for m in received["lanes"]]
        # two sequences of 3 frames at 20 fps; the second continues one period after the first
        assert lanes == [0, 50_000_000, 100_000_000, 150_000_000, 200_000_000, 250_000_000]
        assert set(lanes) <= set(clock)
        assert received["lanes"][0].header.frame_id == "front_cam"
        assert _spin_until(ex, lambda: len(received["image"]) > 0, timeout=2.0)
        assert received["image"][0].width == 64 and received["image"][0].height == 48
    finally:
        pub.destroy_node()
        listener.destroy_node()


def test_record_cli_writes_a_bag_from_a_scenario(tmp_path):
    from carla_bridge.ros.record import main

    from carla_bridge import bag

    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(TINY_SCENARIO)
    assert main(["--scenario", str(scenario), "--out", str(tmp_path / "rec")]) == 0
    assert bag.topics(str(tmp_path / "rec"))["/ground_truth/lanes"][1] == 3
    assert main(["--scenario", str(scenario), "--out", str(tmp_path / "rec")]) == 2  # exists
    carla_yaml = tmp_path / "carla.yaml"
    carla_yaml.write_text(
        "backend: carla\ncarla: {host: 127.0.0.1, port: %d, timeout_s: 0.3}\n" % _closed_port()
    )
    args = ["--scenario", str(carla_yaml), "--carla-log", "rec.log", "--out", str(tmp_path / "c")]
    assert main(args) == 2 and not (tmp_path / "c").exists()


def test_dataset_source_republishes_the_written_labels(rclpy_context, tmp_path):
    from carla_bridge.dataset import generate_dataset, iter_frames
    from carla_bridge.replay import dataset_frames, load_scenario
    from edge_perception.ros import convert
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn

    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(TINY_SCENARIO)
    cfg = load_scenario(str(scenario))
    generate_dataset(str(tmp_path / "ds"), cfg, train_sequences=0, val_sequences=1,
                     frames_per_sequence=2, workers=1, progress=False)  # fmt: skip
    frames = list(dataset_frames(str(tmp_path / "ds"), "val"))
    # the val split renders at the default 10 Hz whatever the scenario's rate
    assert [f.index for f in frames] == [0, 1] and frames[1].timestamp == pytest.approx(0.1)
    ex = SingleThreadedExecutor(context=rclpy_context)
    received: dict = {}
    listener = _listener(rclpy_context, received)
    pub = _publisher(rclpy_context, source="dataset", dataset_dir=str(tmp_path / "ds"),
                     rate_hz=20.0)  # fmt: skip
    ex.add_node(listener)
    ex.add_node(pub)
    try:
        assert pub.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert _spin_until(ex, lambda: all(
            p.get_subscription_count() > 0 for p in pub._pubs.values()))  # fmt: skip
        assert pub.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert _spin_until(ex, lambda: pub.finished and len(received["instances"]) == 2)
        lane = convert.msg_to_lane(received["lanes"][1])
        on_disk = list(iter_frames(str(tmp_path / "ds"), "val"))[1].lane_class
        np.testing.assert_array_equal(lane.class_mask, on_disk)
        assert len(lane.lines) == len(frames[1].lane_lines) > 0
        inst = convert.msg_to_instances(received["instances"][0])
        assert len(inst) == len(frames[0].objects)
    finally:
        pub.destroy_node()
        listener.destroy_node()
    pub2 = _publisher(rclpy_context, source="dataset", dataset_dir=str(tmp_path / "missing"))
    try:
        assert pub2.trigger_configure() == TransitionCallbackReturn.FAILURE
    finally:
        pub2.destroy_node()


def test_publisher_process_autostarts_and_closes_its_recording_on_sigint(rclpy_context, tmp_path):
    import signal
    import subprocess
    import sys

    from carla_bridge.ros.record import record_frames
    from rclpy.executors import SingleThreadedExecutor

    from carla_bridge import bag

    record_frames(tiny_frames(2), str(tmp_path / "src"))
    received: dict = {}
    listener = _listener(rclpy_context, received)
    ex = SingleThreadedExecutor(context=rclpy_context)
    ex.add_node(listener)
    proc = subprocess.Popen(
        [sys.executable, "-m", "carla_bridge.ros.scenario_publisher", "--ros-args",
         "-p", "source:=bag", "-p", "bag:=%s" % (tmp_path / "src"), "-p", "loop:=true",
         "-p", "rate_hz:=5.0", "-p", "record_bag:=%s" % (tmp_path / "rec")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert _spin_until(ex, lambda: len(received["lanes"]) >= 1, timeout=20.0)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
        listener.destroy_node()
    assert proc.returncode == 0, out
    topics = bag.topics(str(tmp_path / "rec"))
    assert "recorded" in out and topics["/ground_truth/lanes"][1] >= 1, (out, topics)
