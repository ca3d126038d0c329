"""Compiled rasteriser kernels (polygon fill, ground shading): the same bytes as the numpy / cv2
code they replace."""

from __future__ import annotations

import os

import numpy as np
import pytest
from carla_bridge.scenario import ScenarioConfig
from carla_bridge.synthetic import SyntheticBackend, kernels, render


def _cv2_reference(m, iz_rows, iz_cols, invz, color, ident, y0, x0, rgb, idv, paint, label):
    """The numpy statement of the kernel: z-test, then masked writes."""
    hh, ww = m.shape
    iz = iz_rows + iz_cols
    zb = invz[y0 : y0 + hh, x0 : x0 + ww]
    ok = (m > 0) & (iz > zb)
    zb[ok] = iz[ok]
    if paint:
        color[y0 : y0 + hh, x0 : x0 + ww][ok] = np.array(rgb, np.float32)
    if label:
        ident[y0 : y0 + hh, x0 : x0 + ww][ok] = idv
    m[:] = np.where(ok, 255, 0)
    return int(ok.sum())


@pytest.mark.parametrize("paint,label", [(True, True), (False, True), (False, False)])
def test_ztest_fill_matches_numpy(paint, label):
    rng = np.random.default_rng(1)
    for _ in range(20):
        h, w = 12, 17
        hh, ww = rng.integers(1, h), rng.integers(1, w)
        y0, x0 = int(rng.integers(0, h - hh + 1)), int(rng.integers(0, w - ww + 1))
        m = (rng.random((hh, ww)) > 0.3).astype(np.uint8) * 255
        iz_rows = rng.random((hh, 1), dtype=np.float32)
        iz_cols = rng.random(ww, dtype=np.float32)
        iz_rows[0, 0] = np.nan  # NaN fails the depth test
        bufs = [
            rng.random((h, w), dtype=np.float32),
            rng.random((h, w, 3), dtype=np.float32),
            rng.integers(0, 1 << 30, (h, w)).astype(np.int32),
        ]
        ref = [b.copy() for b in bufs]
        m_ref = m.copy()
        rgb, idv = (0.1, 0.7, 1 / 3), (5 << 24) | 42
        n = kernels.ztest_fill(m, iz_rows, iz_cols, *bufs, y0, x0, *rgb, idv, paint, label)
        n_ref = _cv2_reference(m_ref, iz_rows, iz_cols, *ref, y0, x0, rgb, idv, paint, label)
        assert n == n_ref and np.array_equal(m, m_ref)
        for a, b in zip(bufs, ref):
            assert a.tobytes() == b.tobytes()


def _render(seed: int, tod: str, weather: str, monkeypatch, compiled: bool):
    monkeypatch.setattr(render, "HAVE_NUMBA", compiled)
    cfg = ScenarioConfig(frames=3, seed=seed, time_of_day=tod, weather=weather)
    with SyntheticBackend().open(cfg.replace(camera={"width": 320, "height": 192})) as b:
        return list(b.frames())


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
# night: lit windows, headlights, bloom; fog: haze; rain: streaks, darkening
@pytest.mark.parametrize(
    "tod,weather", [("day", "clear"), ("night", "clear"), ("day", "fog"), ("night", "rain")]
)
@pytest.mark.parametrize("seed", [3, 4, 7])  # urban, rural, suburban
def test_frames_identical_with_and_without_kernels(seed, tod, weather, monkeypatch):
    # Byte identity holds on any x86-64: both renders run in this process, and the kernels that
    # replace cv2 calls follow this process's cv2 (flow: calibrate.flow_fused; facade warps:
    # warp.block_size, else cv2 itself); the rest are exact IEEE float32 operations.
    fast = _render(seed, tod, weather, monkeypatch, True)
    ref = _render(seed, tod, weather, monkeypatch, False)
    for a, b in zip(fast, ref):
        assert a.image.tobytes() == b.image.tobytes()
        assert a.lane_instance_mask.tobytes() == b.lane_instance_mask.tobytes()
        assert a.drivable_mask.tobytes() == b.drivable_mask.tobytes()
        assert a.flow.tobytes() == b.flow.tobytes()
        assert a.flow_valid.tobytes() == b.flow_valid.tobytes()
        assert [(o.track_id, o.bbox, o.mask.tobytes()) for o in a.objects] == [
            (o.track_id, o.bbox, o.mask.tobytes()) for o in b.objects
        ]


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("night", [False, True])
def test_facade_texture_kernel_matches_numpy(night, monkeypatch):
    rng = np.random.default_rng(2)
    for _ in range(20):
        a0, length, h0, height = (
            rng.uniform(-300, 300),
            rng.uniform(1, 60),
            0.0,
            rng.uniform(2, 30),
        )
        tex = np.array(
            [[a0, h0], [a0 + length, h0], [a0 + length, h0 + height], [a0, h0 + height]]
        )
        color = rng.random(3).astype(np.float32)
        fast = render.facade_texture(tex, color, night)
        monkeypatch.setattr(render, "HAVE_NUMBA", False)
        ref = render.facade_texture(tex, color, night)
        monkeypatch.setattr(render, "HAVE_NUMBA", True)
        for a, b in zip(fast, ref):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
        if night:
            assert fast[1].dtype == np.uint8


