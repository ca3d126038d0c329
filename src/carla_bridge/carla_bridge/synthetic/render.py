"""Camera model and z-buffered polygon rasteriser of the synthetic generator.

Depth is kept as inverse depth ``1/Z`` (camera Z axis), which is exactly linear in the pixel
coordinates over a planar polygon, so per-pixel depth of every face costs one multiply-add per
pixel. The rasteriser writes colour, material, object id and inverse depth; ``0`` inverse depth is
the sky (infinitely far).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from carla_bridge.frame import CameraModel
from carla_bridge.synthetic.kernels import HAVE_NUMBA, ztest_fill
from carla_bridge.synthetic.kernels import facade as facade_kernel
from carla_bridge.synthetic.warp import block_size, warp_fill
from carla_bridge.synthetic.world import World

NEAR = 0.3  # near clipping plane (m)
SHIFT = 4  # sub-pixel bits for cv2.fillPoly
M_SKY, M_ROAD, M_SIDEWALK, M_GRASS, M_BUILDING, M_TRUNK, M_CROWN = 0, 1, 2, 3, 4, 5, 6


@dataclass
class CameraState:
    """Intrinsics plus the road-relative pose of the camera in one frame.

    Pixel centres are at integer coordinates: pixel ``(row v, column u)`` sees the ray through
    ``((u - cx) / fx, (v - cy) / fy, 1)``.
    """

    cam: CameraModel
    height: float  # above the road
    pitch: float  # rad, positive = down
    s: float
    d: float
    psi: float  # yaw relative to the road tangent (rad)
    theta: float  # road heading at s
    xc: float
    elev: float

    def drift(self, world: World, z: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``C(z)`` lateral drift of the centre line and ``E(s+z) - E(s)`` at forward distance z.

        ``z`` is the distance along the road ahead of the camera.
        """
        xc, el = world.drift_elev(self.s + z)
        return xc - self.xc - self.theta * z, el - self.elev

    def to_camera(
        self, world: World, s: np.ndarray, d: np.ndarray, h: np.ndarray
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Road coordinates -> camera coordinates (x right, y down, z forward)."""
        zp = s - self.s
        c, e = self.drift(world, zp)
        xp = d - self.d + c - self.psi * zp
        yp = self.height - h - e
        cp, sp = np.cos(self.pitch), np.sin(self.pitch)
        return xp, yp * cp - zp * sp, yp * sp + zp * cp

    def to_road(
        self, world: World, x: np.ndarray, y: np.ndarray, z: np.ndarray
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Camera coordinates -> road coordinates (inverse of :meth:`to_camera`)."""
        cp, sp = np.cos(self.pitch), np.sin(self.pitch)
        yp = y * cp + z * sp
        zp = -y * sp + z * cp
        c, e = self.drift(world, zp)
        return zp + self.s, x + self.d - c + self.psi * zp, self.height - yp - e

    def pose(self, world: World) -> np.ndarray:
        """4x4 camera-to-world transform (world: x east, y north, z up; road starts at origin)."""
        heading = self.theta + self.psi
        s_idx = world.s_grid
        # world position of the centre line by integrating the heading
        ds = np.diff(s_idx, prepend=s_idx[0])
        wx = np.cumsum(np.sin(world.theta) * ds)
        wy = np.cumsum(np.cos(world.theta) * ds)
        x = np.interp(self.s, s_idx, wx) + self.d * np.cos(self.theta)
        y = np.interp(self.s, s_idx, wy) - self.d * np.sin(self.theta)
        z = self.elev + self.height
        fwd = np.array([np.sin(heading), np.cos(heading), 0.0])
        right = np.array([np.cos(heading), -np.sin(heading), 0.0])
        down = np.array([0.0, 0.0, -1.0])
        cp, sp = np.cos(self.pitch), np.sin(self.pitch)
        fwd, down = fwd * cp + down * sp, down * cp - fwd * sp
        out = np.eye(4)
        out[:3, 0], out[:3, 1], out[:3, 2], out[:3, 3] = right, down, fwd, (x, y, z)
        return out


EM_SHIFT, MAT_SHIFT = 23, 24  # packing of ``Raster.ident``
EM_BIT, OBJ_MASK = 1 << EM_SHIFT, (1 << EM_SHIFT) - 1


class Raster:
    """Colour, material, object id and inverse-depth buffers of one frame.

    Object id, emissive flag and material of a pixel are drawn as one int32,
    ``ident = obj | emissive << 23 | mat << 24`` (one masked write per polygon instead of
    three); :attr:`obj`, :attr:`emissive` and :attr:`mat` unpack it once drawing is done.
    """

    def __init__(
        self, cam: CameraModel, background: Optional[np.ndarray] = None, deferred: bool = False
    ) -> None:
        """Empty buffers; ``background`` (H x W x 3) is the colour of pixels nothing covers.

        ``deferred``: the buffers are left uninitialised until :meth:`init_rows` (the ground
        pass writes every pixel of the rows it covers, so only the rows above it need the
        background).
        """
        h, w = cam.height, cam.width
        self.cam = cam
        self._background = background
        self._deferred = deferred
        if deferred:
            self.invz = np.empty((h, w), np.float32)
            self.color = np.empty((h, w, 3), np.float32)
            self.ident = np.empty((h, w), np.int32)
        else:
            self.invz = np.zeros((h, w), np.float32)
            if background is None:
                self.color = np.zeros((h, w, 3), np.float32)
            else:
                self.color = background.copy()
            self.ident = np.zeros((h, w), np.int32)
        self.night = False  # lit windows on facades
        self.compiled = HAVE_NUMBA  # fill with the numba kernel (else the cv2 calls)
        self._cache: dict = {}  # images derived from the buffers, valid once drawing is done

    def init_rows(self, rows: int) -> None:
        """Initialise rows ``0..rows-1`` of deferred buffers (background, no depth, no id); the
        caller writes every pixel of the rows below. Without ``deferred`` this does nothing."""
        if not self._deferred:
            return
        self._deferred = False
        self.invz[:rows] = 0
        self.ident[:rows] = 0
        if self._background is None:
            self.color[:rows] = 0
        else:
            self.color[:rows] = self._background[:rows]

    def _derived(self, name: str) -> np.ndarray:
        got = self._cache.get(name)
        if got is None:
            if name == "depth":
                got = 1.0 / np.maximum(self.invz, np.float32(1e-6))
            elif name == "obj":
                got = self.ident & OBJ_MASK
            elif name == "objf":
                got = self.obj.astype(np.float32)
            elif name == "mat":
                got = (self.ident >> MAT_SHIFT).astype(np.uint8)
            else:
                got = (self.ident & EM_BIT).astype(bool)
            self._cache[name] = got
        return got

    def depth(self) -> np.ndarray:
        """Camera depth ``1 / max(invz, 1e-6)`` (float32; the sky is 1e6 m)."""
        return self._derived("depth")

    @property
    def obj(self) -> np.ndarray:
        """int32 object id per pixel (0 = scenery / sky)."""
        return self._derived("obj")

    @property
    def objf(self) -> np.ndarray:
        """The object ids as float32 (exact below 2**24; for cv2 remap / compare)."""
        return self._derived("objf")

    @property
    def mat(self) -> np.ndarray:
        """uint8 material per pixel (``M_*``)."""
        return self._derived("mat")

    @property
    def emissive(self) -> np.ndarray:
        """bool: the pixel emits light (vehicle lights, lit windows)."""
        return self._derived("emissive")

    def fill(
        self,
        pts: np.ndarray,
        box: Sequence[int],
        iz_rows: np.ndarray,
        iz_cols: np.ndarray,
        color: Tuple[float, float, float, float],
        ident: int,
        texture: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None,
        corners: Optional[np.ndarray] = None,
    ) -> None:
        """:meth:`polygon` for a polygon entirely in front of the near plane, from precomputed
        values (see :meth:`SceneGeometry.quads`): the same pixels and values, in fewer calls.

        ``pts`` are the vertices relative to the pixel ``box`` in fixed point (``SHIFT`` bits);
        with the inverse-depth plane ``(a, b, k)`` rounded to float32, ``iz_rows`` holds
        ``b v + k`` of the box rows (a column vector) and ``iz_cols`` ``a u`` of its columns
        (float32), ``color`` is a cv2 scalar and ``ident`` the packed id (see the class).
        ``texture`` (from :func:`facade_texture`) needs ``corners``, the float32 vertices
        relative to the box.
        The masks are 0 / 255 ``uint8`` images so that every masked write is one cv2 call on
        the box (numpy's masked copies are several times slower on all but the smallest boxes).
        """
        x0, y0, x1, y1 = box
        hh, ww = y1 - y0, x1 - x0
        m = np.zeros((hh, ww), np.uint8)
        cv2.fillPoly(m, [pts], 255, cv2.LINE_8, SHIFT)
        if self.compiled:  # z-test and flat fill in one kernel call (same values)
            paint = texture is None
            label = paint or not self.night
            args = (y0, x0, color[0], color[1], color[2], ident, paint, label)
            if not ztest_fill(m, iz_rows, iz_cols, self.invz, self.color, self.ident, *args):
                return
            if not paint:
                self.paint_texture(m, box, texture, corners, ident)
            return
        iz = iz_rows + iz_cols
        zb = self.invz[y0:y1, x0:x1]
        cv2.bitwise_and(m, cv2.compare(iz, zb, cv2.CMP_GT), dst=m)  # z-test (NaN fails)
        if not cv2.countNonZero(m):
            return
        cv2.copyTo(iz, m, zb)
        col = self.color[y0:y1, x0:x1]
        ids = self.ident[y0:y1, x0:x1]
        if texture is not None:
            # planar facade: warp its texture with the quad's homography (one C call)
            rgb, lit, src = texture
            hom = cv2.getPerspectiveTransform(src, corners)
            flags, border = cv2.INTER_LINEAR, cv2.BORDER_REPLICATE
            cv2.copyTo(
                cv2.warpPerspective(rgb, hom, (ww, hh), flags=flags, borderMode=border), m, col
            )
            if self.night:  # lit windows: the emissive bit per pixel
                flags = cv2.INTER_NEAREST
                on = cv2.warpPerspective(lit, hom, (ww, hh), flags=flags, borderMode=border)
                cv2.copyTo((on.astype(np.int32) << EM_SHIFT) | ident, m, ids)
                return
        else:
            cv2.add(np.zeros((hh, ww, 3), np.float32), color, dst=col, mask=m)
        cv2.add(np.zeros((hh, ww), np.int32), ident, dst=ids, mask=m)

    def paint_texture(
        self,
        m: np.ndarray,
        box: Sequence[int],
        texture: Tuple[np.ndarray, np.ndarray, np.ndarray],
        corners: np.ndarray,
        ident: int,
    ) -> None:
        """Colour of the pixels of ``m`` (0 / 255 box mask: those that passed the z-test) from a
        facade texture warped with the quad's homography (:func:`warp.warp_fill` at those
        pixels, else one cv2 call on the box); at night also the ident with the emissive bit of
        lit windows (by day the caller wrote the ident)."""
        x0, y0, x1, y1 = box
        hh, ww = y1 - y0, x1 - x0
        rgb, lit, src = texture
        hom = cv2.getPerspectiveTransform(src, corners)
        flags, border = cv2.INTER_LINEAR, cv2.BORDER_REPLICATE
        block = block_size() if self.compiled else 0
        if block:  # the same warp, evaluated only at the drawn pixels
            warp_fill(m, rgb, cv2.invert(hom)[1].reshape(-1), y0, x0, block, self.color)
        else:
            warped = cv2.warpPerspective(rgb, hom, (ww, hh), flags=flags, borderMode=border)
            cv2.copyTo(warped, m, self.color[y0:y1, x0:x1])
        if self.night:  # lit windows: the emissive bit per pixel
            flags = cv2.INTER_NEAREST
            on = cv2.warpPerspective(lit, hom, (ww, hh), flags=flags, borderMode=border)
            cv2.copyTo((on.astype(np.int32) << EM_SHIFT) | ident, m, self.ident[y0:y1, x0:x1])

    def polygon(
        self,
        pc: np.ndarray,
        color: np.ndarray,
        mat: int,
        obj: int,
        emissive: bool = False,
        full: Optional[List[np.ndarray]] = None,
        tex: Optional[np.ndarray] = None,
        uv: Optional[np.ndarray] = None,
        plane: Optional[np.ndarray] = None,
        box: Optional[List[int]] = None,
        texcoef: Optional[np.ndarray] = None,
        texture: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None,
    ) -> None:
        """Z-test and draw a planar polygon given as camera-space vertices ``pc`` (N x 3).

        ``uv`` / ``plane`` (projected vertices, inverse-depth plane ``1/Z = a u + b v + k``) may
        be passed precomputed for polygons entirely in front of the near plane, and ``box`` (pixel
        box ``x0, y0, x1, y1`` from :func:`pixel_box`) with them.

        ``full``, when given, collects the near-clipped projected vertices (for unclipped masks).
        ``tex`` (N x 2 facade coordinates along/up, metres) paints a window grid; ``texcoef``
        (from :func:`facade_coefficients`) may be passed precomputed. ``texture`` (from
        :func:`facade_texture`) replaces that per-pixel evaluation for unclipped polygons.
        """
        src = pc
        cam = self.cam
        uv_given = uv is not None and plane is not None
        if uv is None or plane is None:
            pc = clip_near(pc)
            if pc.shape[0] < 3:
                return
            uv = np.stack(
                [pc[:, 0] / pc[:, 2] * cam.fx + cam.cx, pc[:, 1] / pc[:, 2] * cam.fy + cam.cy], 1
            )
            plane = plane_coefficients(pc[None], cam)[0]
        if full is not None:
            full.append(uv)
        a, b, k = plane
        if not np.isfinite(k):
            return
        if box is None:
            box = pixel_box(uv[None], cam)[0].tolist()
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            return
        pts = np.round((uv - (x0, y0)) * (1 << SHIFT)).astype(np.int32)
        us = np.arange(x0, x1, dtype=np.float32)
        vs = np.arange(y0, y1, dtype=np.float32)
        rows, cols = vs[:, None] * np.float32(b) + np.float32(k), us * np.float32(a)
        if tex is None or np.isnan(tex[0, 0]) or (texture is not None and uv_given):
            # flat or texture-mapped: the cv2 path (same pixels and values)
            rgb = tuple(float(c) for c in np.asarray(color, np.float32)) + (0.0,)
            ident = obj | (EM_BIT if emissive else 0) | mat << MAT_SHIFT
            corners = (uv - (x0, y0)).astype(np.float32)
            self.fill(pts, box, rows, cols, rgb, ident, texture if uv_given else None, corners)
            return
        # clipped facade: window grid evaluated per pixel
        canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(canvas, [pts], 1, cv2.LINE_8, SHIFT)
        iz = rows + cols
        zb = self.invz[y0:y1, x0:x1]
        m = canvas.view(bool)  # fillPoly wrote 0 / 1
        m &= iz > zb
        if not m.any():
            return
        np.copyto(zb, iz, where=m)
        # facade coordinates are affine on the plane: attr = alpha . P + beta; in units of
        # the window grid (3.2 m wide, 3.3 m high cells) to get the cell and its fraction
        coef = texcoef if texcoef is not None else facade_coefficients(src[None], tex[None])[0]
        vi, ui = np.nonzero(m)
        xn = (ui + (x0 - cam.cx)).astype(np.float32) * np.float32(1.0 / cam.fx)
        yn = (vi + (y0 - cam.cy)).astype(np.float32) * np.float32(1.0 / cam.fy)
        zz = 1.0 / iz[m]
        c = coef.astype(np.float32)
        along = (c[0, 0] * xn + c[1, 0] * yn + c[2, 0]) * zz + c[3, 0]
        up = (c[0, 1] * xn + c[1, 1] * yn + c[2, 1]) * zz + c[3, 1]
        ca, cu = np.floor(along), np.floor(up)
        fa, fu = along - ca, up - cu
        win = (fa > np.float32(1.0 / 3.2)) & (fu > np.float32(1.1 / 3.3))
        win &= (fu < np.float32(2.6 / 3.3)) & (cu >= 0)
        pix = np.empty((len(zz), 3), np.float32)
        pix[:] = color
        pix[win] = (0.14, 0.17, 0.23)
        lit = np.zeros(len(zz), bool)
        if self.night:
            cell = np.sin(ca * np.float32(12.9898) + cu * np.float32(78.233)) * 43758.5453
            lit = win & (cell - np.floor(cell) > 0.55)
            pix[lit] = (0.75, 0.62, 0.4)
        self.color[y0:y1, x0:x1][m] = pix
        self.ident[y0:y1, x0:x1][m] = (obj | mat << MAT_SHIFT) | (lit.astype(np.int32) << EM_SHIFT)


TEX_RES = 8.0  # facade texture pixels per metre


def facade_texture(
    tex: np.ndarray, color: np.ndarray, night: bool
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window-grid texture of one facade quad: (RGB float32, emissive uint8, 4 corner texels).

    ``tex`` holds the quad's 4 facade coordinates (along, up) in metres; the pattern is the one
    :meth:`Raster.polygon` evaluates per pixel (3.2 x 3.3 m cells, lit windows at night).
    """
    a0, a1 = float(tex[:, 0].min()), float(tex[:, 0].max())
    top = float(tex[:, 1].max())
    nw = int(np.ceil((a1 - a0) * TEX_RES)) + 1
    nh = int(np.ceil((top - float(tex[:, 1].min())) * TEX_RES)) + 1
    along = (a0 + (np.arange(nw, dtype=np.float32) + 0.5) / TEX_RES)[None, :] / np.float32(3.2)
    up = (top - (np.arange(nh, dtype=np.float32) + 0.5) / TEX_RES)[:, None] / np.float32(3.3)
    ca, cu = np.floor(along), np.floor(up)
    fa, fu = along - ca, up - cu
    # window = column test & row test (separable: one small vector each, then one 2-D pass)
    col_in = fa > np.float32(1.0 / 3.2)
    row_in = (fu > np.float32(1.1 / 3.3)) & (fu < np.float32(2.6 / 3.3)) & (cu >= 0)
    win = row_in & col_in
    lit = np.zeros((nh, nw), bool)
    if night and win.any():
        # the lit pattern per window cell: evaluated on the rows / columns that hold windows
        # (the same float32 sin as on the full grid, far fewer values)
        rows, cols = np.flatnonzero(row_in), np.flatnonzero(col_in[0])
        cell = np.sin(ca[:, cols] * np.float32(12.9898) + cu[rows] * np.float32(78.233))
        cell *= 43758.5453
        lit[np.ix_(rows, cols)] = cell - np.floor(cell) > 0.55
    glass = np.array((0.14, 0.17, 0.23), np.float32)
    lamp = np.array((0.75, 0.62, 0.4), np.float32)
    wall = np.asarray(color, np.float32)
    if HAVE_NUMBA:
        rgb = np.empty((nh, nw, 3), np.float32)
        facade_kernel(row_in[:, 0], col_in[0], lit if night else lit[:0], wall, glass, lamp, rgb)
    else:
        rgb = np.empty((nh, nw, 3), np.float32)
        rgb[:] = wall
        rgb[win] = glass
        rgb[lit] = lamp
    src = np.stack([(tex[:, 0] - a0) * TEX_RES, (top - tex[:, 1]) * TEX_RES], 1)
    return rgb, lit.astype(np.uint8), src.astype(np.float32)


def facade_coefficients(pc: np.ndarray, tex: np.ndarray) -> np.ndarray:
    """Per polygon (M x N x 3 camera space) the 4 x 2 affine map ``[P, 1] -> tex / cell``.

    Texture coordinates are divided by the window-grid cell (3.2 m along, 3.3 m up).
    """
    a = np.concatenate([pc, np.ones(pc.shape[:2] + (1,))], 2)
    t = tex / np.array([3.2, 3.3])
    return np.linalg.pinv(a) @ t


def _fold(a: np.ndarray, op: np.ufunc) -> np.ndarray:
    """``op`` folded over axis 1 of ``a`` one slice at a time, left to right."""
    out = a[:, 0].copy()
    for k in range(1, a.shape[1]):
        op(out, a[:, k], out=out)
    return out


def row_min(a: np.ndarray) -> np.ndarray:
    """``a.min(1)`` (NaN propagates alike) for a few columns: on the short axes of per-quad
    corner arrays numpy's axis reduction costs mostly its set-up; a few whole-column ufunc
    calls cost less."""
    return _fold(a, np.minimum)


def row_max(a: np.ndarray) -> np.ndarray:
    """``a.max(1)``, as :func:`row_min`."""
    return _fold(a, np.maximum)


def row_mean(a: np.ndarray) -> np.ndarray:
    """``a.mean(1)``: the same left-to-right sum numpy makes along a short strided axis, then
    the division (bit-identical, tested), as :func:`row_min`."""
    out = _fold(a, np.add)
    out /= a.shape[1]
    return out


def pixel_box(uv: np.ndarray, cam: CameraModel) -> np.ndarray:
    """Clipped pixel boxes ``(x0, y0, x1, y1)`` (exclusive ends) of projected polygons M x N x 2.

    fillPoly also sets pixels its edges touch, so the box keeps one pixel of margin.
    """
    lo = np.floor(row_min(uv))
    hi = np.ceil(row_max(uv)) + 1
    out = np.empty((len(uv), 4), np.int64)
    out[:, 0] = np.clip(lo[:, 0], 0, cam.width)
    out[:, 1] = np.clip(lo[:, 1], 0, cam.height)
    out[:, 2] = np.clip(hi[:, 0], 0, cam.width)
    out[:, 3] = np.clip(hi[:, 1], 0, cam.height)
    return out


def plane_coefficients(pc: np.ndarray, cam: CameraModel) -> np.ndarray:
    """``(a, b, k)`` with ``1/Z = a u + b v + k`` for each planar polygon in ``pc`` (M x N x 3).

    Degenerate (edge-on) polygons get ``k = inf``.
    """
    e1 = pc[:, 2] - pc[:, 0]
    e2 = pc[:, -1] - pc[:, 1] if pc.shape[1] > 3 else pc[:, 1] - pc[:, 0]
    # e1 x e2 written out (np.cross computes the same products and differences, slower)
    n = np.empty_like(e1)
    for k, (i, j) in enumerate(((1, 2), (2, 0), (0, 1))):
        np.subtract(e1[:, i] * e2[:, j], e1[:, j] * e2[:, i], out=n[:, k])
    c = np.einsum("ij,ij->i", n, pc[:, 0])
    bad = np.abs(c) < 1e-9
    c = np.where(bad, 1.0, c)
    out = np.stack(
        [
            n[:, 0] / (c * cam.fx),
            n[:, 1] / (c * cam.fy),
            (n[:, 2] - n[:, 0] * cam.cx / cam.fx - n[:, 1] * cam.cy / cam.fy) / c,
        ],
        1,
    )
    out[bad, 2] = np.inf
    return out


def clip_near(pc: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon against the plane ``z = NEAR``."""
    inside = pc[:, 2] >= NEAR
    if inside.all():
        return pc
    if not inside.any():
        return pc[:0]
    out = []
    n = pc.shape[0]
    for i in range(n):
        a, b = pc[i], pc[(i + 1) % n]
        ia, ib = a[2] >= NEAR, b[2] >= NEAR
        if ia:
            out.append(a)
        if ia != ib:
            t = (NEAR - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out)
