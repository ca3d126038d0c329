"""Ground rendering (per image row), textures, lighting, weather and sensor effects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

from carla_bridge.scenario import ScenarioConfig
from carla_bridge.synthetic.kernels import ground as ground_kernel
from carla_bridge.synthetic.paint import paint_lines as paint_lines_kernel
from carla_bridge.synthetic.render import (
    M_GRASS,
    M_ROAD,
    M_SIDEWALK,
    MAT_SHIFT,
    CameraState,
    Raster,
)
from carla_bridge.synthetic.world import World

TEX = 512
_NO_SHADOW = np.zeros((1, 1), np.uint8)
_RAY_Z = np.geomspace(0.3, 600.0, 1500)  # forward distances sampled by the ground ray cast
PAINT = {"white": (0.92, 0.92, 0.9), "yellow": (0.95, 0.72, 0.1)}


@dataclass
class Style:
    """Per-sequence look: time of day, weather, palette and sensor."""

    time_of_day: str
    weather: str
    sun_side: float  # +1 sun on the right, -1 on the left
    ambient: np.ndarray  # RGB light multiplier
    sky_top: np.ndarray
    sky_horizon: np.ndarray
    fog_color: np.ndarray
    fog_vis: float  # metres; inf = no fog
    asphalt: float
    shadow: float  # 1 = no shadows, 0.5 = strong
    noise_sigma: float
    blur: int  # motion blur kernel (0 = none)
    gamma: float
    rain: float  # 0 = dry
    glare: float  # sun glare strength
    tex: np.ndarray  # TEX x TEX noise in [0, 1]
    noise: np.ndarray  # int16 sensor-noise pool
    cache: Dict[str, np.ndarray] = field(default_factory=dict)  # per-sequence constant images


def make_style(config: ScenarioConfig, rng: np.random.Generator, effects: bool = True) -> Style:
    """Draw the look of a sequence (``random`` weather/time are drawn here).

    ``effects=False`` turns off the per-frame random effects (sensor noise, rain streaks, motion
    blur, glare) so that consecutive frames differ only by geometry (used to verify the flow).
    """
    tod = config.time_of_day
    if tod == "random":
        tod = ("day", "dusk", "night")[int(rng.choice(3, p=(0.6, 0.2, 0.2)))]
    weather = config.weather
    if weather == "random":
        weather = ("clear", "cloudy", "rain", "fog")[
            int(rng.choice(4, p=(0.45, 0.25, 0.15, 0.15)))
        ]
    amb = {"day": (1.0, 0.98, 0.94), "dusk": (0.62, 0.5, 0.42), "night": (0.1, 0.11, 0.15)}[tod]
    top = {"day": (0.3, 0.5, 0.85), "dusk": (0.25, 0.25, 0.45), "night": (0.01, 0.01, 0.03)}[tod]
    hor = {"day": (0.75, 0.83, 0.92), "dusk": (0.95, 0.55, 0.3), "night": (0.05, 0.05, 0.09)}[tod]
    ambient = np.array(amb) * rng.uniform(0.85, 1.1)
    sky_top, sky_hor = np.array(top), np.array(hor)
    fog_vis, rain = float("inf"), 0.0
    shadow = {"day": 0.5, "dusk": 0.7, "night": 1.0}[tod]  # 1 = no sun shadows
    if weather in ("cloudy", "rain", "fog"):
        grey = float(np.mean(hor)) * (0.9 if tod == "day" else 1.0)
        sky_top = sky_hor = np.array((grey, grey, grey * 1.03))
        ambient = ambient * (0.8 if weather == "cloudy" else 0.7)
        shadow = max(shadow, 0.85)  # overcast: soft shadows only
    if weather == "rain":
        rain = float(rng.uniform(0.3, 1.0))
        fog_vis = float(rng.uniform(150.0, 300.0))
    if weather == "fog":
        fog_vis = float(rng.uniform(35.0, 110.0))
    fog_col = sky_hor * (1.0 if tod != "night" else 0.6)
    h, w = config.camera.height, config.camera.width
    tex = np.zeros((TEX, TEX), np.float32)
    for cells, wgt in ((8, 0.5), (32, 0.3), (128, 0.2)):
        tex += wgt * cv2.resize(
            rng.random((cells, cells), dtype=np.float32), (TEX, TEX), interpolation=cv2.INTER_CUBIC
        )
    tex = np.clip((tex - tex.min()) / (np.ptp(tex) + 1e-6), 0, 1)
    sigma = float(rng.uniform(1.0, 4.0)) * (2.0 if tod == "night" else 1.0) if effects else 0.0
    noise = (rng.standard_normal((h + 16, w + 16, 3), dtype=np.float32) * sigma).astype(np.int16)
    return Style(
        time_of_day=tod,
        weather=weather,
        sun_side=float(rng.choice((-1.0, 1.0))),
        ambient=ambient,
        sky_top=sky_top,
        sky_horizon=sky_hor,
        fog_color=fog_col,
        fog_vis=fog_vis,
        asphalt=float(rng.uniform(0.22, 0.4)) * (0.75 if weather == "rain" else 1.0),
        shadow=shadow,
        noise_sigma=sigma,
        blur=int(rng.choice((0, 0, 3, 5))) if effects else 0,
        gamma=float(rng.uniform(0.85, 1.15)),
        rain=rain if effects else 0.0,
        glare=float(rng.uniform(0.0, 0.6)) if (effects and tod != "night") else 0.0,
        tex=tex,
        noise=noise,
    )


def _tex(tex: np.ndarray, s: np.ndarray, d: np.ndarray, scale: float) -> np.ndarray:
    return tex[(s * scale).astype(np.int32) & (TEX - 1), (d * scale).astype(np.int32) & (TEX - 1)]


def _tex_rows(tex: np.ndarray, s_row: np.ndarray, d: np.ndarray, scale: float) -> np.ndarray:
    """:func:`_tex` for a grid whose ``s`` is constant along each row (``s_row``: one per row).

    Same texels (indices truncated toward zero, wrapped to the tile), gathered by flat index.
    """
    sc = np.float32(scale)
    row = ((s_row * sc).astype(np.int32) & (TEX - 1)) * TEX
    idx = (d * sc).astype(np.int32)
    np.bitwise_and(idx, TEX - 1, out=idx)
    idx += row[:, None]
    return np.take(tex.reshape(-1), idx)


@dataclass
class Ground:
    """Per-row solution of the ground ray cast (rows ``top..H-1`` see the ground)."""

    top: int
    line_id: np.ndarray  # uint16 H x W painted lane line per ground pixel (before occlusion)
    road: np.ndarray  # bool H x W road surface (before occlusion)
    zc: np.ndarray  # camera depth of each ground row
    offset: np.ndarray  # d = xn * zc + offset per ground row
    dist: np.ndarray  # forward distance along the road of each ground row


def _zone_tables(world: World) -> Tuple[tuple, tuple]:
    """RGB tint and material of the 4 ground zones across the road (road, curb, sidewalk or
    gravel, verge)."""
    if world.scene == "rural":
        tints = ((1.0, 1.0, 1.04), (1.0, 0.93, 0.84), (1.0, 0.93, 0.84), (0.22, 0.36, 0.12))
        return tints, (M_ROAD, M_ROAD, M_ROAD, M_GRASS)
    verge = (0.4, 0.38, 0.35) if world.scene == "urban" else (0.22, 0.36, 0.12)
    tints = ((1.0, 1.0, 1.04), (1.0, 1.0, 0.97), (1.0, 0.98, 0.95), verge)
    return tints, (M_ROAD, M_SIDEWALK, M_SIDEWALK, M_GRASS)


def _shade_numpy(
    r: Raster,
    world: World,
    style: Style,
    shadow: Optional[np.ndarray],
    top: int,
    road_full: np.ndarray,
    rows: tuple,
) -> Tuple[np.ndarray, np.ndarray]:
    """Numpy / cv2 statement of :func:`kernels.ground`: shade ground rows ``top..`` into the
    raster (colour, ident, inverse depth) and ``road_full``; returns (d, faded grain).

    ``rows`` = (xn, zc column, offset, s per row, metres per pixel column, half width, curb
    edge, verge edge); ``shadow`` is None when the style casts no shadows.
    """
    xn, zcr, offset, s_row, px, half, edge, outer = rows
    w = len(xn)
    d = np.empty((len(s_row), w), np.float32)
    np.add(xn[None, :] * zcr, offset[:, None], out=d, casting="same_kind")  # in float64
    r.invz[top:] = (1.0 / zcr).astype(np.float32)
    ad = np.abs(d)
    grain = _tex_rows(style.tex, s_row, d, 24.0)
    patch = _tex_rows(style.tex, s_row, d, 0.7)
    road = ad < half
    col = r.color[top:]
    # fine grain fades out where a pixel covers more than a texel (a cheap mip-map: no aliasing)
    fade = np.clip(1.5 - px * 24.0, 0.0, 1.0)
    grain -= np.float32(0.5)
    grain *= fade
    grain += np.float32(0.5)
    # zones across the road: 0 road, 1 curb, 2 sidewalk / gravel, 3 verge (grass or paving)
    zone = (ad >= half).astype(np.uint8)
    zone += ad >= edge
    zone += ad >= outer
    # asphalt * (0.8 + 0.25 grain + 0.25 (patch - 0.5)), evaluated in place
    lum = grain * np.float32(0.25)
    lum += np.float32(0.8)
    var = patch - np.float32(0.5)
    var *= np.float32(0.25)
    lum += var
    lum *= np.float32(style.asphalt)
    if world.scene == "rural":
        np.copyto(lum, np.float32(0.45), where=zone == 1)
        np.copyto(lum, np.float32(0.42) + 0.06 * grain, where=zone == 2)
    else:
        tile = ((s_row * np.float32(2.0)).astype(np.int32) & 1) * np.float32(0.04)
        np.copyto(lum, np.float32(0.7), where=zone == 1)
        side = np.float32(0.5) + 0.15 * grain
        side += tile[:, None]
        np.copyto(lum, side, where=zone == 2)
    np.copyto(lum, np.float32(0.7) + 0.6 * patch, where=zone == 3)
    if shadow is not None:
        np.multiply(lum, np.float32(style.shadow), out=lum, where=shadow[top:] > 0)
    tints, mats = _zone_tables(world)
    # colour = lum * tint[zone]: the tint and material of a zone through 256-entry tables
    tint_lut = np.zeros((256, 1, 3), np.float32)
    tint_lut[:4, 0] = tints
    mat_lut = np.zeros(256, np.int32)  # the packed ident of scenery (obj 0, not emissive)
    mat_lut[:4] = np.array(mats, np.int32) << MAT_SHIFT
    zone3 = cv2.merge((zone, zone, zone))
    col[:] = cv2.multiply(cv2.merge((lum, lum, lum)), cv2.LUT(zone3, tint_lut))
    r.ident[top:] = cv2.LUT(zone, mat_lut)
    road_full[top:] = road
    return d, grain


def _paint_lines_compiled(
    lines: list, consts: tuple, rows: tuple, tex: np.ndarray, col: np.ndarray, line_id: np.ndarray
) -> bool:
    """Paint ``lines`` with :func:`kernels.paint_lines` (the numpy loop of
    :func:`render_ground`, same values); False, nothing painted, where the inputs have other
    types than those the kernel reproduces (then the numpy loop runs)."""
    offset, zc, px, s_row, d, grain = rows
    scalars = [v for ln in lines for v in (ln.d, ln.width, ln.wear, *ln.dash)] + list(consts)
    f32, f64 = np.float32, np.float64
    if (
        any(type(v) not in (float, int) for v in scalars)
        or any(a.dtype != f64 for a in (offset, zc))
        or any(a.dtype != f32 for a in (px, s_row, d, grain, tex, col))
        or not all(a.flags.c_contiguous for a in (d, grain, tex, col, line_id))
        or line_id.dtype != np.uint16
        or any(ln.type not in _LINE_KINDS or ln.color not in PAINT for ln in lines)
    ):
        return False
    if not lines:
        return True
    gap = 0.12
    table = np.array(
        [
            (
                ln.d,
                ln.width + gap / 2 if ln.type == "double" else ln.width / 2,
                ln.width / 2,
                (ln.width + gap) / 2,
                ln.dash[0],
                ln.dash[1],
                ln.wear,
                *PAINT[ln.color],
            )
            for ln in lines
        ],  # fmt: skip
        np.float64,
    ).astype(f32)  # each value rounded once to float32, as numpy's weak Python scalars are
    ints = np.array([(_LINE_KINDS[ln.type], ln.line_id) for ln in lines], np.int64)
    d64 = np.array([ln.d for ln in lines], f64)
    paint_lines_kernel(
        table, ints, d64, np.array(consts, f64), offset, zc, px, s_row, d, grain, tex, col,
        line_id,
    )  # fmt: skip
    return True


_LINE_KINDS = {"solid": 0, "dashed": 1, "double": 2}


def render_ground(
    r: Raster, world: World, cs: CameraState, style: Style, shadow: Optional[np.ndarray] = None
) -> Ground:
    """Ray-cast the road surface row by row; fill ground colour, material and inverse depth.

    ``shadow`` (uint8 H x W, nonzero = in shadow) darkens the ground by ``style.shadow``.
    """
    cam = r.cam
    h, w = cam.height, cam.width
    z = _RAY_Z
    _, e = cs.drift(world, z)
    yp = cs.height - e
    cp, sp = np.cos(cs.pitch), np.sin(cs.pitch)
    yc, zc = yp * cp - z * sp, yp * sp + z * cp
    v = np.where(zc > 1e-3, cam.cy + cam.fy * yc / np.maximum(zc, 1e-3), np.inf)
    m = np.minimum.accumulate(v)
    rows = np.arange(h, dtype=np.float64)
    k = np.searchsorted(-m, -rows, side="left")
    ok = k < len(z)
    k = np.clip(k, 1, len(z) - 1)
    frac = np.clip((v[k - 1] - rows) / np.maximum(v[k - 1] - v[k], 1e-9), 0.0, 1.0)
    frac = np.where(np.isfinite(frac), frac, 1.0)
    zr = z[k - 1] + frac * (z[k] - z[k - 1])
    top = int(np.argmax(ok)) if ok.any() else h
    line_id = np.zeros((h, w), np.uint16)
    road_full = np.zeros((h, w), bool)
    r.init_rows(top)  # the rows above the ground; every pixel below is written here
    if top >= h:
        e0 = np.zeros(0)
        return Ground(h, line_id, road_full, e0, e0, e0)
    zr = zr[top:]
    c, e = cs.drift(world, zr)
    ypr = cs.height - e
    zcr = (ypr * sp + zr * cp)[:, None]
    xn = (np.arange(w) - cam.cx) / cam.fx
    offset = cs.d - c + cs.psi * zr
    s_row = (cs.s + zr).astype(np.float32)  # s is constant along a ground row
    px = (zcr / cam.fx).astype(np.float32)  # metres per pixel across each row
    half = world.half_width
    edge = half + 0.25
    outer = edge + (world.sidewalk if world.scene != "rural" else 0.95)
    use_shadow = shadow is not None and style.shadow < 1.0
    if r.compiled:  # one pass of the kernel: the same values as the numpy code below
        d = np.empty((len(zr), w), np.float32)
        grain = np.empty_like(d)
        tints, mats = _zone_tables(world)
        f32 = np.float32
        ground_kernel(
            xn,
            zcr[:, 0],
            offset,
            s_row,
            px[:, 0],
            style.tex.reshape(-1),
            (f32(half), f32(edge), f32(outer)),
            (f32(style.asphalt), world.scene == "rural", f32(style.shadow), use_shadow),
            np.array(tints, np.float32),
            np.array(mats, np.int32) << MAT_SHIFT,
            shadow if use_shadow else _NO_SHADOW,
            top,
            (d, grain, r.color, r.ident, r.invz, road_full),
        )
    else:
        d, grain = _shade_numpy(r, world, style, shadow if use_shadow else None, top, road_full,
                                (xn, zcr, offset, s_row, px, half, edge, outer))  # fmt: skip
    col = r.color[top:]
    min_px = max(2.0, w / 213.0)  # labelled lines are at least this many pixels wide
    nr = d.shape[0]
    px_row = px[:, 0]
    zc_row = zcr[:, 0]
    consts = (cam.cx, cam.fx, 0.5 * min_px)
    rows = (offset, zc_row, px_row, s_row, d, grain)
    if r.compiled and _paint_lines_compiled(world.lines, consts, rows, style.tex, col,
                                            line_id[top:]):  # fmt: skip
        return Ground(top, line_id, road_full, zcr[:, 0], offset, zr)
    d_flat, grain_flat = d.reshape(-1), grain.reshape(-1)
    col_flat, line_flat = col.reshape(-1, 3), line_id[top:].reshape(-1)
    for ln in world.lines:
        gap = 0.12
        extent = ln.width + gap / 2 if ln.type == "double" else ln.width / 2
        # per row, the columns the painted line or its label can touch (plus 1 px of blending)
        half_px = np.maximum(extent / px_row, 0.5 * min_px) + 1.0
        u_c = cam.cx + cam.fx * (ln.d - offset) / zc_row
        lo = np.clip(np.ceil(u_c - half_px), 0, w).astype(np.int64)
        hi = np.clip(np.floor(u_c + half_px) + 1, 0, w).astype(np.int64)
        counts = np.maximum(hi - lo, 0)
        total = int(counts.sum())
        if total == 0:
            continue
        ri = np.repeat(np.arange(nr), counts)
        ci = lo[ri] + (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts))
        fi = ri * w + ci  # flat indices into the ground rows: cheaper than (row, column) pairs
        d_n = d_flat[fi]
        dd = np.abs(d_n - ln.d)
        pxn = px_row[ri]
        if ln.type == "double":
            off = np.abs(dd - (ln.width + gap) / 2)
            alpha = np.clip((ln.width / 2 - off) / pxn + 0.5, 0, 1)
        else:
            alpha = np.clip((ln.width / 2 - dd) / pxn + 0.5, 0, 1)
        lab = dd < np.maximum(extent, 0.5 * min_px * pxn)
        s_n = s_row[ri]
        if ln.type == "dashed":
            on = np.mod(s_n, ln.dash[1]) < ln.dash[0]
            lab &= on
            alpha = alpha * on
        wear = _tex(style.tex, s_n + 37.0, d_n, 3.0)
        alpha = alpha * (1.0 - ln.wear * np.clip(wear * 1.6 - 0.3, 0, 1))
        paint = np.array(PAINT[ln.color], np.float32) * (0.85 + 0.15 * grain_flat[fi])[:, None]
        sub = col_flat[fi]
        col_flat[fi] = sub + (paint - sub) * alpha[:, None].astype(np.float32)
        line_flat[fi[lab]] = ln.line_id
    return Ground(top, line_id, road_full, zcr[:, 0], offset, zr)
