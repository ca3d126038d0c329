"""Final image formation: lighting, headlights, fog, sky, glare, rain, blur and sensor noise.

Shadows are baked into the ground colour (``shade.render_ground``) and the sky is the raster's
background (:func:`sky_background`), so the per-frame work here is a handful of full-image passes.
"""

from __future__ import annotations

from typing import Dict

import cv2
import numpy as np

from carla_bridge.frame import CameraModel
from carla_bridge.synthetic.render import CameraState, Raster
from carla_bridge.synthetic.shade import Style
from carla_bridge.synthetic.world import M_LIGHT


def _constants(cam: CameraModel, cs: CameraState, style: Style) -> Dict[str, np.ndarray]:
    """Per-sequence images that do not change between frames (sky gradient, glare, LUTs)."""
    if style.cache:
        return style.cache
    h, w = cam.height, cam.width
    horizon = cam.cy - cam.fy * np.tan(cs.pitch)
    t = np.clip((horizon - np.arange(h, dtype=np.float32)) / (0.6 * h), 0.0, 1.0)[:, None]
    grad = style.sky_horizon[None, :] * (1 - t) + style.sky_top[None, :] * t
    sky = np.broadcast_to(grad[:, None, :], (h, w, 3)) / np.maximum(style.ambient, 1e-3)
    glare = np.zeros((h, w, 3), np.float32)
    if style.glare > 0:
        gx = w * (0.5 + 0.4 * style.sun_side)
        gy = horizon - 0.15 * h
        yy, xx = np.ogrid[:h, :w]
        rr = ((xx - gx) ** 2 + (yy - gy) ** 2) / (0.25 * w) ** 2
        glare[:] = (0.8 * 255.0 * style.glare * np.exp(-rr))[..., None]
    lut = np.clip((np.arange(256) / 255.0) ** style.gamma * 255.0 + 0.5, 0, 255).astype(np.uint8)
    xn = ((np.arange(w, dtype=np.float32) - cam.cx) / cam.fx)[None, :]
    style.cache.update(
        sky=np.ascontiguousarray(sky, np.float32),
        glare=glare,
        lut=lut,
        xn=xn,
        noise=style.noise.astype(np.float32),
    )
    return style.cache


def sky_background(cam: CameraModel, cs: CameraState, style: Style) -> np.ndarray:
    """Sky gradient as raster background, pre-divided by the ambient light of ``compose``."""
    return _constants(cam, cs, style)["sky"]


def compose(r: Raster, cs: CameraState, style: Style, rng: np.random.Generator) -> np.ndarray:
    """Turn the albedo/material/depth buffers into the final RGB ``uint8`` image.

    ``rng`` drives the per-frame random effects (noise offset, rain streaks).
    """
    cam = r.cam
    k = _constants(cam, cs, style)
    h, w = cam.height, cam.width
    invz = r.invz
    img = r.color * (style.ambient * 255.0).astype(np.float32)
    night = style.time_of_day != "day"
    fog = np.isfinite(style.fog_vis)
    if night or fog:
        zc = 1.0 / np.maximum(invz, np.float32(1e-6))
    if night:
        # ego headlights: a cone of light ahead of the camera
        lat = np.abs(k["xn"] * zc)
        cone = np.exp(-((lat / (0.28 * zc + 0.9)) ** 2)) * np.clip(1.0 - zc / 70.0, 0.0, 1.0)
        strength = 1.1 if style.time_of_day == "night" else 0.5
        tint = np.array((1.0, 0.97, 0.88), np.float32) * np.float32(255.0 * strength)
        img += r.color * (cone[..., None] * tint)
    em = r.emissive
    ev, eu = np.nonzero(em)
    if len(ev):
        img[ev, eu] = r.color[ev, eu] * np.float32(255.0)
    if fog:
        trans = np.exp(-zc / np.float32(style.fog_vis))[..., None]
        fog_col = (style.fog_color * 255.0).astype(np.float32)
        img = (img * trans + fog_col * (1.0 - trans)).astype(np.float32)
    if night and len(ev):
        lights = r.mat[ev, eu] == M_LIGHT
        if lights.any():
            # bloom around vehicle lights (glare): blur the light layer at quarter resolution
            glow = np.zeros((h, w, 3), np.float32)
            glow[ev[lights], eu[lights]] = img[ev[lights], eu[lights]]
            sw, sh = max(w // 4, 1), max(h // 4, 1)
            small = cv2.GaussianBlur(
                cv2.resize(glow, (sw, sh), interpolation=cv2.INTER_AREA), (0, 0), 2.5
            )
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
        img += streaks[..., None].astype(np.float32) * np.float32(0.18)
    if style.blur:
        img = cv2.blur(img, (style.blur, 1))
    if style.noise_sigma > 0:
        oy, ox = rng.integers(0, 16, 2)
        img += k["noise"][oy : oy + h, ox : ox + w]
    np.maximum(img, 0.0, out=img)
    out = cv2.convertScaleAbs(img)  # rounds and saturates at 255
    return cv2.LUT(out, k["lut"])
