"""SyntheticBackend: procedural driving scenes with exact labels and backward optical flow."""

from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np
from scipy.ndimage import find_objects

from carla_bridge.backend import SceneBackend
from carla_bridge.frame import CameraModel, Frame, LaneLineLabel, ObjectLabel
from carla_bridge.scenario import ScenarioConfig
from carla_bridge.synthetic.calibrate import flow_fused
from carla_bridge.synthetic.effects import compose, sky_background
from carla_bridge.synthetic.kernels import (
    draw_quads,
    flow_mid_end,
    flow_pre,
    ground_labels,
    object_boxes,
    pixels_of,
)
from carla_bridge.synthetic.layout import generate_world
from carla_bridge.synthetic.render import (
    EM_BIT,
    M_GRASS,
    M_ROAD,
    MAT_SHIFT,
    NEAR,
    OBJ_MASK,
    SHIFT,
    CameraState,
    Raster,
    clip_near,
)
from carla_bridge.synthetic.scene import Quads, SceneGeometry
from carla_bridge.synthetic.shade import Ground, make_style, render_ground
from carla_bridge.synthetic.world import World

VIEW_BEHIND, VIEW_AHEAD = 12.0, 260.0


class SyntheticBackend(SceneBackend):
    """Procedural generator (no simulator needed); deterministic in ``config.seed``.

    ``effects=False`` disables per-frame random effects (sensor noise, rain streaks, blur, glare)
    so consecutive frames differ only by geometry and lighting. Objects with fewer than
    ``min_visible_pixels`` visible pixels are not labelled (default: ``max(8, W * H / 10000)``,
    25 pixels at 640x384).
    """

    name = "synthetic"

    def __init__(self, effects: bool = True, min_visible_pixels: Optional[int] = None) -> None:
        super().__init__()
        self.effects = effects
        self.min_visible_pixels = min_visible_pixels

    def _open(self, config: ScenarioConfig) -> None:
        rng = np.random.default_rng([config.seed, 0x5EED])
        self.world: World = generate_world(config, rng)
        if len(self.world.agents) + len(self.world.signs) > OBJ_MASK:
            raise ValueError(f"too many objects for the raster's {OBJ_MASK.bit_length()}-bit ids")
        self.geometry = SceneGeometry(self.world)
        self.style = make_style(config, rng, self.effects)
        c = config.camera
        j = c.jitter
        fov = np.deg2rad(c.fov_deg + (rng.uniform(-6, 6) if j else 0.0))
        fx = c.width / 2.0 / np.tan(fov / 2.0)
        self.camera = CameraModel(
            width=c.width,
            height=c.height,
            fx=float(fx),
            fy=float(fx * (rng.uniform(0.98, 1.02) if j else 1.0)),
            cx=float((c.width - 1) / 2.0 + (rng.uniform(-0.02, 0.02) * c.width if j else 0.0)),
            cy=float((c.height - 1) / 2.0 + (rng.uniform(-0.04, 0.04) * c.height if j else 0.0)),
        )
        self.mount = float(c.mount_height_m + (rng.uniform(-0.3, 0.3) if j else 0.0))
        self.pitch = float(np.deg2rad(c.pitch_deg + (rng.uniform(-2, 2) if j else 0.0)))

    def frames(self) -> Iterator[Frame]:
        config = self._require_open()
        prev = None
        for t in range(config.frames):
            frame, state = self._render(config, t, prev)
            prev = state
            yield frame

    # ------------------------------------------------------------------ one frame
    def camera_state(self, t: int) -> CameraState:
        w = self.world
        s = float(w.ego_s[t])
        theta, xc, el = w.profile(np.array([s]))
        return CameraState(
            self.camera,
            self.mount,
            self.pitch,
            s,
            float(w.ego_d[t]),
            float(w.ego_psi[t]),
            float(theta[0]),
            float(xc[0]),
            float(el[0]),
        )

    def _render(self, config: ScenarioConfig, t: int, prev: Optional[dict]) -> Tuple[Frame, dict]:
        world, style, cam = self.world, self.style, self.camera
        cs = self.camera_state(t)
        r = Raster(cam, sky_background(cam, cs, style), deferred=True)
        shadow = self._shadows(cs, t)
        ground = render_ground(r, world, cs, style, shadow)
        r.night = style.time_of_day != "day"
        q = self.geometry.quads(cs, t, cs.s - VIEW_BEHIND, cs.s + VIEW_AHEAD)
        full: Dict[int, List[np.ndarray]] = {}
        self._draw(r, q, full)
        frame_rng = np.random.default_rng([config.seed, t, 0xF00D])
        image = compose(r, cs, style, frame_rng)
        lines = self._polylines(ground, cs)
        # pixels of a line whose centre never enters the image (no polyline) are not labelled
        labelled = {ln.line_id for ln in lines}
        dropped = [ln.line_id for ln in world.lines if ln.line_id not in labelled]
        if r.compiled:
            keep = np.ones(max([ln.line_id for ln in world.lines] + [0]) + 1, bool)
            keep[dropped] = False
            lane_mask = np.empty((cam.height, cam.width), np.uint16)
            drivable = np.empty((cam.height, cam.width), bool)
            args = (OBJ_MASK, MAT_SHIFT, M_ROAD, M_GRASS, lane_mask, drivable)
            ground_labels(r.ident, ground.line_id, ground.road, keep, *args)
        else:
            # ground materials are the codes M_ROAD..M_GRASS (uint8 wrap-around: 0 above them)
            visible_ground = (r.mat - np.uint8(M_ROAD)) <= M_GRASS - M_ROAD
            visible_ground &= r.obj == 0
            lane_mask = np.multiply(ground.line_id, visible_ground, dtype=np.uint16)
            if dropped:
                lane_mask[np.isin(lane_mask, dropped)] = 0
            drivable = visible_ground & ground.road
        objects = self._objects(r, full)
        flow, valid = self._flow(r, cs, t, prev)
        frame = Frame(
            sequence=config.sequence_name,
            index=t,
            timestamp=t / float(config.fps),
            image=image,
            camera=cam,
            pose=cs.pose(world),
            lane_instance_mask=lane_mask,
            lane_lines=lines,
            drivable_mask=drivable,
            objects=objects,
            flow=flow,
            flow_valid=valid,
            meta={
                "backend": "synthetic",
                "seed": config.seed,
                "weather": style.weather,
                "time_of_day": style.time_of_day,
                "scene": world.scene,
                "lanes": world.n_lanes,
                "camera_height_m": round(self.mount, 4),
                "camera_pitch_deg": round(float(np.rad2deg(self.pitch)), 4),
            },
        )
        return frame, {"cs": cs, "invz": r.invz, "objf": r.objf}

    def _draw(self, r: Raster, q: Quads, full: Dict[int, List[np.ndarray]]) -> None:
        """Rasterise the quads in order; collect each object's projected quads in ``full``.

        Quads in front of the near plane go through :meth:`Raster.fill` with per-quad values
        converted to Python scalars here in a few array calls; the rest are clipped by
        :meth:`Raster.polygon`.
        """
        n = len(q.owner)
        owners = q.owner.tolist()
        front = q.front.tolist()
        boxes = q.box.tolist()
        sids = q.sid.tolist()
        mats = q.mat.tolist()
        objs = q.obj.tolist()
        ems = q.emissive.tolist()
        idents = (q.obj | q.emissive.astype(np.int64) * EM_BIT | q.mat << MAT_SHIFT).tolist()
        x0, y0, x1, y1 = q.box.T
        draw = q.front & np.isfinite(q.plane[:, 2]) & (x1 > x0) & (y1 > y0)
        drawable = draw.tolist()
        # inverse depth a u + b v + k of every box row / column, for all quads in a few calls:
        # quad i's rows are izv[rows[i]:rows[i + 1]] (b v + k), its columns izu[...] (a u)
        a, b, k = q.plane.astype(np.float32).T
        hs, ws = np.where(draw, y1 - y0, 0), np.where(draw, x1 - x0, 0)
        rows, cols = np.cumsum(hs) - hs, np.cumsum(ws) - ws
        v = np.repeat(y0 - rows, hs) + np.arange(hs.sum())
        u = np.repeat(x0 - cols, ws) + np.arange(ws.sum())
        izv = v.astype(np.float32) * np.repeat(b, hs) + np.repeat(k, hs)
        izu = u.astype(np.float32) * np.repeat(a, ws)
        textured = (~np.isnan(q.tex[:, 0, 0])) if n else np.zeros(0, bool)
        if r.compiled:
            kinds = np.where(draw, np.where((q.sid >= 0) & textured, 2, 1), 0)
            kinds[~q.front] = 3
            self._draw_compiled(r, q, full, kinds, (hs, ws, rows, cols, izv, izu))
            return
        rows, cols, hs, ws = rows.tolist(), cols.tolist(), hs.tolist(), ws.tolist()
        colors = [tuple(c) + (0.0,) for c in q.color.tolist()]
        textured = textured.tolist()
        for i in range(n):
            if not front[i]:
                r.polygon(
                    q.pc[i],
                    q.color[i],
                    mats[i],
                    objs[i],
                    ems[i],
                    full.setdefault(owners[i], []) if owners[i] else None,
                    q.tex[i],
                    texcoef=q.texcoef[i],
                )
                continue
            if owners[i]:
                full.setdefault(owners[i], []).append(q.uv[i])
            if not drawable[i]:
                continue
            texture = None
            if sids[i] >= 0 and textured[i]:
                texture = self.geometry.facade(sids[i], r.night)
            r.fill(
                q.pts[i],
                boxes[i],
                izv[rows[i] : rows[i] + hs[i], None],
                izu[cols[i] : cols[i] + ws[i]],
                colors[i],
                idents[i],
                texture,
                q.corners[i],
            )

    def _draw_compiled(
        self,
        r: Raster,
        q: Quads,
        full: Dict[int, List[np.ndarray]],
        kinds: np.ndarray,
        spans: tuple,
    ) -> None:
        """:meth:`_draw` with the kernel :func:`kernels.draw_quads`: the coverage masks of all
        quads are drawn first (``cv2.fillPoly`` into one buffer), then one kernel call z-tests
        and fills the quads in order, stopping only where Python is needed (a visible textured
        quad: its warp; a clipped polygon). Same pixels and values as the per-quad path.

        ``kinds`` as in ``draw_quads``; ``spans`` = (box heights, widths, row and column
        offsets into ``izv`` / ``izu``, ``izv``, ``izu``) from :meth:`_draw`.
        """
        hs, ws, rows, cols, izv, izu = spans
        n = len(kinds)
        sizes = hs * ws
        offs = np.cumsum(sizes) - sizes
        x0, y0 = q.box[:, 0], q.box[:, 1]
        geo = np.stack([y0, x0, hs, ws, offs, rows, cols], 1).astype(np.int64)
        masks = np.zeros(int(sizes.sum()), np.uint8)
        owners = q.owner.tolist()
        front = q.front.tolist()
        todo = np.flatnonzero((kinds == 1) | (kinds == 2))  # the front quads to draw
        pts = list(q.pts[todo])
        spans = zip(offs[todo].tolist(), hs[todo].tolist(), ws[todo].tolist(), pts)
        for o, hh, ww, p in spans:
            cv2.fillPoly(masks[o : o + hh * ww].reshape(hh, ww), [p], 255, cv2.LINE_8, SHIFT)
        for i in range(n):  # silhouettes of objects (clipped polygons add theirs when drawn)
            if owners[i] and front[i]:
                full.setdefault(owners[i], []).append(q.uv[i])
        idents = q.obj | q.emissive.astype(np.int64) * EM_BIT | q.mat << MAT_SHIFT
        bufs = (r.invz, r.color, r.ident)
        start = 0
        while start < n:
            i, _ = draw_quads(start, kinds, geo, masks, (izv, izu), q.color, idents, r.night, bufs)
            if i >= n:
                break
            if kinds[i] == 3:
                r.polygon(
                    q.pc[i],
                    q.color[i],
                    int(q.mat[i]),
                    int(q.obj[i]),
                    bool(q.emissive[i]),
                    full.setdefault(owners[i], []) if owners[i] else None,
                    q.tex[i],
                    texcoef=q.texcoef[i],
                )
            else:
                o, hh, ww = int(offs[i]), int(hs[i]), int(ws[i])
                texture = self.geometry.facade(int(q.sid[i]), r.night)
                m = masks[o : o + hh * ww].reshape(hh, ww)
                r.paint_texture(m, q.box[i].tolist(), texture, q.corners[i], int(idents[i]))
            start = i + 1

    def _shadows(self, cs: CameraState, t: int) -> np.ndarray:
        """Mask of ground pixels shadowed by agents and by sun-side buildings."""
        w, cam = self.world, self.camera
        mask = np.zeros((cam.height, cam.width), np.uint8)
        if self.style.shadow >= 1.0:
            return mask
        sun = self.style.sun_side
        quads = []
        for k, a in enumerate(w.agents):
            s, d = float(w.agent_s[t, k]), float(w.agent_d[t, k])
            if not cs.s - VIEW_BEHIND < s < cs.s + 120.0:
                continue
            top = max(b.h1 for b in a.boxes)
            off = -sun * 0.35 * top
            d0, d1 = sorted((d - a.width / 2 - 0.1, d + a.width / 2 + 0.1 + off))
            quads.append((s - a.length / 2 - 0.1, s + a.length / 2 + 0.1, d0, d1))
        for b in w.buildings:
            if np.sign(b.d) == sun and b.s1 > cs.s - VIEW_BEHIND and b.s0 < cs.s + 150.0:
                reach = b.d - sun * 0.5 * b.height
                quads.append((b.s0, b.s1, min(b.d, reach), max(b.d, reach)))
        if not quads:
            return mask
        # all corners through the road -> camera mapping at once (element-wise: the same values
        # as one call per quad)
        sd = np.array([[(a, c), (b, c), (b, d), (a, d)] for a, b, c, d in quads], np.float64)
        x, y, z = cs.to_camera(
            w, sd[..., 0].ravel(), sd[..., 1].ravel(), np.zeros(sd[..., 0].size)
        )
        pcs = np.stack([x, y, z], 1).reshape(-1, 4, 3)
        front = (pcs[:, :, 2] >= NEAR).all(1)
        polys = []
        if front.any():  # quads needing no clipping: projected in one go
            pc = pcs[front]
            uv = np.stack(
                [
                    pc[..., 0] / pc[..., 2] * cam.fx + cam.cx,
                    pc[..., 1] / pc[..., 2] * cam.fy + cam.cy,
                ],
                2,
            )
            uv = np.clip(uv, -8 * cam.width, 8 * cam.width)
            polys = list(np.round(uv * (1 << SHIFT)).astype(np.int32))
        for pc in pcs[~front]:
            pc = clip_near(pc)
            if len(pc) < 3:
                continue
            uv = np.stack(
                [pc[:, 0] / pc[:, 2] * cam.fx + cam.cx, pc[:, 1] / pc[:, 2] * cam.fy + cam.cy], 1
            )
            uv = np.clip(uv, -8 * cam.width, 8 * cam.width)
            polys.append(np.round(uv * (1 << SHIFT)).astype(np.int32))
        for p in polys:  # one call per quad (the mask is their union)
            cv2.fillPoly(mask, [p], 1, 8, SHIFT)
        return mask

    def _objects(self, r: Raster, full: Dict[int, List[np.ndarray]]) -> List[ObjectLabel]:
        """Labels of every object with enough visible pixels (tight box of the visible mask)."""
        cam = self.camera
        w = self.world
        cats = {a.track_id: a.category for a in w.agents + w.signs}
        out: List[ObjectLabel] = []
        min_px = self.min_visible_pixels
        if min_px is None:
            min_px = max(8, cam.width * cam.height // 10000)
        for tid, sl, n_vis in _object_slices(r):
            if n_vis < min_px:
                continue
            sub = r.obj[sl] == tid
            n_full, n_inside = _full_area(full.get(tid, []), cam.width, cam.height)
            n_full = max(n_full, n_vis)
            n_inside = min(max(n_inside, n_vis), n_full)
            mask = np.zeros((cam.height, cam.width), bool)
            mask[sl] = sub
            y0, x0 = sl[0].start, sl[1].start  # find_objects: the tight box of the label
            out.append(
                ObjectLabel(
                    track_id=tid,
                    category=cats[tid],
                    bbox=(float(x0), float(y0), float(sl[1].stop - x0), float(sl[0].stop - y0)),
                    mask=mask,
                    visible_fraction=round(n_vis / n_full, 4),
                    truncated=round(1.0 - n_inside / n_full, 4),
                )
            )
        return out

    def _flow(
        self, r: Raster, cs: CameraState, t: int, prev: Optional[dict]
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Backward flow from per-pixel depth, camera motion and object motion; occlusion-checked.

        Sky pixels (no depth) and points hidden or outside the image in the previous frame are
        invalid. The first frame of a sequence has zero flow, all invalid.
        """
        cam, w = self.camera, self.world
        h, wd = cam.height, cam.width
        if prev is None:
            return np.zeros((h, wd, 2), np.float32), np.zeros((h, wd), bool)
        pcs: CameraState = prev["cs"]
        f32 = np.float32
        # camera -> road -> previous camera, with the table lookups of static points cancelled
        # out analytically (see world.py): only moving objects need the road profile per pixel.
        # Per-row / per-column factors are folded first so that each full-image term costs one
        # pass; sums of two scaled images are one cv2 call.
        xn = (np.arange(wd, dtype=f32) - f32(cam.cx)) / f32(cam.fx)
        yn = (np.arange(h, dtype=f32) - f32(cam.cy)) / f32(cam.fy)
        cp, sp = f32(np.cos(cs.pitch)), f32(np.sin(cs.pitch))
        obj = r.obj
        lut = np.zeros((int(obj.max()) + 1, 2))
        tids = np.array([a.track_id for a in w.agents], np.int64)
        if len(tids):
            keep = tids < len(lut)
            lut[tids[keep], 0] = (w.agent_s[t] - w.agent_s[t - 1])[keep]
            lut[tids[keep], 1] = (w.agent_d[t] - w.agent_d[t - 1])[keep]
        # zp = z (cp - yn sp): pre-pitch forward distance, zp2 = zp + (s - s_prev);
        # x2 = x' + (d - d_prev + xc - xc_prev) + (theta + psi) z' with x' = xn z, z' = zp;
        # y2 = z (yn cp + sp) + elev_prev - elev: pre-pitch height below the camera
        consts = (f32(cs.s - pcs.s), f32(cs.d - pcs.d + cs.xc - pcs.xc), f32(pcs.elev - cs.elev))
        if r.compiled:
            zp, zp2, x2, y2 = (np.empty((h, wd), f32) for _ in range(4))
            trig = (cp, sp, f32(cs.theta + cs.psi))
            flow_pre(r.invz, xn, yn, trig, consts, zp, zp2, x2, y2)
        else:
            z = r.depth()
            xn, yn = xn[None, :], yn[:, None]
            zp = z * (cp - yn * sp)
            zp2 = zp + consts[0]
            x2 = z * (xn + f32(cs.theta + cs.psi) * (cp - yn * sp))
            x2 += consts[1]
            y2 = z * (yn * cp + sp)
            y2 += consts[2]
        # pixels of moving objects by flat index (one nonzero pass for all the updates below)
        if r.compiled:
            mi = np.empty(obj.size, np.int64)
            mi = mi[: pixels_of(obj, (lut != 0).any(1), mi)]
        else:
            mi = np.flatnonzero(np.take((lut != 0).any(1), obj))
        if len(mi):
            zp2f, x2f, y2f = zp2.reshape(-1), x2.reshape(-1), y2.reshape(-1)
            m_s = (zp.reshape(-1)[mi] + cs.s).astype(np.float64)
            om = obj.reshape(-1)[mi]
            ds, dd = lut[om, 0], lut[om, 1]
            xa, ea = w.drift_elev(m_s)
            xb, eb = w.drift_elev(m_s - ds)
            zp2f[mi] -= ds.astype(f32)
            x2f[mi] -= (dd + xa - xb).astype(f32)
            y2f[mi] += (ea - eb).astype(f32)
        fused = flow_fused() if r.compiled else None  # cv2's multiply-add here (one rounding?)
        if fused is not None:  # the cv2 chain below (remaps included) as one kernel pass
            coef = (-float(pcs.theta + pcs.psi), cp, sp, NEAR, cam.fx, cam.fy, cam.cx, cam.cy)
            coef = tuple(f32(c) for c in coef + (wd - 1.0, h - 1.0))
            flow, valid = np.empty((h, wd, 2), f32), np.empty((h, wd), bool)
            flow_mid_end(x2, zp2, y2, r.invz, coef, prev["invz"], prev["objf"], r.objf, flow,
                         valid, fused)  # fmt: skip
            return flow, valid
        cv2.scaleAdd(zp2, -float(pcs.theta + pcs.psi), x2, dst=x2)
        yc2 = cv2.addWeighted(y2, float(cp), zp2, -float(sp), 0.0)
        zc2 = cv2.addWeighted(y2, float(sp), zp2, float(cp), 0.0)
        # validity as a 0 / 255 mask: depth known, in front of and inside the previous camera
        ok = cv2.compare(r.invz, 0.0, cv2.CMP_GT)
        cv2.bitwise_and(ok, cv2.compare(zc2, NEAR, cv2.CMP_GT), dst=ok)
        inv2 = cv2.divide(1.0, cv2.max(zc2, NEAR))  # (invalid pixels: any finite value)
        u2 = cv2.multiply(x2, inv2, scale=cam.fx)
        u2 += f32(cam.cx)
        v2 = cv2.multiply(yc2, inv2, scale=cam.fy)
        v2 += f32(cam.cy)
        cv2.bitwise_and(ok, cv2.inRange(u2, 0.0, wd - 1.0), dst=ok)
        cv2.bitwise_and(ok, cv2.inRange(v2, 0.0, h - 1.0), dst=ok)
        # occlusion test: the previous inverse depth (bilinear: exact on planes) must match
        iz = cv2.remap(prev["invz"], u2, v2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        cv2.bitwise_and(ok, cv2.inRange(cv2.multiply(iz, zc2), 0.98, 1.02), dst=ok)
        pobj = cv2.remap(prev["objf"], u2, v2, cv2.INTER_NEAREST)
        cv2.bitwise_and(ok, cv2.compare(pobj, r.objf, cv2.CMP_EQ), dst=ok)
        u2 -= np.arange(wd, dtype=f32)[None, :]
        v2 -= np.arange(h, dtype=f32)[:, None]
        flow = np.zeros((h, wd, 2), f32)
        cv2.copyTo(cv2.merge((u2, v2)), ok, flow)
        return flow, cv2.bitwise_and(ok, 1).view(bool)

    def _polylines(self, g: Ground, cs: CameraState) -> List[LaneLineLabel]:
        """Each line's centre as a polyline (bottom to top) over the visible ground rows."""
        cam = self.camera
        if g.top >= cam.height:
            return []
        rows = np.arange(g.top, cam.height)
        step = max(2, cam.height // 48)
        pick = (cam.height - 1 - np.arange(0, len(rows), step)) - g.top
        pick = pick[(pick >= 0) & (g.dist[pick] < 150.0)]
        out = []
        for ln in self.world.lines:
            u = cam.cx + cam.fx * (ln.d - g.offset[pick]) / g.zc[pick]
            inside = (u >= 0) & (u <= cam.width - 1)
            pts = np.stack([u[inside], rows[pick][inside].astype(np.float64)], 1)
            if len(pts) >= 2:
                out.append(LaneLineLabel(ln.line_id, ln.type, ln.color, np.round(pts, 2)))
        return out


def _object_slices(r: Raster) -> List[Tuple[int, Tuple[slice, slice], int]]:
    """``(id, tight box slices, pixels)`` of the objects in ``r.obj``, by id: one kernel pass
    (:func:`kernels.object_boxes`) or ``scipy.ndimage.find_objects`` and a count per object."""
    obj = r.obj
    if not r.compiled:
        out = []
        for k, sl in enumerate(find_objects(obj)):
            if sl is not None:
                out.append((k + 1, sl, int(np.count_nonzero(obj[sl] == k + 1))))
        return out
    stats = np.empty((int(obj.max(initial=0)) + 1, 5), np.int64)
    object_boxes(obj, stats)
    return [
        (k, (slice(y0, y1), slice(x0, x1)), n)
        for k, (y0, y1, x0, x1, n) in enumerate(stats.tolist())
        if k and n
    ]


def _full_area(polys: List[np.ndarray], width: int, height: int) -> Tuple[int, int]:
    """Pixels of an object's unoccluded silhouette (anywhere / inside the image)."""
    if not polys:
        return 0, 0
    allp = np.concatenate(polys)
    x0, y0 = np.floor(allp.min(0)).astype(int)
    x1, y1 = np.ceil(allp.max(0)).astype(int) + 1
    scale = 1.0
    area = float(x1 - x0) * float(y1 - y0)
    if area > 4.0 * width * height:
        scale = float(np.sqrt(4.0 * width * height / area))
    cw, ch = int((x1 - x0) * scale) + 1, int((y1 - y0) * scale) + 1
    canvas = np.zeros((ch, cw), np.uint8)
    fixed = np.round((allp - (x0, y0)) * scale * (1 << SHIFT)).astype(np.int32)
    ends = np.cumsum([len(p) for p in polys]).tolist()
    pts = [fixed[a:b] for a, b in zip([0] + ends[:-1], ends)]
    for p in pts:  # one call per polygon: a multi-contour fillPoly would XOR overlaps
        cv2.fillPoly(canvas, [p], 1, 8, SHIFT)
    n_full = cv2.countNonZero(canvas) / (scale * scale)  # (the canvas holds 0 / 1)
    ix0, iy0 = int(np.ceil((0 - x0) * scale)), int(np.ceil((0 - y0) * scale))
    ix1 = int(np.floor((width - 1 - x0) * scale)) + 1
    iy1 = int(np.floor((height - 1 - y0) * scale)) + 1
    roi = canvas[max(iy0, 0) : max(iy1, 0), max(ix0, 0) : max(ix1, 0)]
    inside = (cv2.countNonZero(roi) if roi.size else 0) / (scale * scale)
    return int(round(n_full)), int(round(inside))
