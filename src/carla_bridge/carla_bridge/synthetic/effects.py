"""Final image formation: lighting, headlights, fog, sky, glare, rain, blur and sensor noise.

Shadows are baked into the ground colour (``shade.render_ground``) and the sky is the raster's
background (:func:`sky_background`), so the per-frame work here is a handful of full-image passes.
"""

from __future__ import annotations

from typing import Dict

import cv2
import numpy as np

from carla_bridge.frame import CameraModel
from carla_bridge.synthetic.kernels import exp_args
from carla_bridge.synthetic.kernels import light as light_kernel
from carla_bridge.synthetic.render import EM_BIT, CameraState, Raster
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


def _scalar(v: np.ndarray) -> tuple:
    """A per-channel constant as a cv2 scalar (a bare number would only scale channel 0)."""
    return tuple(float(x) for x in np.asarray(v, np.float32)) + (0.0,)


def _planes(a: np.ndarray) -> np.ndarray:
    """A single-channel image repeated into 3 channels (for per-pixel cv2 arithmetic)."""
    return cv2.merge((a, a, a))


_EMPTY1 = np.zeros(0, np.int64)
_EMPTY2 = np.zeros((0, 0), np.float32)
_EMPTY3 = np.zeros((0, 0, 3), np.float32)


def _light_pixels(r: Raster) -> np.ndarray:
    """Flat indices of the emissive vehicle-light pixels (the ones that bloom at night)."""
    ei = np.flatnonzero(r.emissive)
    return ei[r.mat.reshape(-1)[ei] == M_LIGHT] if len(ei) else ei


