"""Final image formation: lighting, shadows, headlights, fog, sky, glare, rain, blur and noise."""

from __future__ import annotations

from typing import Dict

import cv2
import numpy as np

from carla_bridge.synthetic.render import M_GRASS, M_ROAD, CameraState, Raster
from carla_bridge.synthetic.shade import Style
from carla_bridge.synthetic.world import M_LIGHT


def _constants(r: Raster, cs: CameraState, style: Style) -> Dict[str, np.ndarray]:
    """Per-sequence images that do not change between frames (sky gradient, glare, LUTs)."""
    if style.cache:
        return style.cache
    cam = r.cam
    h, w = cam.height, cam.width
    horizon = cam.cy - cam.fy * np.tan(cs.pitch)
    t = np.clip((horizon - np.arange(h, dtype=np.float32)) / (0.6 * h), 0.0, 1.0)[:, None]
    grad = style.sky_horizon[None, :] * (1 - t) + style.sky_top[None, :] * t
    sky = np.ascontiguousarray(np.broadcast_to(grad[:, None, :], (h, w, 3)), np.float32)
    glare = np.zeros((h, w, 3), np.float32)
    if style.glare > 0:
        gx = w * (0.5 + 0.4 * style.sun_side)
        gy = horizon - 0.15 * h
        yy, xx = np.ogrid[:h, :w]
        rr = ((xx - gx) ** 2 + (yy - gy) ** 2) / (0.25 * w) ** 2
        glare[:] = (0.8 * style.glare * np.exp(-rr))[..., None]
    lut = np.clip((np.arange(256) / 255.0) ** style.gamma * 255.0 + 0.5, 0, 255).astype(np.uint8)
    xn = ((np.arange(w, dtype=np.float32) - cam.cx) / cam.fx)[None, :]
    style.cache.update(sky=sky, glare=glare, lut=lut, xn=xn)
    return style.cache


def compose(
    r: Raster,
    cs: CameraState,
    style: Style,
    shadow: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Turn the albedo/material/depth buffers into the final RGB ``uint8`` image.

    ``shadow`` is a uint8 H x W mask of ground pixels in the shadow of objects and buildings.
    ``rng`` drives the per-frame random effects (noise offset, rain streaks).
    """
    k = _constants(r, cs, style)
    cam = r.cam
    h, w = cam.height, cam.width
    invz = r.invz
    sky = invz <= 0
    img = r.color * style.ambient.astype(np.float32)
    if style.shadow < 1.0:
        sh = (shadow > 0) & (r.mat >= M_ROAD) & (r.mat <= M_GRASS) & (r.obj == 0)
        img *= np.where(sh, np.float32(style.shadow), np.float32(1.0))[..., None]
    night = style.time_of_day != "day"
    fog = np.isfinite(style.fog_vis)
    if night or fog:
        zc = 1.0 / np.maximum(invz, np.float32(1e-6))
    if night:
        # ego headlights: a cone of light ahead of the camera
        lat = np.abs(k["xn"] * zc)
        cone = np.exp(-((lat / (0.28 * zc + 0.9)) ** 2)) * np.clip(1.0 - zc / 70.0, 0.0, 1.0)
        strength = 1.1 if style.time_of_day == "night" else 0.5
        tint = np.array((1.0, 0.97, 0.88), np.float32) * np.float32(strength)
        img += r.color * (cone[..., None] * tint)
    em = r.emissive
    if em.any():
        np.copyto(img, r.color, where=em[..., None])
    np.copyto(img, k["sky"], where=sky[..., None])
    if fog:
        trans = np.exp(-zc / np.float32(style.fog_vis))[..., None]
        img = (img * trans + style.fog_color.astype(np.float32) * (1.0 - trans)).astype(np.float32)
    lights = em & (r.mat == M_LIGHT)
    if night and lights.any():
        # bloom around vehicle lights (glare): blur the light layer at quarter resolution
        glow = np.where(lights[..., None], img, np.float32(0.0))
        small = cv2.resize(glow, (max(w // 4, 1), max(h // 4, 1)), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), 2.5)
        img += 1.5 * cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if style.glare > 0:
        img += k["glare"]
    if style.rain > 0:
        streaks = np.zeros((h, w), np.uint8)
        n = int(style.rain * w * h / 900)
        x0 = rng.integers(0, w, n)
        y0 = rng.integers(0, h, n)
        ln = rng.integers(h // 30 + 2, h // 12 + 4, n)
        for a, b, c in zip(x0.tolist(), y0.tolist(), ln.tolist()):
            cv2.line(streaks, (a, b), (a + c // 5, b + c), 255, 1)
        img *= np.float32(0.92)
        img += streaks[..., None].astype(np.float32) * np.float32(0.18 / 255.0)
    if style.blur:
        img = cv2.blur(img, (style.blur, 1))
    img *= np.float32(255.0)
    if style.noise_sigma > 0:
        oy, ox = rng.integers(0, 16, 2)
        img += style.noise[oy : oy + h, ox : ox + w]
    out = np.clip(img + np.float32(0.5), 0, 255).astype(np.uint8)
    return cv2.LUT(out, k["lut"])
