"""A corpus of malformed and unusual ``sensor_msgs/Image`` messages against the real lane node.

Every encoding the nodes claim (plus big-endian 16-bit, row padding, extra data, 1x1), and a
dozen they do not, bad steps, short data, zero sizes, odd YUV widths, absurd dimensions. Each
case: the frame is processed (valid) or dropped and counted under the right kind (malformed);
then the node is still active, the next good frame is processed, ``/diagnostics`` shows the
count (WARN while a malformed frame is in the window) and the log names the kind.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np
import pytest

pytest.importorskip("rclpy")

from _node_harness import NodeHarness, lane_params  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from edge_perception.ros.convert import (  # noqa: E402
    SUPPORTED_ENCODINGS,
    array_to_image,
    make_header,
)
from edge_perception.ros.lane_node import LaneSegmentationNode  # noqa: E402
from lifecycle_msgs.msg import State  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from tiny_models import lane_onnx  # noqa: E402

pytestmark = pytest.mark.ros
H, W = 24, 32
RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
RGB16 = RNG.integers(0, 65536, (H, W, 3), dtype=np.uint16)


def _valid(encoding: str, big_endian: bool = False, rgb: Any = None) -> Image:
    rgb = RGB if rgb is None else rgb
    if encoding == "mono8":
        return array_to_image(rgb[..., 0], encoding)
    if encoding == "mono16":
        return array_to_image(RGB16[..., 0], encoding, is_bigendian=big_endian)
    if encoding in ("rgb16", "bgr16"):
        return array_to_image(RGB16, encoding, is_bigendian=big_endian)
    return array_to_image(rgb, encoding)


def _raw(encoding: str, h: int, w: int, step: int, size: int) -> Image:
    return Image(height=h, width=w, encoding=encoding, step=step, data=bytes(size))


def _padded() -> Image:
    return array_to_image(RGB, "rgb8", step=W * 3 + 7)


def _long_data() -> Image:
    msg = array_to_image(RGB, "rgb8")
    msg.data.frombytes(bytes(1000))
    return msg


def _odd_step_mono16() -> Image:
    return _raw("mono16", 3, 5, 11, 33)


UNSUPPORTED = [
    "32FC1", "16UC1", "8UC3", "8SC1", "64FC1", "16SC3", "bayer_rggb8", "bayer_bggr16", "nv12",
    "nv21", "i420", "jpeg", "", "rgb10",
]  # fmt: skip

# (id, message factory, expected: "ok" or a malformed kind)
CASES: List[Tuple[str, Any, str]] = (
    [(f"enc-{e}", lambda e=e: _valid(e), "ok") for e in SUPPORTED_ENCODINGS]
    + [(f"enc-{e}-bigendian", lambda e=e: _valid(e, True), "ok") for e in ("mono16", "rgb16")]
    + [
        ("enc-bgr16-bigendian", lambda: _valid("bgr16", True), "ok"),
        ("enc-upper-case-RGB8", lambda: _raw("RGB8", H, W, W * 3, H * W * 3), "ok"),
        ("step-padding", _padded, "ok"),
        ("long-data", _long_data, "ok"),
        ("mono16-odd-step", _odd_step_mono16, "ok"),
        ("1x1-rgb8", lambda: _raw("rgb8", 1, 1, 3, 3), "ok"),
        ("1x1-mono8", lambda: _raw("mono8", 1, 1, 1, 1), "ok"),
        ("1x2-yuv422", lambda: _raw("yuv422", 1, 2, 4, 4), "ok"),
        ("1x300-rgb8", lambda: _raw("rgb8", 1, 300, 900, 900), "ok"),
    ]
    + [
        (
            f"unsupported-{e or 'empty'}",
            lambda e=e: _raw(e, H, W, W * 4, H * W * 4),
            "unknown_encoding",
        )
        for e in UNSUPPORTED
    ]  # fmt: skip
    + [
        ("0x0", lambda: _raw("rgb8", 0, 0, 0, 0), "zero_size"),
        ("0-height", lambda: _raw("rgb8", 0, W, W * 3, 0), "zero_size"),
        ("0-width", lambda: _raw("rgb8", H, 0, 0, 10), "zero_size"),
        ("step-too-small", lambda: _raw("rgb8", H, W, W * 3 - 1, H * W * 3), "bad_step"),
        ("step-zero", lambda: _raw("bgr8", H, W, 0, H * W * 3), "bad_step"),
        ("mono16-step-odd-short", lambda: _raw("mono16", H, W, W * 2 - 1, H * W * 2), "bad_step"),
        ("data-one-short", lambda: _raw("rgb8", H, W, W * 3, H * W * 3 - 1), "short_data"),
        ("data-empty", lambda: _raw("rgba8", H, W, W * 4, 0), "short_data"),
        ("huge-step", lambda: _raw("mono8", 2, 4, 2**32 - 1, 64), "short_data"),
        ("huge-dims", lambda: _raw("rgb8", 2**31, 2**31, 2**32 - 1, 64), "bad_step"),
        ("huge-height", lambda: _raw("mono8", 2**32 - 1, 1, 1, 64), "short_data"),
        ("yuv422-odd-width", lambda: _raw("yuv422", 2, 3, 6, 12), "odd_width"),
        ("yuyv-odd-width", lambda: _raw("yuyv", H, W - 1, (W - 1) * 2, H * W * 2), "odd_width"),
    ]
)


@pytest.fixture(scope="module")
def h(tmp_path_factory):
    import rclpy
    from rclpy.context import Context

    model = lane_onnx(str(tmp_path_factory.mktemp("lane") / "lane.onnx"))
    ctx = Context()
    rclpy.init(context=ctx)
    node = LaneSegmentationNode("lane_corpus", context=ctx, parameter_overrides=lane_params(model))
    harness = NodeHarness(ctx, node)
    try:
        harness.bring_to("active")
        harness.wait_subscribed()
        yield harness
    finally:
        harness.close()
        ctx.try_shutdown()


def _counts(h: NodeHarness) -> Dict[str, int]:
    return dict(h.node.stats.malformed)


def test_corpus_covers_what_the_issue_asks():
    assert len(UNSUPPORTED) >= 12
    assert {e for e in SUPPORTED_ENCODINGS} <= {c[0][4:] for c in CASES}


@pytest.mark.parametrize("make,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_image_case(h: NodeHarness, make, expected):
    msg = make()
    stamp = h.now_ns()
    msg.header = make_header(stamp, "camera")
    before = _counts(h)
    processed = h.node.stats.processed
    h.send_msg(msg)
    if expected == "ok":
        assert h.spin_until(lambda: bool(h.processed(stamp)), 15.0), "valid frame not processed"
        assert _counts(h) == before
    else:
        want = dict(before, **{expected: before.get(expected, 0) + 1})
        assert h.spin_until(lambda: _counts(h) == want, 15.0), (_counts(h), want)
        assert h.node.stats.processed == processed and not h.processed(stamp)
        lines = h.log_lines(f"dropping malformed image ({expected})")
        assert h.spin_until(lambda: bool(h.log_lines(f"image ({expected})")), 5.0), lines
        st = h.fresh_diag(lambda s: h.value(s, f"malformed_{expected}") == str(want[expected]))
        assert st is not None, "count not in /diagnostics"
        assert st.level == DiagnosticStatus.WARN
        assert int(h.value(st, f"recent_malformed_{expected}") or 0) >= 1
    # alive, still active, and the next good frame is processed
    assert h.state() == State.PRIMARY_STATE_ACTIVE
    assert h.good_frame_processed(), "next good frame not processed"
