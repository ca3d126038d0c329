"""Final image formation: lighting, shadows, headlights, fog, sky, glare, rain, blur and noise."""

from __future__ import annotations

import cv2
import numpy as np

from carla_bridge.synthetic.render import M_GRASS, M_ROAD, M_SIDEWALK, CameraState, Raster
from carla_bridge.synthetic.shade import Style
from carla_bridge.synthetic.world import M_LIGHT


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
    cam = r.cam
    h, w = cam.height, cam.width
    invz = r.invz
    sky = invz <= 0
    ground = (r.mat == M_ROAD) | (r.mat == M_SIDEWALK) | (r.mat == M_GRASS)
    light = np.empty((h, w, 3), np.float32)
    light[:] = style.ambient.astype(np.float32)
    if style.shadow < 1.0:
        sh = (shadow > 0) & ground & (r.obj == 0)
        light[sh] *= style.shadow
    zc = np.where(sky, 1e6, 1.0 / np.maximum(invz, 1e-6)).astype(np.float32)
    if style.time_of_day != "day":
        # ego headlights: a cone ahead of the camera, plus street lamps in lit scenes
        xn = ((np.arange(w, dtype=np.float32) - cam.cx) / cam.fx)[None, :]
        lat = np.abs(xn * zc)
        cone = np.exp(-((lat / (0.28 * zc + 0.9)) ** 2)) * np.clip(1.0 - zc / 70.0, 0.0, 1.0)
        strength = 1.1 if style.time_of_day == "night" else 0.5
        light += (strength * cone)[..., None] * np.array((1.0, 0.97, 0.88), np.float32)
    img = r.color * light
    em = r.emissive
    if em.any():
        img[em] = r.color[em]
    # sky gradient (rows above the horizon blend from horizon colour to zenith colour)
    if sky.any():
        horizon = cam.cy - cam.fy * np.tan(cs.pitch)
        t = np.clip((horizon - np.arange(h, dtype=np.float32)) / (0.6 * h), 0.0, 1.0)[:, None]
        grad = style.sky_horizon[None, :] * (1 - t) + style.sky_top[None, :] * t
        img[sky] = np.broadcast_to(grad[:, None, :], (h, w, 3))[sky]
    if np.isfinite(style.fog_vis):
        trans = np.exp(-zc / style.fog_vis)[..., None]
        img = img * trans + style.fog_color.astype(np.float32) * (1.0 - trans)
    lights = em & (r.mat == M_LIGHT)
    if style.time_of_day != "day" and lights.any():
        # bloom around vehicle lights (glare): blur the light layer at quarter resolution
        glow = np.zeros((h, w, 3), np.float32)
        glow[lights] = img[lights]
        small = cv2.resize(glow, (max(w // 4, 1), max(h // 4, 1)), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), 2.5)
        img += 1.5 * cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if style.glare > 0:
        gx = w * (0.5 + 0.4 * style.sun_side)
        gy = cam.cy - cam.fy * np.tan(cs.pitch) - 0.15 * h
        yy, xx = np.ogrid[:h, :w]
        rr = ((xx - gx) ** 2 + (yy - gy) ** 2) / (0.25 * w) ** 2
        img += (style.glare * np.exp(-rr))[..., None].astype(np.float32) * np.float32(0.8)
    if style.rain > 0:
        streaks = np.zeros((h, w), np.uint8)
        n = int(style.rain * w * h / 900)
        x0 = rng.integers(0, w, n)
        y0 = rng.integers(0, h, n)
        ln = rng.integers(h // 30 + 2, h // 12 + 4, n)
        for a, b, c in zip(x0.tolist(), y0.tolist(), ln.tolist()):
            cv2.line(streaks, (a, b), (a + c // 5, b + c), 255, 1)
        img = img * 0.92 + (streaks[..., None].astype(np.float32) / 255.0) * 0.18
    if style.blur:
        img = cv2.blur(img, (style.blur, 1))
    out = np.clip(img, 0.0, 1.0) ** np.float32(style.gamma) * 255.0
    if style.noise_sigma > 0:
        oy, ox = rng.integers(0, 16, 2)
        out = out + style.noise[oy : oy + h, ox : ox + w]
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return out