def _cv2_fused() -> bool:
    """Whether this process's cv2 fuses its multiply-adds (AVX2 / FMA3 code) or not (SSE code:
    another CPU, or OPENCV_CPU_DISABLE); the kernels follow it, so every byte-identity below is
    against the cv2 of this same process."""
    from carla_bridge.synthetic.calibrate import flow_fused

    fused = flow_fused()
    if fused is None:
        pytest.skip("neither arithmetic reproduces this cv2 build: the renderer uses cv2 itself")
    return fused


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
def test_flow_mid_matches_cv2_ops():
    """scaleAdd / addWeighted (multiply-adds, fused or not as this cv2 computes them), scaled
    multiply, compare and inRange."""
    import cv2

    rng = np.random.default_rng(3)
    h, w = 60, 80
    f = np.float32
    x2, y2 = (rng.normal(0, 20, (h, w)).astype(f) for _ in range(2))
    zp2 = rng.uniform(-1, 80, (h, w)).astype(f)
    invz = np.where(rng.random((h, w)) > 0.1, 1 / zp2, 0).astype(f)
    a, cp, sp, near, fx, fy, cx, cy = -0.0123, 0.999, 0.0349, 0.3, 320.5, 321.0, 39.5, 29.5
    coef = tuple(f(c) for c in (a, cp, sp, near, fx, fy, cx, cy, w - 1.0, h - 1.0))
    u2, v2, zc2 = (np.empty((h, w), f) for _ in range(3))
    ok = np.empty((h, w), np.uint8)
    kernels.flow_mid(x2, zp2, y2, invz, coef, u2, v2, zc2, ok, _cv2_fused())
    xr = cv2.scaleAdd(zp2, a, x2)
    yc = cv2.addWeighted(y2, cp, zp2, -sp, 0.0)
    zc = cv2.addWeighted(y2, sp, zp2, cp, 0.0)
    inv = cv2.divide(1.0, cv2.max(zc, near))
    u = cv2.multiply(xr, inv, scale=fx) + f(cx)
    v = cv2.multiply(yc, inv, scale=fy) + f(cy)
    ref = cv2.compare(invz, 0.0, cv2.CMP_GT) & cv2.compare(zc, near, cv2.CMP_GT)
    ref &= cv2.inRange(u, 0.0, w - 1.0) & cv2.inRange(v, 0.0, h - 1.0)
    for got, want in ((u2, u), (v2, v), (zc2, zc), (ok, ref)):
        assert got.tobytes() == want.tobytes()


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
def test_f16_planes_rounds_like_numpy():
    from carla_bridge.dataset.io import _float16_fortran

    rng = np.random.default_rng(4)
    bits = rng.integers(0, 2**32, (37, 53, 2), dtype=np.uint64).astype(np.uint32)
    flow = bits.view(np.float32)
    flow = np.where(np.isfinite(flow), flow, 0).astype(np.float32)
    flow[0, :8, 0] = [65504, 65520, 65519.99, 1e9, 6e-8, 2.98e-8, -0.0, 1 + 2**-11]
    with np.errstate(over="ignore"):
        ref = flow.astype(np.float16, order="F")
    got = _float16_fortran(flow)
    assert got.dtype == np.float16 and got.flags.f_contiguous and got.shape == flow.shape
    assert got.view(np.uint16).tobytes(order="A") == ref.view(np.uint16).tobytes(order="A")


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
def test_half_bits_integer_version_is_ieee_rounding():
    """The integer conversion (used where numba targets no F16C) gives numpy's float16 bits for
    random float32 values and every rounding edge (ties, subnormals, overflow), and F16C's
    quiet NaN."""
    import numba
    from carla_bridge.synthetic import f16

    @numba.njit
    def conv(x, out):  # noqa: ANN001, ANN202
        for i in range(x.size):
            out[i] = f16.half_bits_soft(x[i])

    rng = np.random.default_rng(5)
    edges = np.array([0x477FEFFF, 0x477FF000, 0x477FF001, 0x38800000, 0x387FFFFF, 0x387FE000,
                      0x33000000, 0x33000001, 0x32FFFFFF, 0x33C00000, 0x7F800000, 0x7FC00000,
                      0x7F800001, 0x7FFFFFFF, 0x3F801000, 0x3F803000, 0x3F800FFF, 0],
                     np.uint32)  # fmt: skip
    bits = np.concatenate([edges, rng.integers(0, 2**32, 1 << 20, dtype=np.uint64)])
    bits = np.concatenate([bits, bits | 0x80000000]).astype(np.uint32)
    x = bits.view(np.float32)
    got = np.empty(x.size, np.uint16)
    conv(x, got)
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(np.float16).view(np.uint16)
    nan = np.isnan(x)
    want[nan] = (bits[nan] >> 16) & 0x8000 | 0x7E00 | (bits[nan] >> 13) & 0x3FF
    assert np.array_equal(got, want)


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
def test_f16_planes_on_a_target_without_f16c(tmp_path):
    """Compiled for the baseline x86-64 (no F16C), the conversion runs (LLVM's half conversion
    there is a libcall numba does not link: it used to jump to address 0) and gives the same
    bits."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from carla_bridge.synthetic import f16\n"
        "assert f16.half_bits is f16.half_bits_soft\n"
        "x = np.linspace(-70000, 70000, 2 * 5 * 7, dtype=np.float32).reshape(5, 7, 2)\n"
        "out = np.zeros((2, 7, 5), np.uint16)\n"
        "f16.f16_planes(x, out)\n"
        "with np.errstate(over='ignore'):\n"
        "    want = x.astype(np.float16).view(np.uint16).transpose(2, 1, 0)\n"
        "assert np.array_equal(out, want)\n"
    )
    env = dict(os.environ, NUMBA_CPU_NAME="generic", NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("NUMBA_CPU_FEATURES", None)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-2000:]


# cv2's baseline code path: everything above SSE3 switched off (names as getCPUFeaturesLine)
OPENCV_BASELINE = "AVX512-SKX,AVX512F,AVX2,FMA3,FP16,AVX,POPCNT,SSE4.2,SSE4.1"


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
def test_flow_arithmetic_follows_cv2_code_path():
    """With cv2's AVX2 / FMA3 code on, its multiply-adds are fused; with cv2 forced to its SSE
    baseline they are two roundings, and the kernels follow (frames stay the bytes of the cv2
    chain, with or without numba, on any x86-64)."""
    import subprocess
    import sys

    import cv2

    code = (
        "import cv2\n"
        "from carla_bridge.synthetic.calibrate import flow_fused\n"
        "print(flow_fused(), cv2.getCPUFeaturesLine())\n"
    )
    env = dict(os.environ, OPENCV_CPU_DISABLE=OPENCV_BASELINE)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert r.stdout.decode().split()[0] == "False", r.stdout.decode()
    line = cv2.getCPUFeaturesLine()
    if "OPENCV_CPU_DISABLE" not in os.environ and "*AVX2" in line and "*AVX2?" not in line:
        assert _cv2_fused() is True


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
def test_flow_end_samples_like_cv2_remap():
    """Bilinear (replicated edges) and nearest sampling inside the previous image."""
    import cv2

    rng = np.random.default_rng(5)
    h, w = 48, 64
    f = np.float32
    prev_invz = rng.uniform(0.01, 0.5, (h, w)).astype(f)
    prev_objf = rng.integers(0, 4, (h, w)).astype(f)
    u2 = rng.uniform(0, w - 1, (h, w)).astype(f)
    v2 = rng.uniform(0, h - 1, (h, w)).astype(f)
    u2[:4], v2[:, :4] = w - 1, h - 1  # the last column / row
    u2[4:8] = np.round(u2[4:8]) + f(0.5)  # ties of the nearest pixel
    u2 = np.minimum(u2, f(w - 1))
    iz = cv2.remap(prev_invz, u2, v2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    pobj = cv2.remap(prev_objf, u2, v2, cv2.INTER_NEAREST)
    objf = np.where(rng.random((h, w)) > 0.2, pobj, -1).astype(f)
    zc2 = (rng.uniform(0.97, 1.03, (h, w)) / iz).astype(f)
    ok = np.where(rng.random((h, w)) > 0.1, 255, 0).astype(np.uint8)
    flow, valid = np.empty((h, w, 2), f), np.empty((h, w), bool)
    kernels.flow_end(u2, v2, zc2, prev_invz, prev_objf, objf, ok, flow, valid, _cv2_fused())
    r = iz * zc2
    want = (ok > 0) & (r >= f(0.98)) & (r <= f(1.02)) & (pobj == objf)
    assert np.array_equal(valid, want) and 0 < want.mean() < 1
    grid = np.stack([u2 - np.arange(w, dtype=f), v2 - np.arange(h, dtype=f)[:, None]], 2)
    assert flow.tobytes() == np.where(want[..., None], grid, f(0)).tobytes()


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
def test_warp_fill_matches_cv2_warp_perspective():
    import cv2
    from carla_bridge.synthetic import warp

    block = warp.block_size()
    if not block:
        pytest.skip("the kernel does not reproduce this cv2 build's warp (cv2 is used)")
    rng = np.random.default_rng(6)
    rgb = rng.random((40, 70, 3), dtype=np.float32)
    src = np.float32([[0, 0], [69, 0], [69, 39], [0, 39]])
    for _ in range(10):
        dst = (src * rng.uniform(0.5, 2.5) + rng.normal(0, 10, (4, 2))).astype(np.float32)
        dst -= dst.min(0)
        ww, hh = int(dst[:, 0].max()) + 2, int(dst[:, 1].max()) + 2
        hom = cv2.getPerspectiveTransform(src, dst)
        ref = cv2.warpPerspective(
            rgb, hom, (ww, hh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        mask = np.where(rng.random((hh, ww)) > 0.3, 255, 0).astype(np.uint8)
        out = np.full((hh + 3, ww + 5, 3), -1, np.float32)
        warp.warp_fill(mask, rgb, cv2.invert(hom)[1].reshape(-1), 3, 5, block, out)
        drawn = mask > 0
        assert out[3:, 5:][drawn].tobytes() == ref[drawn].tobytes()
        assert (out[3:, 5:][~drawn] == -1).all()


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("seed", [3, 4])
def test_lane_paint_kernel_every_line_kind(seed, monkeypatch):
    """kernels.paint_lines paints solid, dashed and double lines of both colours like the numpy
    loop of shade.render_ground (same colours and line ids)."""
    import dataclasses

    from carla_bridge.synthetic import layout

    orig = layout._lines

    def lines(*args, **kwargs):
        kinds = ("double", "dashed", "solid")
        return [
            dataclasses.replace(ln, type=kinds[i % 3], color=("yellow", "white")[i % 2])
            for i, ln in enumerate(orig(*args, **kwargs))
        ]

    monkeypatch.setattr(layout, "_lines", lines)
    fast = _render(seed, "day", "clear", monkeypatch, True)
    ref = _render(seed, "day", "clear", monkeypatch, False)
    for a, b in zip(fast, ref):
        assert a.image.tobytes() == b.image.tobytes()
        assert a.lane_instance_mask.tobytes() == b.lane_instance_mask.tobytes()


def test_lane_paint_kernel_refuses_other_scalar_types():
    """A line whose values are numpy float64 scalars (promoting the numpy loop to float64) is
    left to the numpy loop."""
    from carla_bridge.synthetic.shade import _paint_lines_compiled
    from carla_bridge.synthetic.world import LineSpec

    ln = LineSpec(1, np.float64(1.5), "solid", "white", 0.12)
    f32 = np.zeros((2, 4), np.float32)
    rows = (np.ones(2), np.ones(2), np.ones(2, np.float32), np.ones(2, np.float32), f32, f32)
    col, ids = np.zeros((2, 4, 3), np.float32), np.zeros((2, 4), np.uint16)
    tex = np.zeros((512, 512), np.float32)
    assert not _paint_lines_compiled([ln], (2.0, 3.0, 1.0), rows, tex, col, ids)
    assert not col.any() and not ids.any()


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("fused", [True, False])
def test_flow_mid_end_is_flow_mid_then_flow_end(fused):
    """The one-pass flow kernel writes the same flow and validity as the two passes."""
    rng = np.random.default_rng(6)
    h, w = 40, 56
    f = np.float32
    prev_invz = rng.uniform(0.02, 0.2, (h, w)).astype(f)
    prev_objf = rng.integers(0, 3, (h, w)).astype(f)
    objf = rng.integers(0, 3, (h, w)).astype(f)
    invz = np.where(rng.random((h, w)) > 0.1, rng.uniform(0.02, 0.2, (h, w)), 0).astype(f)
    zp2 = (1 / np.maximum(invz, f(1e-6)) + rng.uniform(-0.3, 0.3, (h, w))).astype(f)
    x2 = (rng.uniform(-1, 1, (h, w)) * zp2).astype(f)
    y2 = (rng.uniform(-0.2, 0.5, (h, w)) * zp2).astype(f)
    coef = tuple(f(v) for v in (-0.01, 0.99, 0.03, 0.3, 40.0, 40.0, 28.0, 10.0, w - 1, h - 1))
    u2, v2, zc2 = (np.empty((h, w), f) for _ in range(3))
    ok = np.empty((h, w), np.uint8)
    kernels.flow_mid(x2, zp2, y2, invz, coef, u2, v2, zc2, ok, fused)
    ref, ref_valid = np.empty((h, w, 2), f), np.empty((h, w), bool)
    kernels.flow_end(u2, v2, zc2, prev_invz, prev_objf, objf, ok, ref, ref_valid, fused)
    flow, valid = np.empty((h, w, 2), f), np.empty((h, w), bool)
    kernels.flow_mid_end(x2, zp2, y2, invz, coef, prev_invz, prev_objf, objf, flow, valid, fused)
    assert 0 < ref_valid.mean() < 1
    assert flow.tobytes() == ref.tobytes() and np.array_equal(valid, ref_valid)


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
def test_object_boxes_match_find_objects():
    """Tight boxes and pixel counts per id, as scipy.ndimage.find_objects and a count."""
    from scipy.ndimage import find_objects

    rng = np.random.default_rng(7)
    obj = np.zeros((30, 41), np.int32)
    for k in (1, 2, 3, 5, 9):  # ids 4, 6-8 absent
        y, x = rng.integers(0, 30), rng.integers(0, 41)
        obj[y : y + int(rng.integers(1, 12)), x : x + int(rng.integers(1, 15))] = k
    obj[0, 0], obj[-1, -1] = 2, 9  # boxes reaching the borders
    stats = np.empty((obj.max() + 1, 5), np.int64)
    kernels.object_boxes(obj, stats)
    got = {k: tuple(v) for k, v in enumerate(stats.tolist()) if k and v[4]}
    want = {
        k + 1: (sl[0].start, sl[0].stop, sl[1].start, sl[1].stop, int((obj == k + 1).sum()))
        for k, sl in enumerate(find_objects(obj))
        if sl is not None
    }
    assert got == want and len(want) == 5


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
def test_pixels_of_is_flatnonzero_of_take():
    rng = np.random.default_rng(8)
    obj = rng.integers(0, 7, (23, 31)).astype(np.int32)
    wanted = rng.random(7) > 0.5
    out = np.empty(obj.size, np.int64)
    n = kernels.pixels_of(obj, wanted, out)
    assert np.array_equal(out[:n], np.flatnonzero(np.take(wanted, obj)))


@pytest.mark.parametrize("shape", [(57, 4), (33, 4, 3), (20, 8, 3), (5, 1)])
def test_row_reductions_are_numpys_bit_for_bit(shape):
    rng = np.random.default_rng(7)
    a = rng.normal(0, 1e3, shape) * 10.0 ** rng.integers(-6, 6, shape)
    a.reshape(-1)[::13] = np.nan  # NaN propagates as in numpy's reductions
    a.reshape(-1)[5::17] = np.inf
    for fast, ref in ((render.row_min, a.min(1)), (render.row_max, a.max(1))):
        np.testing.assert_array_equal(fast(a), ref)
    with np.errstate(invalid="ignore"):
        assert render.row_mean(a).tobytes() == a.mean(1).tobytes()
    assert render.row_mean(a[:, :1]).tobytes() == a[:, :1].mean(1).tobytes()
