"""Docs that name code facts say what the code does: lane class order, timing topics."""

from __future__ import annotations

import re
from pathlib import Path

from edge_perception.config import LANE_CLASS_NAMES

ROOT = Path(__file__).resolve().parents[2]


def test_lane_class_order_in_msg_and_contracts():
    msg = (ROOT / "src/edge_perception_msgs/msg/LaneSegmentation.msg").read_text()
    comment = " ".join(line.split("#", 1)[1] for line in msg.splitlines() if "#" in line)
    listed = re.search(r"\[(background[^\]]*)\]", comment)
    assert listed, "LaneSegmentation.msg names no class order"
    assert [c.strip() for c in listed.group(1).split(",")] == LANE_CLASS_NAMES
    contracts = (ROOT / "docs/CONTRACTS.md").read_text()
    line = next(t for t in contracts.splitlines() if "Lane segmentation mask values" in t)
    pairs = re.findall(r"(\d) (\w+)", line)
    assert [name for _i, name in sorted(pairs)] == LANE_CLASS_NAMES


def test_timing_topics_in_docs_exist():
    nodes = {"lane_node", "detection_node", "vis_node"}
    for doc in ("docs/jetson.md", "README.md", "docs/runtime.md"):
        text = (ROOT / doc).read_text()
        assert "/perception/timing" not in text, doc
        for topic in re.findall(r"(/[\w/]+/timing)\b", text):
            assert topic.split("/")[-2] in nodes | {"<node>", "evaluator"}, (doc, topic)
