"""Vectorised scene geometry: every box, facade and tree crown of a sequence as quad arrays.

All geometry is prepared once per sequence as arrays; per frame, agents are moved, everything is
mapped to camera space in one call, and back faces / out-of-view quads are culled with array
operations, so the Python-level work is one rasteriser call per visible quad.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

from carla_bridge.synthetic.render import (
    M_BUILDING,
    M_CROWN,
    M_TRUNK,
    NEAR,
    SHIFT,
    CameraState,
    facade_coefficients,
    facade_texture,
    pixel_box,
    plane_coefficients,
    row_max,
    row_mean,
    row_min,
)
from carla_bridge.synthetic.world import M_POLE, Box, World, rgb

# the 6 faces of a box with corners indexed by (s, d, h) bits: corner k = (k&1, k>>1&1, k>>2&1)
FACES = np.array(
    [[0, 2, 6, 4], [1, 5, 7, 3], [0, 4, 5, 1], [2, 3, 7, 6], [4, 6, 7, 5], [0, 1, 3, 2]]
)  # -s, +s, -d, +d, +h, -h
FACE_SHADE = np.array([0.85, 0.85, 0.7, 0.62, 1.0, 0.5], np.float32)
LOD_DIST = 70.0  # buildings whose centre is farther ahead are drawn with one facade quad
LOD_AGENT_PX = 8.0  # agents drawn smaller than this (pixels tall) are drawn as one box
CORNER_BITS = np.array([[k & 1, (k >> 1) & 1, (k >> 2) & 1] for k in range(8)])


def _extent(b: Box) -> Tuple[float, float, float, float, float, float]:
    """(s0, s1, d0, d1, h0, h1): a box's extent along the road, across it and in height."""
    return (b.ds - b.length / 2, b.ds + b.length / 2, b.dd - b.width / 2, b.dd + b.width / 2,
            b.h0, b.h1)  # fmt: skip


@dataclass
class Quads:
    """Visible quads of one frame in camera space, with their attributes."""

    pc: np.ndarray  # M x 4 x 3 camera-space vertices
    color: np.ndarray  # M x 3
    mat: np.ndarray  # M
    obj: np.ndarray  # M object id written to the id buffer (0 = scenery)
    owner: np.ndarray  # M track id whose silhouette the quad belongs to (0 = none)
    emissive: np.ndarray  # M bool
    tex: np.ndarray  # M x 4 x 2 facade texture coordinates (along, height); NaN = none
    front: np.ndarray  # M bool: entirely in front of the near plane (uv / plane are valid)
    uv: np.ndarray  # M x 4 x 2 projected vertices
    plane: np.ndarray  # M x 3 inverse-depth plane coefficients
    box: np.ndarray  # M x 4 pixel boxes (x0, y0, x1, y1) of the front quads
    texcoef: np.ndarray  # M x 4 x 2 facade texture maps of clipped quads (else NaN)
    sid: np.ndarray  # M index of the static quad (-1 for boxes)
    pts: np.ndarray  # M x 4 x 2 int32 front quads' vertices relative to their box (SHIFT bits)
    corners: np.ndarray  # M x 4 x 2 float32 front quads' vertices relative to their box


