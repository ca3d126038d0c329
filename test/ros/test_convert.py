"""Message conversion: every image encoding (padded rows too), every malformed kind, results.

Needs the message classes (built workspace) but no running ROS graph.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg")
pytest.importorskip("edge_perception_msgs.msg")

from edge_perception.ros.convert import (  # noqa: E402
    DECODE_ERROR_KINDS,
    ImageDecodeError,
    array_to_image,
    detections_to_msg,
    image_to_array,
    instances_to_msg,
    label_info_msg,
    lane_to_msg,
    make_header,
    msg_to_detections,
    msg_to_instances,
    msg_to_lane,
    stamp_to_ns,
    timing_msg,
)
from edge_perception.runtime.results import LaneLineResult  # noqa: E402
from edge_perception.runtime.yuv import decode_yuv422_numpy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

pytestmark = pytest.mark.ros


def _rgb(h=6, w=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


EXACT = ["rgb8", "bgr8", "rgba8", "bgra8"]


@pytest.mark.parametrize("encoding", EXACT)
@pytest.mark.parametrize("pad", [0, 5])
def test_colour_round_trip_exact(encoding, pad):
    rgb = _rgb()
    bpp = 4 if "a" in encoding[3:] else 3
    msg = array_to_image(rgb, encoding, make_header(5, "cam"), step=8 * bpp + pad)
    assert msg.step == 8 * bpp + pad and len(msg.data) == msg.step * 6
    out = image_to_array(msg)
    assert out.dtype == np.uint8 and out.shape == (6, 8, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


def test_bgr8_byte_order_is_blue_first():
    msg = Image(height=1, width=1, encoding="bgr8", step=3, data=bytes([10, 20, 30]))
    np.testing.assert_array_equal(image_to_array(msg)[0, 0], [30, 20, 10])
    msg = Image(height=1, width=1, encoding="bgra8", step=4, data=bytes([10, 20, 30, 40]))
    np.testing.assert_array_equal(image_to_array(msg)[0, 0], [30, 20, 10])


@pytest.mark.parametrize("pad", [0, 3])
def test_mono8_becomes_grey_rgb(pad):
    grey = _rgb()[..., 0]
    out = image_to_array(array_to_image(grey, "mono8", step=8 + pad))
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


@pytest.mark.parametrize("bigendian", [False, True])
def test_16bit_honours_is_bigendian(bigendian):
    vals = np.arange(0, 65536, 65536 // 48, dtype=np.uint16)[:48].reshape(6, 8)
    msg = array_to_image(vals, "mono16", is_bigendian=bigendian, step=20)
    assert msg.is_bigendian == bigendian
    np.testing.assert_array_equal(image_to_array(msg)[..., 0], (vals >> 8).astype(np.uint8))
    # Flipping the flag must change the decoding (byte order is honoured, not assumed).
    msg.is_bigendian = not bigendian
    assert not np.array_equal(image_to_array(msg)[..., 0], (vals >> 8).astype(np.uint8))
    rgb16 = np.stack([vals, vals // 2, vals // 3], -1).astype(np.uint16)
    for enc in ("rgb16", "bgr16"):
        out = image_to_array(array_to_image(rgb16, enc, is_bigendian=bigendian))
        np.testing.assert_array_equal(out, (rgb16 >> 8).astype(np.uint8))


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuv422_yuy2", "yuyv"])
@pytest.mark.parametrize("pad", [0, 4])
def test_yuv422_round_trip(encoding, pad):
    # Smooth colours (pairs of equal pixels) survive 4:2:2 chroma subsampling.
    rgb = np.repeat(_rgb(6, 4, seed=3), 2, axis=1)
    rgb = np.clip(rgb, 20, 235).astype(np.uint8)
    msg = array_to_image(rgb, encoding, step=16 + pad)
    out = image_to_array(msg)
    assert out.shape == (6, 8, 3)
    assert np.abs(out.astype(int) - rgb).max() <= 3


def test_yuv_byte_orders_differ_and_numpy_decoder_matches_opencv():
    rgb = _rgb(4, 8, seed=7)
    uyvy = array_to_image(rgb, "uyvy")
    yuyv = array_to_image(rgb, "yuyv")
    assert bytes(uyvy.data) != bytes(yuyv.data)
    assert bytes(uyvy.data)[1::2] == bytes(yuyv.data)[0::2]  # the luma bytes moved
    for msg, is_uyvy in ((uyvy, True), (yuyv, False)):
        rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(4, 8, 2)
        ref = image_to_array(msg)
        ours = decode_yuv422_numpy(rows, is_uyvy)
        assert np.abs(ours.astype(int) - ref).max() <= 1


def _bad(**kw):
    base = dict(height=2, width=4, encoding="rgb8", step=12, data=bytes(24))
    base.update(kw)
    return Image(**base)


@pytest.mark.parametrize(
    "msg, kind",
    [
        (_bad(encoding="32FC1"), "unknown_encoding"),
        (_bad(encoding=""), "unknown_encoding"),
        (_bad(height=0, data=b""), "zero_size"),
        (_bad(width=0), "zero_size"),
        (_bad(step=11), "bad_step"),
        (_bad(data=bytes(23)), "short_data"),
        (_bad(step=16, data=bytes(24)), "short_data"),
        (_bad(encoding="uyvy", width=3, step=6, data=bytes(12)), "odd_width"),
    ],
)
def test_malformed_kinds(msg, kind):
    assert kind in DECODE_ERROR_KINDS
    with pytest.raises(ImageDecodeError) as err:
        image_to_array(msg)
    assert err.value.kind == kind
    assert str(err.value)


def test_array_to_image_rejects_bad_arrays():
    with pytest.raises(ValueError, match="unsupported encoding"):
        array_to_image(_rgb(), "jpeg")
    with pytest.raises(ValueError, match="HxWx3"):
        array_to_image(_rgb()[..., 0], "rgb8")
    with pytest.raises(ValueError, match="dtype"):
        array_to_image(_rgb().astype(np.float32), "rgb8")
    with pytest.raises(ValueError, match="step"):
        array_to_image(_rgb(), "rgb8", step=5)


def test_stamps_and_headers():
    h = make_header(1_700_000_000_123_456_789, "camera")
    assert (h.stamp.sec, h.stamp.nanosec) == (1_700_000_000, 123_456_789)
    assert stamp_to_ns(h.stamp) == 1_700_000_000_123_456_789
    with pytest.raises(ValueError):
        make_header(-1)


def test_detections_round_trip_and_label_info_ids_match():
    names = ["car", "truck", "pedestrian"]
    header = make_header(42, "cam")
    boxes = np.array([[10, 20, 50, 80], [0, 0, 4, 2]], np.float32)
    msg = detections_to_msg(header, boxes, [0.9, 0.4], [2, 0], names, ids=["a", "b"])
    assert msg.header.frame_id == "cam" and stamp_to_ns(msg.header.stamp) == 42
    d0 = msg.detections[0]
    assert stamp_to_ns(d0.header.stamp) == 42 and d0.id == "a"
    assert d0.bbox.center.position.x == 30 and d0.bbox.size_y == 60
    info = label_info_msg(names, 0.25, header)
    by_id = {str(c.class_id): c.class_name for c in info.class_map}
    assert by_id[d0.results[0].hypothesis.class_id] == "pedestrian"
    assert info.threshold == pytest.approx(0.25)
    back = msg_to_detections(msg, names)
    np.testing.assert_allclose(back.boxes_xyxy, boxes)
    np.testing.assert_allclose(back.scores, [0.9, 0.4], rtol=1e-6)
    assert back.labels.tolist() == [2, 0] and back.ids == ["a", "b"]
    with pytest.raises(ValueError, match="label 3"):
        detections_to_msg(header, boxes, [0.9, 0.4], [3, 0], names)
    with pytest.raises(ValueError, match="scores has 1"):
        detections_to_msg(header, boxes, [0.9], [1, 0], names)


def test_instances_round_trip():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 9, 11)) < 0.3
    masks[2] = False
    masks[2, 3:5, 6:8] = True
    header = make_header(7, "cam")
    msg = instances_to_msg(
        header, (9, 11), masks, [0.5, 0.6, 0.7], [0, 1, 2], track_ids=[4, 5, 6], keyframe=False
    )
    assert not msg.keyframe and len(msg.instances) == 3
    inst = msg.instances[2]
    assert inst.detection_id == "2" and inst.track_id == 6 and inst.visible_fraction == -1.0
    assert (inst.mask.height, inst.mask.width) == (9, 11) and sum(inst.mask.counts) == 99
    assert (inst.bbox.center.position.x, inst.bbox.size_x) == (7.0, 2.0)
    back = msg_to_instances(msg)
    np.testing.assert_array_equal(back.masks, masks)
    assert back.labels.tolist() == [0, 1, 2] and back.track_ids.tolist() == [4, 5, 6]
    np.testing.assert_allclose(back.boxes_xyxy[2], [6, 3, 8, 5])
    # RLE dict input with the same size is accepted; a wrong size is a clear error
    rle = {"size": [9, 11], "counts": back.rles[0]["counts"]}
    again = instances_to_msg(header, (9, 11), [rle], [0.5], [0])
    assert list(again.instances[0].mask.counts) == list(msg.instances[0].mask.counts)
    with pytest.raises(ValueError, match="does not match"):
        instances_to_msg(header, (9, 12), masks, [0.5] * 3, [0] * 3)


def test_lane_round_trip():
    mask = np.random.default_rng(1).integers(0, 4, (6, 10), dtype=np.uint8)
    lines = [
        LaneLineResult(points=np.array([[1.0, 5.0], [2.0, 1.0]]), type="solid", color="yellow"),
        {"points": [[8, 5], [7.5, 0]], "type": "dashed", "color": 1, "confidence": 0.5},
    ]
    names = ["background", "drivable", "lane_solid", "lane_dashed"]
    msg = lane_to_msg(make_header(9, "cam"), mask, names, lines)
    assert msg.class_mask.encoding == "mono8" and msg.class_mask.header.frame_id == "cam"
    assert [ln.id for ln in msg.lines] == [0, 1]
    assert msg.lines[0].type == msg.lines[0].TYPE_SOLID
    assert msg.lines[0].color == msg.lines[0].COLOR_YELLOW
    back = msg_to_lane(msg)
    np.testing.assert_array_equal(back.class_mask, mask)
    assert back.class_names == names
    assert [ln.type for ln in back.lines] == ["solid", "dashed"]
    assert back.lines[1].color == "white" and back.lines[1].confidence == pytest.approx(0.5)
    np.testing.assert_allclose(back.lines[1].points, [[8, 5], [7.5, 0]])
    empty = lane_to_msg(make_header(9), None, names, class_mask_topic="/lane/mask")
    assert msg_to_lane(empty).class_mask is None
    with pytest.raises(ValueError, match="unknown lane type"):
        lane_to_msg(make_header(9), None, names, [{"points": [], "type": "zigzag"}])


def test_timing_msg():
    t = timing_msg(make_header(3, "cam"), "lane", "onnxruntime", 1.0, 2.0, 3.0, 9.5, True, 4)
    assert t.node == "lane" and t.frames_dropped == 4 and t.end_to_end_ms == pytest.approx(9.5)
    assert stamp_to_ns(t.header.stamp) == 3
