"""Typed configs: YAML (flat and ROS params-file layout), validation messages, backend options."""

from __future__ import annotations

import pytest
from edge_perception.config import (
    BackendConfig,
    DetectionNodeConfig,
    LaneNodeConfig,
    config_to_dict,
    field_rules,
    load_config,
)


def test_defaults_validate_and_map_to_backend_options():
    cfg = LaneNodeConfig().validate()
    assert cfg.qos == "sensor_data" and cfg.overlay and cfg.class_names[0] == "background"
    bc = load_config(LaneNodeConfig, {"model": "m.onnx", "threads": 2}).backend_config()
    assert bc.options() == {
        "intra_op_threads": 2,
        "inter_op_threads": 0,
        "graph_optimization": "all",
        "providers": "auto",
        "precision": "fp32",
    }
    pt = BackendConfig(kind="auto", model="m.pt", device="cpu").validate()
    assert pt.resolved_kind() == "pytorch" and pt.options()["device"] == "cpu"
    trt = BackendConfig(kind="tensorrt", model="m.onnx", precision="int8").validate()
    assert trt.options() == {
        "precision": "int8",
        "policy": "",
        "dla_core": -1,
        "build_if_missing": True,
        "cache_dir": "",
    }
    trt = BackendConfig(kind="tensorrt", model="m.onnx", trt_policy="rtdetr", dla_core=0)
    assert trt.validate().options()["policy"] == "rtdetr"
    assert trt.options()["dla_core"] == 0
    with pytest.raises(ValueError, match="dla_core"):
        BackendConfig(kind="tensorrt", model="m.onnx", dla_core=3).validate()
    assert "help" in field_rules(LaneNodeConfig)["qos"]


def test_yaml_flat_and_ros_layout(tmp_path):
    flat = tmp_path / "flat.yaml"
    flat.write_text("input_size: [256, 512]\nqos: reliable\noverlay: false\n")
    cfg = load_config(LaneNodeConfig, str(flat))
    assert cfg.input_size == [256, 512] and cfg.qos == "reliable" and not cfg.overlay
    ros = tmp_path / "ros.yaml"
    ros.write_text(
        "lane_node:\n  ros__parameters:\n    threads: 3\n"
        "detection_node:\n  ros__parameters:\n    score_threshold: 0.3\n"
    )
    assert load_config(LaneNodeConfig, str(ros), node="lane_node").threads == 3
    det = load_config(DetectionNodeConfig, str(ros), node="detection_node")
    assert det.score_threshold == pytest.approx(0.3)
    with pytest.raises(ValueError, match="several nodes"):
        load_config(LaneNodeConfig, str(ros))
    assert config_to_dict(cfg)["qos"] == "reliable"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"thread": 1}, "unknown key 'thread'; allowed keys"),
        ({"qos": "fast"}, r"qos: 'fast' is not allowed; allowed values: \['sensor_data'"),
        ({"backend": "openvino"}, "backend: 'openvino' is not allowed"),
        ({"input_size": [1]}, "input_size: expected 2 values"),
        ({"input_size": [1, -2]}, "below the minimum"),
        ({"input_size": ["a", "b"]}, "list of int"),
        ({"overlay": 1}, "overlay: expected true or false"),
        ({"overlay_alpha": 2.0}, "above the maximum"),
        ({"threads": 1.5}, "threads: expected an integer"),
        ({"class_names": [1, 2]}, "list of str"),
        ({"input_topic": " "}, "input_topic: must not be empty"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_values_name_key_and_allowed(data, message):
    with pytest.raises(ValueError, match=message):
        load_config(LaneNodeConfig, data)


def test_detection_class_filter_validated(tmp_path):
    with pytest.raises(ValueError, match="classes: unknown"):
        load_config(DetectionNodeConfig, {"classes": ["tram"]})
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(LaneNodeConfig, str(bad))
    with pytest.raises(ValueError, match="cannot read"):
        load_config(LaneNodeConfig, str(tmp_path / "none.yaml"))
