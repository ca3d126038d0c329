"""ROS parameters of the lane node: descriptors, overrides, validation at start and at run time."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")

from edge_perception.config import DetectionNodeConfig, LaneNodeConfig  # noqa: E402
from edge_perception.ros.lane_node import LaneSegmentationNode  # noqa: E402
from edge_perception.ros.params import declare_config, install_validator, read_config  # noqa: E402
from rcl_interfaces.msg import ParameterType  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

pytestmark = pytest.mark.ros


def test_descriptors_and_overrides(rclpy_context):
    node = LaneSegmentationNode(
        context=rclpy_context,
        parameter_overrides=[
            Parameter("input_size", value=[256, 512]),
            Parameter("diagnostics_period", value=2),  # an int for a float is accepted
            Parameter("qos", value="reliable"),
        ],
    )
    try:
        cfg = read_config(node, LaneNodeConfig)
        assert cfg.input_size == [256, 512] and cfg.diagnostics_period == 2.0
        assert cfg.qos == "reliable" and cfg.model == "lane_small.onnx"
        d = node.describe_parameter("qos")
        assert "sensor_data" in d.additional_constraints and d.description
        assert node.describe_parameter("threads").integer_range[0].to_value == 256
        alpha = node.describe_parameter("overlay_alpha").floating_point_range[0]
        assert (alpha.from_value, alpha.to_value) == (0.0, 1.0)
        assert node.describe_parameter("class_names").type == ParameterType.PARAMETER_STRING_ARRAY
    finally:
        node.destroy_node()


def test_runtime_changes_validated_with_reason(rclpy_context):
    node = LaneSegmentationNode(context=rclpy_context)
    try:
        ok = node.set_parameters([Parameter("overlay_encoding", value="rgb8")])[0]
        assert ok.successful and node.get_parameter("overlay_encoding").value == "rgb8"
        for name, value, words in (
            ("overlay_encoding", "yuv", "allowed values"),
            ("backend", "openvino", "allowed values: ['onnxruntime'"),
            ("providers", ["gpu"], "providers"),
            ("input_topic", "", "must not be empty"),
            ("threads", -1, "threads"),
        ):
            res = node.set_parameters([Parameter(name, value=value)])[0]
            assert not res.successful and words in res.reason, (name, res.reason)
    finally:
        node.destroy_node()


def test_bad_start_parameters_fail_configure_not_construction(rclpy_context):
    node = LaneSegmentationNode(
        context=rclpy_context, parameter_overrides=[Parameter("resize", value="crop")]
    )
    try:
        with pytest.raises(ValueError, match="resize: 'crop' is not allowed"):
            read_config(node, LaneNodeConfig)
        from lifecycle_msgs.msg import State

        node.trigger_configure()
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
        assert "resize" in node._last_error
    finally:
        node.destroy_node()


def test_empty_list_default_accepts_strings(rclpy_context):
    from rclpy.node import Node

    node = Node("det_params", context=rclpy_context)
    try:
        declare_config(node, DetectionNodeConfig)
        install_validator(node, DetectionNodeConfig)
        assert read_config(node, DetectionNodeConfig).classes == []
        assert node.set_parameters([Parameter("classes", value=["car"])])[0].successful
        assert read_config(node, DetectionNodeConfig).classes == ["car"]
        res = node.set_parameters([Parameter("classes", value=["tram"])])[0]
        assert not res.successful and "tram" in res.reason
    finally:
        node.destroy_node()


def test_overlay_tints_classes_and_leaves_background():
    import numpy as np
    from edge_perception.ros.lane_node import LANE_PALETTE, render_overlay
    from edge_perception.runtime.results import LaneLineResult, LaneResult

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    mask = rng.integers(0, 4, (24, 32)).astype(np.uint8)
    out = render_overlay(rgb, LaneResult(mask, []), alpha=0.5)
    fg = mask > 0
    expected = np.round(rgb[fg] * 0.5 + LANE_PALETTE[mask[fg]] * 0.5)
    assert np.abs(out[fg].astype(int) - expected).max() <= 1
    np.testing.assert_array_equal(out[~fg], rgb[~fg])
    line = LaneLineResult(points=np.array([[5.0, 23.0], [5.0, 0.0]]), type="solid")
    drawn = render_overlay(rgb, LaneResult(np.zeros((24, 32), np.uint8), [], [line]), 0.5)
    assert (drawn[:, 5] == (0, 255, 0)).all(axis=1).sum() > 10