def _bloom(img: np.ndarray, li: np.ndarray, h: int, w: int) -> None:
    """Add the glow of the light pixels ``li`` (blurred at quarter resolution) to ``img``."""
    glow = np.zeros((h, w, 3), np.float32)
    glow.reshape(-1, 3)[li] = img.reshape(-1, 3)[li]
    sw, sh = max(w // 4, 1), max(h // 4, 1)
    small = cv2.GaussianBlur(cv2.resize(glow, (sw, sh), interpolation=cv2.INTER_AREA), (0, 0), 2.5)
    up = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    cv2.scaleAdd(up, 1.5, img, dst=img)  # img += 1.5 * up (fused: float rounding only)


def _light_numpy(
    r: Raster,
    k: Dict[str, np.ndarray],
    style: Style,
    cone: np.ndarray,
    tint: np.ndarray,
    ambient: np.ndarray,
    trans: np.ndarray,
    li: np.ndarray,
) -> np.ndarray:
    """cv2 statement of :func:`kernels.light` plus the bloom: the lit image before the rain."""
    if cone.shape[0]:
        light = cv2.merge([cone * c + a for c, a in zip(tint, ambient)])
        img = cv2.multiply(r.color, light)  # color * (ambient * 255 + cone * tint)
    else:
        img = cv2.multiply(r.color, _scalar(ambient))  # color * ambient * 255
    # emissive pixels (few) by flat index: far cheaper than np.nonzero's row/column pairs
    ei = np.flatnonzero(r.emissive)
    flat_img, flat_col = img.reshape(-1, 3), r.color.reshape(-1, 3)
    if len(ei):
        flat_img[ei] = flat_col[ei] * np.float32(255.0)
    if trans.shape[0]:
        fog_col = _scalar(style.fog_color * 255.0)
        # img * trans + fog_color * (1 - trans)
        haze = cv2.multiply(_planes(np.float32(1.0) - trans), fog_col)
        img = cv2.add(cv2.multiply(img, _planes(trans)), haze)
    if len(li):
        _bloom(img, li, *img.shape[:2])
    if style.glare > 0:
        cv2.add(img, k["glare"], dst=img)
    return img


def compose(r: Raster, cs: CameraState, style: Style, rng: np.random.Generator) -> np.ndarray:
    """Turn the albedo/material/depth buffers into the final RGB ``uint8`` image.

    ``rng`` drives the per-frame random effects (noise offset, rain streaks). Full-image
    arithmetic is done with cv2 (one pass per operation, no broadcast temporaries); every cv2
    call here is an element-wise float32 operation, so the result equals the numpy expression
    written in its comment.
    """
    cam = r.cam
    k = _constants(cam, cs, style)
    h, w = cam.height, cam.width
    ambient = (style.ambient * 255.0).astype(np.float32)
    night = style.time_of_day != "day"
    fog = np.isfinite(style.fog_vis)
    cone = trans = _EMPTY2
    if r.compiled and (night or fog):  # the arguments in one pass, then numpy's exp in place
        cone, clip, trans = (np.empty((h, w), np.float32) if on else _EMPTY2 for on in
                             (night, night, fog))  # fmt: skip
        fv = np.float32(style.fog_vis if fog else 1.0)
        exp_args(r.invz, k["xn"][0], night, bool(fog), fv, cone, clip, trans)
        if night:
            np.multiply(np.exp(cone, out=cone), clip, out=cone)
        if fog:
            np.exp(trans, out=trans)
    elif night or fog:
        zc = r.depth()
        if night:
            # ego headlights: a cone of light ahead of the camera, added to the ambient light
            lat = np.abs(k["xn"] * zc)
            cone = np.exp(-((lat / (0.28 * zc + 0.9)) ** 2))
            cone *= np.clip(1.0 - zc / 70.0, 0.0, 1.0)
        if fog:
            trans = np.exp(-zc / np.float32(style.fog_vis))
    if night:
        strength = 1.1 if style.time_of_day == "night" else 0.5
        tint = np.array((1.0, 0.97, 0.88), np.float32) * np.float32(255.0 * strength)
    else:
        tint = np.zeros(3, np.float32)
    # vehicle lights at night bloom (glare) before the sun glare and rain are applied
    li = _light_pixels(r) if night else _EMPTY1
    if r.compiled:
        img = np.empty((h, w, 3), np.float32)
        rain = np.float32(0.92) if style.rain > 0 and not len(li) else np.float32(0.0)
        light_kernel(
            r.color,
            r.ident,
            EM_BIT,
            cone,
            np.concatenate([tint, ambient]),
            bool(fog),
            trans,
            np.asarray(style.fog_color * 255.0, np.float32),
            k["glare"] if style.glare > 0 and not len(li) else _EMPTY3,
            rain,
            img,
        )
        if len(li):
            _bloom(img, li, h, w)
            if style.glare > 0:
                cv2.add(img, k["glare"], dst=img)
            if style.rain > 0:
                cv2.multiply(img, (0.92, 0.92, 0.92, 0.0), dst=img)
    else:
        img = _light_numpy(r, k, style, cone, tint, ambient, trans, li)
    if style.rain > 0:
        streaks = np.zeros((h, w), np.uint8)
        n = int(style.rain * w * h / 900)
        x0 = rng.integers(0, w, n)
        y0 = rng.integers(0, h, n)
        ln = rng.integers(h // 30 + 2, h // 12 + 4, n)
        for a, b, c in zip(x0.tolist(), y0.tolist(), ln.tolist()):
            cv2.line(streaks, (a, b), (a + c // 5, b + c), 255, 1)
        if not r.compiled:
            cv2.multiply(img, (0.92, 0.92, 0.92, 0.0), dst=img)
        # img += (streaks == 255) * 255 * 0.18: float32 adds at the streak pixels only
        streak = float(np.float32(255.0) * np.float32(0.18))
        cv2.add(img, (streak, streak, streak, 0.0), dst=img, mask=streaks)
    if style.blur:
        # horizontal box blur as a 1 x n correlation (several times faster than cv2.blur on
        # float images; the same filter up to float rounding)
        img = cv2.filter2D(img, -1, np.full((1, style.blur), 1.0 / style.blur, np.float32))
    if style.noise_sigma > 0:
        oy, ox = rng.integers(0, 16, 2)
        # img + noise, rounded and saturated to 0..255 in one pass
        out = cv2.add(img, k["noise"][oy : oy + h, ox : ox + w], dtype=cv2.CV_8U)
    else:
        out = cv2.convertScaleAbs(np.maximum(img, 0.0))  # rounds and saturates at 255
    return cv2.LUT(out, k["lut"])
