"""CARLA label conversion with the real ``carla`` client types and synthetic raw buffers."""

from __future__ import annotations

import numpy as np
import pytest

from carla_bridge import carla_labels as cl

carla = pytest.importorskip("carla", reason="the CARLA client (pip install carla==0.9.16)")


def _bgra(h: int, w: int) -> np.ndarray:
    return np.zeros((h, w, 4), np.uint8)


def test_city_object_labels_match_the_client():
    for name, value in carla.CityObjectLabel.names.items():
        if name != "Any":
            assert cl.CITY_OBJECT_LABELS[name] == int(value), name


def test_semantic_lut_and_drivable_mask():
    tags = np.array(
        [
            [int(carla.CityObjectLabel.Roads), int(carla.CityObjectLabel.Sky)],
            [int(carla.CityObjectLabel.RoadLines), int(carla.CityObjectLabel.Car)],
        ],
        np.uint8,
    )
    assert cl.drivable_mask(tags).tolist() == [[True, False], [True, False]]
    with pytest.raises(ValueError, match="unknown carla.CityObjectLabel 'Road'.*Roads"):
        cl.semantic_lut({"Road": "drivable"}, ("background", "drivable"))
    with pytest.raises(ValueError, match="unknown project class 'automobile'.*car"):
        cl.semantic_lut({"Car": "automobile"}, ("car", "truck"))


def test_instances_to_masks_boxes_and_track_ids():
    img = _bgra(8, 10)
    car, ped = int(carla.CityObjectLabel.Car), int(carla.CityObjectLabel.Pedestrians)
    # actor 300 = 0x012C -> G = 0x2C, B = 0x01; pixels rows 1..2, cols 2..5
    img[1:3, 2:6, 2], img[1:3, 2:6, 1], img[1:3, 2:6, 0] = car, 0x2C, 0x01
    img[5:8, 7, 2], img[5:8, 7, 1] = ped, 7
    img[0, 0, 2] = int(carla.CityObjectLabel.Roads)  # not an object class
    objs = cl.objects_from_instances(img, full_boxes={300: (2.0, 1.0, 8.0, 2.0)})
    assert [(o.track_id, o.category) for o in objs] == [(7, "pedestrian"), (300, "car")]
    assert objs[0].bbox == (7.0, 5.0, 1.0, 3.0) and int(objs[0].mask.sum()) == 3
    assert objs[1].bbox == (2.0, 1.0, 4.0, 2.0)
    # full box x 2..10 of which 2..10 is inside (w = 10): nothing truncated; 8 of 16 px visible
    assert objs[1].truncated == pytest.approx(0.0)
    assert objs[1].visible_fraction == pytest.approx(0.5)
    assert cl.objects_from_instances(img, min_pixels=4)[0].track_id == 300


def test_instance_ids_from_raw_bytes_through_bgra():
    img = _bgra(2, 2)
    img[0, 1] = (0x9F, 0x31, int(carla.CityObjectLabel.Car), 255)  # B, G, R, A
    view = cl.bgra(img.tobytes(), 2, 2)
    assert cl.instance_ids(view)[0, 1] == 0x9F * 256 + 0x31
    with pytest.raises(ValueError, match="expected 3 x 2 x 4"):
        cl.bgra(img.tobytes(), 3, 2)


def test_backward_flow_scaling_sign_and_validity():
    h, w = 4, 8
    raw = np.zeros((h, w, 2), np.float32)
    raw[..., 0] = 0.5  # moved right by a quarter width (2 px) since the previous frame
    raw[..., 1] = 0.5  # NDC y up: moved up by a quarter height (1 px)
    flow, valid = cl.backward_flow(raw)
    assert flow.dtype == np.float32
    np.testing.assert_allclose(flow[0, 0], (-2.0, 1.0))
    # previous x = x - 2 must be >= 0 and previous y = y + 1 must be <= h - 1
    assert valid[:, :2].sum() == 0 and valid[h - 1].sum() == 0 and valid[0, 2]
    with pytest.raises(ValueError, match="H x W x 2"):
        cl.backward_flow(np.zeros((2, 2, 3), np.float32))


def test_lane_marking_types_and_colors():
    t = carla.LaneMarkingType
    assert cl.lane_type(t.Solid) == "solid" and cl.lane_type(t.Broken) == "dashed"
    assert cl.lane_type(t.SolidSolid) == "double" and cl.lane_type(t.SolidBroken) == "double"
    assert cl.lane_type(t.NONE) is None and cl.lane_type(t.Curb) is None
    for value in t.names.values():  # every marking type of the client is covered
        cl.lane_type(value)
    assert cl.lane_color(carla.LaneMarkingColor.Yellow) == "yellow"
    assert cl.lane_color(carla.LaneMarkingColor.Standard) == "white"
    with pytest.raises(ValueError, match="unknown carla.LaneMarkingType 'Zigzag'"):
        cl.lane_type("Zigzag")


def test_camera_pose_and_projection_with_carla_transform():
    cam = cl.camera_model(200, 100, 90.0)
    assert cam.fx == pytest.approx(100.0) and cam.cx == 100.0
    tf = carla.Transform(carla.Location(x=1.0, y=2.0, z=3.0), carla.Rotation(yaw=90.0))
    pose = cl.camera_pose(tf.get_matrix())
    # the camera looks along its UE x axis, which yaw 90 turns to world +y
    np.testing.assert_allclose(pose[:3, 2], (0.0, 1.0, 0.0), atol=1e-6)
    fwd = tf.transform(carla.Location(x=10.0, y=1.0, z=0.5))  # 10 m ahead, 1 m right, 0.5 m up
    uv, z = cl.project(np.array([[fwd.x, fwd.y, fwd.z]]), pose, cam)
    assert z[0] == pytest.approx(10.0, abs=1e-4)
    np.testing.assert_allclose(uv[0], (100.0 + 10.0, 50.0 - 5.0), atol=1e-3)
    assert cl.project_box(np.array([[fwd.x, fwd.y, fwd.z], [1.0, 2.0, 3.0]]), pose, cam) is None


def test_lane_lines_and_instance_mask():
    cam = cl.camera_model(64, 32, 90.0)
    pose = cl.camera_pose(carla.Transform(carla.Location(z=1.5)).get_matrix())
    pts = np.array([[x, -1.5, 0.0] for x in (2.0, 5.0, 10.0, 20.0)])  # 1.5 m left, on the road
    behind = np.array([[-5.0, 0.0, 0.0], [-2.0, 0.0, 0.0]])
    lines = cl.lane_lines_in_image(
        [("solid", "white", pts), ("dashed", "white", behind)], pose, cam
    )
    assert len(lines) == 1 and lines[0].line_id == 1 and lines[0].type == "solid"
    assert lines[0].points[0, 1] > lines[0].points[-1, 1]  # bottom first
    tags = np.zeros((32, 64), np.uint8)
    tags[16:, :] = cl.CITY_OBJECT_LABELS["RoadLines"]
    mask = cl.lane_instance_mask(tags, lines, tolerance_px=1)
    assert mask.dtype == np.uint16 and set(np.unique(mask)) == {0, 1}
    assert mask[:16].sum() == 0  # only painted pixels carry a line id