class SceneGeometry:
    """Boxes (agents, signs, trunks) and quads (facades, crowns) of one world."""

    def __init__(self, world: World) -> None:
        self.world = world
        agents = world.agents + world.signs
        rows, cols, mats, objs, owners, ems, idx, lod = [], [], [], [], [], [], [], []
        for k, a in enumerate(agents):
            detailed = k < len(world.agents) and len(a.boxes) > 1
            if detailed:
                # far away an agent is one box (LOD 2) instead of its parts (LOD 1)
                r = np.array([_extent(b) for b in a.boxes])
                rows.append(
                    (
                        r[:, 0].min(),
                        r[:, 1].max(),
                        r[:, 2].min(),
                        r[:, 3].max(),
                        r[:, 4].min(),
                        r[:, 5].max(),
                    )
                )
                main = a.boxes[2] if a.category == "pedestrian" else a.boxes[0]
                cols.append(main.color)
                mats.append(main.material)
                objs.append(a.track_id)
                owners.append(a.track_id)
                ems.append(False)
                idx.append(k)
                lod.append(2)
            for b in a.boxes:
                lod.append(1 if detailed else 0)
                rows.append(_extent(b))
                cols.append(b.color)
                mats.append(b.material)
                pole = b.material == M_POLE
                objs.append(0 if pole else a.track_id)
                owners.append(0 if pole else a.track_id)
                ems.append(b.emissive)
                idx.append(k)
        for tr in world.trees:
            rows.append(
                (tr.s - 0.15, tr.s + 0.15, tr.d - 0.15, tr.d + 0.15, 0.0, tr.trunk_h + tr.crown_r)
            )
            cols.append((0.3, 0.22, 0.14))
            mats.append(M_TRUNK)
            objs.append(0)
            owners.append(0)
            ems.append(False)
            idx.append(-1)
            lod.append(0)
        self.box = np.array(rows, np.float64).reshape(-1, 6)
        self.box_lod = np.array(lod, np.int64)
        self.box_color = np.array(cols, np.float32).reshape(-1, 3)
        self.box_mat = np.array(mats, np.int64)
        self.box_obj = np.array(objs, np.int64)
        self.box_owner = np.array(owners, np.int64)
        self.box_em = np.array(ems, bool)
        self.box_agent = np.array(idx, np.int64)
        n_ag = len(world.agents)
        n = max(len(world.ego_s), 1)
        sign_s = np.array([a.s for a in world.signs], np.float64)
        sign_d = np.array([a.d for a in world.signs], np.float64)
        self.pos_s = np.concatenate([world.agent_s.reshape(n, n_ag), np.tile(sign_s, (n, 1))], 1)
        self.pos_d = np.concatenate([world.agent_d.reshape(n, n_ag), np.tile(sign_d, (n, 1))], 1)
        self._static_quads()
        self._textures: Dict[Tuple[int, bool], Tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _static_quads(self) -> None:
        w = self.world
        q, ic, col, mat, tex, lod, ref = [], [], [], [], [], [], []
        for b in w.buildings:
            side = float(np.sign(b.d))
            # facades: 10 m pieces follow the road curvature near the camera (LOD 1); far away
            # one quad per building is enough (LOD 2)
            edges = np.linspace(b.s0, b.s1, max(2, int(np.ceil((b.s1 - b.s0) / 10.0)) + 1))
            pieces = list(zip(edges[:-1], edges[1:]))
            if len(pieces) > 1:
                pieces.append((b.s0, b.s1))
            for j, (a, c) in enumerate(pieces):
                q.append([(a, b.d, 0), (c, b.d, 0), (c, b.d, b.height), (a, b.d, b.height)])
                ic.append((0.5 * (a + c), b.d + side, 0.5 * b.height))
                col.append(b.color)
                mat.append(M_BUILDING)
                tex.append([(a, 0), (c, 0), (c, b.height), (a, b.height)])
                lod.append(0 if len(pieces) == 1 else (2 if j == len(pieces) - 1 else 1))
                ref.append(0.5 * (b.s0 + b.s1))
            lod.append(0)
            ref.append(b.s0)
            dd = b.d + side * b.depth
            q.append([(b.s0, b.d, 0), (b.s0, dd, 0), (b.s0, dd, b.height), (b.s0, b.d, b.height)])
            ic.append((b.s0 + 1.0, 0.5 * (b.d + dd), 0.5 * b.height))
            col.append(rgb([c * 0.85 for c in b.color]))
            mat.append(M_BUILDING)
            tex.append([(b.d, 0), (dd, 0), (dd, b.height), (b.d, b.height)])
        for tr in w.trees:
            r, hc, s = tr.crown_r, tr.trunk_h + tr.crown_r, tr.s - 0.2
            lo, hi = hc - 0.45 * r, hc + 0.45 * r
            for poly in (
                [(s, tr.d - r, lo), (s, tr.d + r, lo), (s, tr.d + r, hi), (s, tr.d - r, hi)],
                [
                    (s, tr.d - r, hi),
                    (s, tr.d + r, hi),
                    (s, tr.d + 0.45 * r, hc + 1.1 * r),
                    (s, tr.d - 0.45 * r, hc + 1.1 * r),
                ],
                [
                    (s, tr.d - 0.45 * r, hc - 1.05 * r),
                    (s, tr.d + 0.45 * r, hc - 1.05 * r),
                    (s, tr.d + r, lo),
                    (s, tr.d - r, lo),
                ],
            ):
                q.append(poly)
                ic.append((np.nan, np.nan, np.nan))
                col.append(tr.color)
                mat.append(M_CROWN)
                tex.append([(np.nan, np.nan)] * 4)
                lod.append(0)
                ref.append(s)
        self.sq = np.array(q, np.float64).reshape(-1, 4, 3)
        self.sq_ic = np.array(ic, np.float64).reshape(-1, 3)
        self.sq_color = np.array(col, np.float32).reshape(-1, 3)
        self.sq_mat = np.array(mat, np.int64)
        self.sq_tex = np.array(tex, np.float64).reshape(-1, 4, 2)
        self.sq_s = self.sq[:, :, 0].mean(1) if len(self.sq) else np.zeros(0)
        self.sq_lod = np.array(lod, np.int64)
        self.sq_ref = np.array(ref, np.float64)

    def facade(self, sid: int, night: bool) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cached window texture of static facade quad ``sid`` (see ``render.facade_texture``)."""
        key = (sid, night)
        got = self._textures.get(key)
        if got is None:
            if len(self._textures) > 256:  # bound the memory of long sequences
                self._textures.clear()
            got = facade_texture(self.sq_tex[sid], self.sq_color[sid], night)
            self._textures[key] = got
        return got

    def quads(self, cs: CameraState, t: int, lo: float, hi: float) -> Quads:
        """Camera-space quads facing the camera and inside the view of frame ``t``."""
        w = self.world
        # boxes at their frame-t positions
        box = self.box.copy()
        ag = self.box_agent
        moving = ag >= 0
        box[moving, 0:2] += self.pos_s[t, ag[moving]][:, None]
        box[moving, 2:4] += self.pos_d[t, ag[moving]][:, None]
        keep = (box[:, 1] > lo) & (box[:, 0] < hi)
        # agent level of detail from its apparent size (~1.5 m tall at its distance)
        dist = np.zeros(len(ag))
        dist[moving] = self.pos_s[t, ag[moving]] - cs.s
        big = cs.cam.fy * 1.5 / np.maximum(np.abs(dist), 1.0) >= LOD_AGENT_PX
        lod = self.box_lod
        keep &= (lod == 0) | ((lod == 1) & big) | ((lod == 2) & ~big)
        box = box[keep]
        nb = len(box)
        corners = np.empty((nb, 8, 3))
        for j in range(3):
            lo_hi = box[:, 2 * j : 2 * j + 2]
            corners[:, :, j] = lo_hi[:, CORNER_BITS[:, j]]
        centre = row_mean(corners)
        bq = corners[:, FACES]  # nb x 6 x 4 x 3
        near = self.sq_ref - cs.s < LOD_DIST
        sel = (self.sq_s > lo - 10) & (self.sq_s < hi)
        sel &= (self.sq_lod == 0) | ((self.sq_lod == 1) & near) | ((self.sq_lod == 2) & ~near)
        sq = self.sq[sel]
        pts = np.concatenate([bq.reshape(-1, 3), centre, sq.reshape(-1, 3), self.sq_ic[sel]], 0)
        if not np.isfinite(pts).all():  # two-sided quads have no interior point (NaN)
            pts = np.nan_to_num(pts, nan=0.0)
        x, y, z = cs.to_camera(w, pts[:, 0], pts[:, 1], pts[:, 2])
        pc = np.stack([x, y, z], 1)
        nq = nb * 6
        bpc = pc[: nq * 4].reshape(nb, 6, 4, 3)
        bc = pc[nq * 4 : nq * 4 + nb]
        off = nq * 4 + nb
        spc = pc[off : off + len(sq) * 4].reshape(-1, 4, 3)
        sic = pc[off + len(sq) * 4 :]
        allq = np.concatenate([bpc.reshape(-1, 4, 3), spc], 0)
        ic = np.concatenate([np.repeat(bc, 6, 0), sic], 0)
        two_sided = np.concatenate([np.zeros(nq, bool), np.isnan(self.sq_ic[sel][:, 0])])
        fc = row_mean(allq)
        facing = np.einsum("ij,ij->i", fc - ic, fc) < 0
        facing |= two_sided
        zs = allq[:, :, 2]
        vis = facing & (row_max(zs) > NEAR)
        cam = cs.cam
        with np.errstate(divide="ignore", invalid="ignore"):
            u = allq[:, :, 0] / zs * cam.fx + cam.cx
            v = allq[:, :, 1] / zs * cam.fy + cam.cy
        front = row_min(zs) > NEAR
        u_lo, u_hi, v_lo, v_hi = row_min(u), row_max(u), row_min(v), row_max(v)
        outside = (u_hi < 0) | (u_lo > cam.width - 1) | (v_hi < 0) | (v_lo > cam.height - 1)
        # no pixel centre inside the bounding box: nothing to draw
        empty = (np.ceil(u_lo) > np.floor(u_hi)) | (np.ceil(v_lo) > np.floor(v_hi))
        vis &= ~(front & (outside | empty))
        bshade = np.tile(FACE_SHADE, nb)
        color = np.concatenate(
            [np.repeat(self.box_color[keep], 6, 0) * bshade[:, None], self.sq_color[sel]], 0
        )
        em = np.concatenate([np.repeat(self.box_em[keep], 6), np.zeros(len(sq), bool)])
        color[:nq][np.repeat(self.box_em[keep], 6)] = np.repeat(
            self.box_color[keep][self.box_em[keep]], 6, 0
        ).reshape(-1, 3)
        mat = np.concatenate([np.repeat(self.box_mat[keep], 6), self.sq_mat[sel]])
        obj = np.concatenate([np.repeat(self.box_obj[keep], 6), np.zeros(len(sq), np.int64)])
        owner = np.concatenate([np.repeat(self.box_owner[keep], 6), np.zeros(len(sq), np.int64)])
        tex = np.concatenate([np.full((nq, 4, 2), np.nan), self.sq_tex[sel]], 0)
        sid = np.concatenate([np.full(nq, -1, np.int64), np.nonzero(sel)[0]])
        pcv = allq[vis]
        uv = np.stack([u[vis], v[vis]], 2)
        plane = plane_coefficients(pcv, cam) if len(pcv) else np.zeros((0, 3))
        fv = front[vis]
        tv = tex[vis]
        texcoef = np.full((len(pcv), 4, 2), np.nan)
        has = ~np.isnan(tv[:, 0, 0]) & ~fv  # only clipped facades are textured per pixel
        if has.any():
            texcoef[has] = facade_coefficients(pcv[has], tv[has])
        box = np.zeros((len(pcv), 4), np.int64)
        pts = np.zeros((len(pcv), 4, 2), np.int32)
        corners = np.zeros((len(pcv), 4, 2), np.float32)
        if fv.any():
            box[fv] = pixel_box(uv[fv], cam)
            rel = uv[fv] - box[fv][:, None, :2]
            pts[fv] = np.round(rel * (1 << SHIFT)).astype(np.int32)
            corners[fv] = rel.astype(np.float32)
        return Quads(
            pcv,
            color[vis],
            mat[vis],
            obj[vis],
            owner[vis],
            em[vis],
            tex[vis],
            front[vis],
            uv,
            plane,
            box,
            texcoef,
            sid[vis],
            pts,
            corners,
        )
