"""rosbag2 MCAP bags: written frames read back message for message (rclpy and ROS-free)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy", reason="rclpy is not importable: source env.sh")

from _cb_frames import tiny_frames  # noqa: E402
from carla_bridge.ros.frames import TOPICS  # noqa: E402
from carla_bridge.ros.record import record_frames  # noqa: E402
from edge_perception.ros import convert  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402

from carla_bridge import bag  # noqa: E402

pytestmark = pytest.mark.ros


def test_recorded_frames_read_back_message_for_message(tmp_path):
    frames = tiny_frames(3)
    path = tmp_path / "run"
    assert record_frames(frames, str(path), start_ns=5_000_000_000) == 3
    meta = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 9 and meta["storage_identifier"] == "mcap"
    assert meta["relative_file_paths"] == ["run.mcap"] and (path / "run.mcap").is_file()
    assert sorted(p.name for p in path.iterdir()) == ["metadata.yaml", "run.mcap"]
    assert meta["message_count"] == 3 * 6 + 1  # clock + 5 per frame, label_info once
    assert not (tmp_path / "run.partial").exists()

    info = bag.topics(str(path))
    assert info["/camera/image_raw"] == ("sensor_msgs/msg/Image", 3)
    assert info["/ground_truth/instances"] == ("edge_perception_msgs/msg/InstanceArray", 3)

    msgs = list(bag.read(str(path)))
    images = [m for m in msgs if m.topic == "/camera/image_raw"]
    for k, m in enumerate(images):
        img = deserialize_message(m.data, TOPICS["image"][1])
        assert convert.stamp_to_ns(img.header.stamp) == m.t_ns == 5_000_000_000 + k * 100_000_000
        np.testing.assert_array_equal(convert.image_to_array(img), frames[k].image)
    inst = [m for m in msgs if m.topic == "/ground_truth/instances"][2]
    rec = convert.msg_to_instances(deserialize_message(inst.data, TOPICS["instances"][1]))
    np.testing.assert_array_equal(rec.masks[0], frames[2].objects[0].mask)
    assert rec.track_ids.tolist() == [7]
    lanes = [m for m in msgs if m.topic == "/ground_truth/lanes"][0]
    lane = convert.msg_to_lane(deserialize_message(lanes.data, TOPICS["lanes"][1]))
    np.testing.assert_array_equal(lane.class_mask, frames[0].class_mask())

    # an independent MCAP reader decodes every message from the schemas stored in the file
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    with open(path / "run.mcap", "rb") as fh:
        reader = make_reader(fh, decoder_factories=[DecoderFactory()])
        decoded = [(c.topic, d) for _s, c, _m, d in reader.iter_decoded_messages()]
    assert [t for t, _ in decoded] == [m.topic for m in msgs]
    assert decoded[-1][1].lines[0].type == 1  # LaneLine.TYPE_SOLID

    # ROS-free decoding of the same bytes through the rosbags typestore
    store = bag.make_typestore()
    det = bag.deserialize([m for m in msgs if m.topic == "/ground_truth/detections"][0], store)
    assert det.detections[0].id == "7" and det.detections[0].bbox.size_x == pytest.approx(8.0)


def test_existing_bag_and_unknown_type_are_refused(tmp_path):
    (tmp_path / "old").mkdir()
    with pytest.raises(FileExistsError, match="pass a new directory"):
        bag.BagWriter(str(tmp_path / "old"))
    with pytest.raises(ValueError, match="unknown message type 'nope/msg/X'"):
        with bag.BagWriter(str(tmp_path / "b")) as w:
            w.write("/x", "nope/msg/X", b"", 1)
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.partial").exists()
    with pytest.raises(FileNotFoundError, match="not a rosbag2 bag"):
        list(bag.read(str(tmp_path / "old")))


def test_type_hashes_match_the_ros_build():
    """The RIHS01 hashes stored in bags equal the ones the ROS build generated (ros2 bag play)."""
    import json
    import os

    store = bag.make_typestore()
    checked = 0
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        for pkg in bag.MSG_PACKAGES + ("sensor_msgs",):
            share = os.path.join(prefix, "share", pkg, "msg")
            if not os.path.isdir(share):
                continue
            for name in sorted(os.listdir(share)):
                if name.endswith(".json"):
                    with open(os.path.join(share, name)) as fh:
                        desc = json.load(fh)["type_hashes"][0]
                    assert store.hash_rihs01(desc["type_name"]) == desc["hash_string"], name
                    checked += 1
    if not checked:
        pytest.skip(
            "no type-description .json files under AMENT_PREFIX_PATH (build the workspace)"
        )
    assert checked >= 10
