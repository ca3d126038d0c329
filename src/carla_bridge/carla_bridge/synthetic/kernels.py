"""Compiled (numba) inner loops of the rasteriser, with the numpy / cv2 code they replace.

Each kernel does exactly the float32 / int32 operations of the cv2 calls it replaces, in the
same order, so the images and labels are the same bytes with or without numba. Numba is
optional: without it :data:`HAVE_NUMBA` is false and :class:`~.render.Raster` keeps its cv2
path (slower: about ten small cv2 calls per polygon instead of one kernel call).

Compiled code is cached on disk (``cache=True``: next to this file, or where
``NUMBA_CACHE_DIR`` points), so only the first run on a machine pays the compilation (a few
seconds); later processes load it in milliseconds. :func:`warm_up` loads or compiles every
kernel once, e.g. in a parent process before it forks workers.
"""

from __future__ import annotations

import numpy as np

try:
    import numba
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - depends on the environment
    numba = None
    HAVE_NUMBA = False

if HAVE_NUMBA:

    @intrinsic
    def fma32(typingctx, a, b, c):  # noqa: ANN001, ANN201, ARG001
        """Fused multiply-add ``a * b + c`` of float32 values, rounded once (LLVM's fma, as the
        SIMD code of cv2.scaleAdd / cv2.addWeighted computes it)."""
        sig = types.float32(types.float32, types.float32, types.float32)

        def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202, ARG001
            f = ir.FloatType()
            fnty = ir.FunctionType(f, [f, f, f])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.fma.f32")
            return builder.call(fn, args)

        return sig, codegen

else:  # pragma: no cover

    def fma32(a, b, c):  # noqa: ANN001, ANN201
        return np.float32(np.float64(a) * np.float64(b) + np.float64(c))


def _ztest_fill(m, iz_rows, iz_cols, invz, color, ident, y0, x0, r, g, b, idv, paint, label):
    """Z-test and draw the covered pixels of a polygon's box ``m`` at ``(y0, x0)``.

    ``m`` (uint8 box, nonzero = covered by the polygon, from ``cv2.fillPoly``) is rewritten to
    255 where the pixel passed the depth test and 0 elsewhere; returns how many passed. A pixel
    passes when its inverse depth ``iz_rows[r, 0] + iz_cols[c]`` (float32) is greater than
    ``invz`` (NaN fails); it then gets that inverse depth, the colour ``(r, g, b)`` (rounded to
    float32) when ``paint`` and the ident ``idv`` when ``label``.
    """
    hh, ww = m.shape
    c0, c1, c2 = np.float32(r), np.float32(g), np.float32(b)
    color2 = color.reshape(color.shape[0], 3 * color.shape[1])
    n = 0
    for i in range(hh):
        zr, mr, cr, ir = invz[y0 + i], m[i], color2[y0 + i], ident[y0 + i]
        br = iz_rows[i, 0]
        for j in range(ww):
            if mr[j] == 0:
                continue
            x = x0 + j
            iz = br + iz_cols[j]
            if iz > zr[x]:
                zr[x] = iz
                mr[j] = 255
                n += 1
                if paint:
                    cr[3 * x] = c0
                    cr[3 * x + 1] = c1
                    cr[3 * x + 2] = c2
                if label:
                    ir[x] = idv
            else:
                mr[j] = 0
    return n


def _draw_quads(start, kinds, geo, masks, iz, colors, idents, night, bufs):
    """Z-test and draw quads ``start, start + 1, ...`` in order until one needs Python.

    ``kinds``: 0 skip, 1 flat quad (drawn here), 2 textured quad (z-tested here, inverse depth
    and, by day, ident written; its colour needs a warp), 3 clipped polygon (drawn by Python).
    ``geo`` rows are (y0, x0, height, width, mask offset, iz row offset, iz column offset) of
    each quad's pixel box; ``masks`` the concatenated box masks (0 / 255, from fillPoly: on
    return a textured quad's mask holds the pixels that passed); ``iz`` = (inverse depth of the
    box rows, of the box columns) as in :func:`_ztest_fill`; ``bufs`` = (inverse depth, colour,
    ident) of the raster. Returns ``(i, n)``: the quad that needs Python (textured with ``n``
    pixels drawn, or clipped) or ``(len(kinds), 0)`` when all are done.
    """
    izv, izu = iz
    invz, color, ident = bufs
    for i in range(start, len(kinds)):
        kind = kinds[i]
        if kind == 0:
            continue
        if kind == 3:
            return i, 0
        g = geo[i]
        y0, x0, hh, ww, mo, ro, co = g[0], g[1], g[2], g[3], g[4], g[5], g[6]
        m = masks[mo : mo + hh * ww].reshape(hh, ww)
        rows = izv[ro : ro + hh].reshape(hh, 1)
        flat = kind == 1
        c = colors[i]
        n = ztest_fill(m, rows, izu[co : co + ww], invz, color, ident, y0, x0, c[0], c[1], c[2],
                       idents[i], flat, flat or not night)  # fmt: skip
        if n and not flat:
            return i, n
    return len(kinds), 0


def _ground(xn, zc, offset, s_row, px, tex, lim, shade, tints, mats, shadow, top, out):
    """Per-pixel ground shading of ``shade.render_ground`` (rows ``top..``), one pass.

    ``lim`` = (half width, curb edge, verge edge) as float32; ``shade`` = (asphalt, rural,
    shadow factor, use shadow); ``shadow`` the uint8 H x W shadow mask. Writes ``out`` =
    (d, grain, colour, ident, inverse depth, road mask): d and the faded grain per ground pixel
    (float32 rows x W, used by the lane painting), and the raster's buffers.
    """
    d_out, grain_out, color, ident, invz, road = out
    half, edge, outer = lim
    asphalt, rural, shadow_f, use_shadow = shade
    f32 = np.float32
    sc_fine, sc_patch = f32(24.0), f32(0.7)
    nr, w = d_out.shape
    color2 = color.reshape(color.shape[0], 3 * w)
    tint = tints.reshape(-1)
    for i in range(nr):  # row views: simple 1-D loops
        y = top + i
        zr = zc[i]
        off = offset[i]
        srow = s_row[i]
        row_fine = (np.int64(np.int32(srow * sc_fine)) & 511) * 512
        row_patch = (np.int64(np.int32(srow * sc_patch)) & 511) * 512
        fade = min(max(f32(1.5) - px[i] * f32(24.0), f32(0.0)), f32(1.0))
        tile = f32(np.int64(np.int32(srow * f32(2.0))) & 1) * f32(0.04)
        iz = f32(1.0 / zr)
        d_row, g_row, c_row = d_out[i], grain_out[i], color2[y]
        id_row, iz_row, rd_row, sh_row = ident[y], invz[y], road[y], shadow[y if use_shadow else 0]
        for j in range(w):
            dd = f32(xn[j] * zr + off)
            ad = abs(dd)
            g = tex[row_fine + (np.int64(np.int32(dd * sc_fine)) & 511)]
            p = tex[row_patch + (np.int64(np.int32(dd * sc_patch)) & 511)]
            g = (g - f32(0.5)) * fade + f32(0.5)
            zone = np.int64(ad >= half) + np.int64(ad >= edge) + np.int64(ad >= outer)
            lum = g * f32(0.25) + f32(0.8)
            lum = lum + (p - f32(0.5)) * f32(0.25)
            lum = lum * asphalt
            if zone == 1:
                lum = f32(0.45) if rural else f32(0.7)
            elif zone == 2:
                lum = f32(0.42) + f32(0.06) * g if rural else f32(0.5) + f32(0.15) * g + tile
            elif zone == 3:
                lum = f32(0.7) + f32(0.6) * p
            if use_shadow and sh_row[j] > 0:
                lum = lum * shadow_f
            d_row[j] = dd
            g_row[j] = g
            c_row[3 * j] = lum * tint[3 * zone]
            c_row[3 * j + 1] = lum * tint[3 * zone + 1]
            c_row[3 * j + 2] = lum * tint[3 * zone + 2]
            id_row[j] = mats[zone]
            iz_row[j] = iz
            rd_row[j] = ad < half


def _exp_args(invz, xn, night, fog, fog_vis, cone_arg, cone_clip, trans_arg):
    """The float32 arguments of the two exponentials of ``effects.compose`` in one pass (the
    exponentials themselves stay numpy's): with the depth ``z = 1 / max(invz, 1e-6)``, when
    ``night`` the headlight cone's ``-(|xn z| / (0.28 z + 0.9))**2`` and ``clip(1 - z / 70, 0,
    1)``, with ``fog`` the transmittance's ``-z / fog_vis``."""
    f32 = np.float32
    h, w = invz.shape
    eps, zero, one = f32(1e-6), f32(0.0), f32(1.0)
    for i in range(h):  # (the flags are tested per row: branch-free inner loops)
        izr = invz[i]
        if night:
            ca, cc = cone_arg[i], cone_clip[i]
            for j in range(w):
                z = one / max(izr[j], eps)
                q = abs(xn[j] * z) / (f32(0.28) * z + f32(0.9))
                ca[j] = -(q * q)
                cc[j] = min(max(one - z / f32(70.0), zero), one)
        if fog:
            ta = trans_arg[i]
            for j in range(w):
                ta[j] = -(one / max(izr[j], eps)) / fog_vis


def _light(color, ident, em_bit, light, amb, fog, trans, fog_col, glare, rain, img):
    """Lighting of ``effects.compose`` up to the blur; writes ``img`` (H x W x 3).

    Per pixel: albedo times the light (``light`` H x W headlight cone with ``amb`` = (tint x 3,
    ambient x 3) when ``light`` has rows, else the ambient), emissive pixels (``ident &
    em_bit``) at ``255 * albedo``; with ``fog`` the blend ``img * trans + (1 - trans) *
    fog_col``; then ``+ glare`` when ``glare`` has rows and ``* rain`` when ``rain`` > 0.
    Row by row, one simple loop per step (vectorised by LLVM, the row stays in cache).
    """
    f32 = np.float32
    h, w = ident.shape
    w3 = 3 * w
    col2 = color.reshape(h, w3)
    img2 = img.reshape(h, w3)
    glare2 = glare.reshape(glare.shape[0], 3 * glare.shape[1])
    lamp = np.empty(w3, f32)
    for x in range(w):
        for k in range(3):
            lamp[3 * x + k] = amb[3 + k]
    t0, t1, t2 = amb[0], amb[1], amb[2]
    a0, a1, a2 = amb[3], amb[4], amb[5]
    f0, f1, f2 = fog_col[0], fog_col[1], fog_col[2]
    em, k255 = np.int32(em_bit), f32(255.0)
    for y in range(h):
        src = col2[y]
        dst = img2[y]
        if light.shape[0] > 0:
            cone = light[y]
            for x in range(w):
                c = cone[x]
                lamp[3 * x] = c * t0 + a0
                lamp[3 * x + 1] = c * t1 + a1
                lamp[3 * x + 2] = c * t2 + a2
        ids = ident[y]
        any_em = 0
        for x in range(w):  # (a branch-free reduction; most rows have no emissive pixel)
            any_em |= ids[x] & em
        if any_em:
            for x in range(w):
                lit = (ids[x] & em) != 0
                for k in range(3):
                    dst[3 * x + k] = src[3 * x + k] * (k255 if lit else lamp[3 * x + k])
        else:
            for i in range(w3):
                dst[i] = src[i] * lamp[i]
        if fog:
            tr = trans[y]
            for x in range(w):
                t = tr[x]
                u = f32(1.0) - t
                dst[3 * x] = dst[3 * x] * t + u * f0
                dst[3 * x + 1] = dst[3 * x + 1] * t + u * f1
                dst[3 * x + 2] = dst[3 * x + 2] * t + u * f2
        if glare.shape[0] > 0:
            g = glare2[y]
            for i in range(w3):
                dst[i] = dst[i] + g[i]
        if rain > 0:
            for i in range(w3):
                dst[i] = dst[i] * rain


def _flow_pre(invz, xn, yn, trig, consts, zp, zp2, x2, y2):
    """The per-pixel start of ``SyntheticBackend._flow`` in one pass (float32, same order).

    Depth ``z = 1 / max(invz, 1e-6)``; with ``r = cp - yn sp`` per row (``trig`` = (cp, sp,
    theta + psi)) and ``consts`` = (s step, lateral step, elevation step) writes ``zp = z r``,
    ``zp2 = zp + s step``, ``x2 = z (xn + (theta + psi) r) + lateral step`` and
    ``y2 = z (yn cp + sp) + elevation step``.
    """
    f32 = np.float32
    cp, sp, a = trig
    c_s, c_x, c_y = consts
    h, w = invz.shape
    eps = f32(1e-6)
    for i in range(h):
        r = cp - yn[i] * sp
        q = yn[i] * cp + sp
        ar = a * r
        for j in range(w):
            z = f32(1.0) / max(invz[i, j], eps)
            v = z * r
            zp[i, j] = v
            zp2[i, j] = v + c_s
            x2[i, j] = z * (xn[j] + ar) + c_x
            y2[i, j] = z * q + c_y


def _madd(a, b, c, fused):  # noqa: ANN001, ANN202
    """``a * b + c`` in float32 as cv2's SIMD code computes it on this CPU: one rounding
    (:func:`fma32`) where cv2 dispatches to FMA3 code (AVX2 and up), two (multiply, then add:
    its SSE code) where ``fused`` is false; :func:`~.calibrate.flow_fused` tells which."""
    return fma32(a, b, c) if fused else a * b + c


def _flow_mid(x2, zp2, y2, invz, coef, u2, v2, zc2, ok, fused):
    """The middle of ``SyntheticBackend._flow``: previous-camera coordinates, projection and
    the validity tests before the occlusion test, in one pass.

    The same float32 operations as the cv2 calls it replaces (``scaleAdd`` / ``addWeighted``
    are multiply-adds there, fused or not as ``fused`` says: :func:`_madd`): ``coef`` =
    (-(theta + psi) of the previous frame, cos and sin of the pitch, near plane, fx, fy, cx, cy,
    width - 1, height - 1). Writes the pixel maps
    ``u2``, ``v2``, the previous camera depth ``zc2`` and ``ok`` (255: depth known, in front
    of the previous camera and inside its image, else 0).
    """
    f32 = np.float32
    a, cp, sp, near, fx, fy, cx, cy, wmax, hmax = coef
    zero, one = f32(0.0), f32(1.0)
    msp = -sp
    h, w = x2.shape
    for i in range(h):
        xr, zr, yr, izr = x2[i], zp2[i], y2[i], invz[i]
        ur, vr, zcr, okr = u2[i], v2[i], zc2[i], ok[i]
        for j in range(w):
            zp = zr[j]
            y = yr[j]
            x = madd(zp, a, xr[j], fused)  # scaleAdd(zp2, a, x2)
            yc = madd(y, cp, zp * msp, fused)  # addWeighted(y2, cp, zp2, -sp, 0)
            zc = madd(y, sp, zp * cp, fused)  # addWeighted(y2, sp, zp2, cp, 0)
            inv = one / max(zc, near)
            u = (fx * x) * inv + cx  # multiply(x2, inv2, scale=fx) + cx
            v = (fy * yc) * inv + cy
            good = (izr[j] > zero) and (zc > near)
            good = good and (u >= zero) and (u <= wmax) and (v >= zero) and (v <= hmax)
            ur[j] = u
            vr[j] = v
            zcr[j] = zc
            okr[j] = 255 if good else 0


def _bilinear(img, x, y, fused):
    """``img`` (float32, 2-D) at ``(x, y)`` inside it as ``cv2.remap`` INTER_LINEAR samples it
    (float weights ``x - floor(x)``, lerps by :func:`_madd`, x then y, edges replicated)."""
    ph, pw = img.shape
    xf, yf = np.floor(x), np.floor(y)
    ax, ay = x - xf, y - yf
    x0, y0 = int(xf), int(yf)
    x1, y1 = min(x0 + 1, pw - 1), min(y0 + 1, ph - 1)
    p00, p01 = img[y0, x0], img[y0, x1]
    p10, p11 = img[y1, x0], img[y1, x1]
    top = madd(ax, p01 - p00, p00, fused)
    bottom = madd(ax, p11 - p10, p10, fused)
    return madd(ay, bottom - top, top, fused)


def _remap_linear(img, u, v, fused, out):
    """:func:`_bilinear` at every ``(u, v)`` (float32 arrays of one shape) into ``out``."""
    uf, vf, of = u.reshape(-1), v.reshape(-1), out.reshape(-1)
    for k in range(uf.size):
        of[k] = bilinear(img, uf[k], vf[k], fused)


def _seen_before(prev_invz, prev_objf, x, y, zc, ob, lo, hi, fused):
    """Occlusion test of one pixel that projects to ``(x, y)`` in the previous frame (inside
    it): the previous inverse depth sampled as ``cv2.remap`` INTER_LINEAR does
    (:func:`_bilinear`) times ``zc`` within ``lo..hi``, and the same object id at the nearest
    pixel (round half to even, as INTER_NEAREST)."""
    r = bilinear(prev_invz, x, y, fused) * zc
    return r >= lo and r <= hi and prev_objf[int(np.rint(y)), int(np.rint(x))] == ob


def _flow_end(u2, v2, zc2, prev_invz, prev_objf, objf, ok, flow, valid, fused):
    """The end of ``SyntheticBackend._flow``: the occlusion test on top of ``ok`` and the flow.

    Where ``ok`` is set (the maps lie inside the previous image) the previous inverse depth
    is sampled bilinearly at ``(u2, v2)`` and the previous object id at the nearest pixel,
    exactly as ``cv2.remap`` computes them (INTER_LINEAR: :func:`_bilinear`; INTER_NEAREST:
    round half to even).
    Valid pixels need ``iz * zc2`` in 0.98..1.02 and the same object id; they get ``flow =
    (u2 - column, v2 - row)``, the others 0.
    """
    f32 = np.float32
    h, w = ok.shape
    zero, lo, hi = f32(0.0), f32(0.98), f32(1.02)
    flow2 = flow.reshape(h, 2 * w)
    for i in range(h):
        fi = f32(i)
        u, v, zc, ob = u2[i], v2[i], zc2[i], objf[i]
        o, dst, val = ok[i], flow2[i], valid[i]
        for j in range(w):
            good = False
            if o[j] != 0:
                good = seen_before(prev_invz, prev_objf, u[j], v[j], zc[j], ob[j], lo, hi,
                                   fused)  # fmt: skip
            dst[2 * j] = u[j] - f32(j) if good else zero
            dst[2 * j + 1] = v[j] - fi if good else zero
            val[j] = good


def _flow_mid_end(x2, zp2, y2, invz, coef, prev_invz, prev_objf, objf, flow, valid, fused):
    """:func:`_flow_mid` then :func:`_flow_end` per pixel in one pass (the same float32
    operations, without the intermediate maps): writes ``flow`` and ``valid``."""
    f32 = np.float32
    a, cp, sp, near, fx, fy, cx, cy, wmax, hmax = coef
    zero, one, lo, hi = f32(0.0), f32(1.0), f32(0.98), f32(1.02)
    msp = -sp
    h, w = x2.shape
    flow2 = flow.reshape(h, 2 * w)
    for i in range(h):
        fi = f32(i)
        xr, zr, yr, izr, ob = x2[i], zp2[i], y2[i], invz[i], objf[i]
        dst, val = flow2[i], valid[i]
        for j in range(w):
            zp = zr[j]
            y = yr[j]
            x = madd(zp, a, xr[j], fused)
            yc = madd(y, cp, zp * msp, fused)
            zc = madd(y, sp, zp * cp, fused)
            inv = one / max(zc, near)
            u = (fx * x) * inv + cx
            v = (fy * yc) * inv + cy
            good = (izr[j] > zero) and (zc > near)
            good = good and (u >= zero) and (u <= wmax) and (v >= zero) and (v <= hmax)
            if good:
                good = seen_before(prev_invz, prev_objf, u, v, zc, ob[j], lo, hi, fused)
            dst[2 * j] = u - f32(j) if good else zero
            dst[2 * j + 1] = v - fi if good else zero
            val[j] = good


def _object_boxes(obj, stats):
    """Tight box and pixel count of every object id ``1..len(stats) - 1`` in ``obj`` (what
    ``scipy.ndimage.find_objects`` and a count give): ``stats[k]`` = (row start, row stop,
    column start, column stop, pixels); ids without pixels keep count 0."""
    h, w = obj.shape
    n = stats.shape[0]
    for k in range(n):
        stats[k, 0], stats[k, 1], stats[k, 2], stats[k, 3], stats[k, 4] = h, 0, w, 0, 0
    for i in range(h):
        row = obj[i]
        for j in range(w):
            k = row[j]
            if k > 0 and k < n:
                st = stats[k]
                st[0] = min(st[0], i)
                st[1] = max(st[1], i + 1)
                st[2] = min(st[2], j)
                st[3] = max(st[3], j + 1)
                st[4] += 1


def _pixels_of(obj, wanted, out):
    """Flat indices of the pixels whose id ``k`` has ``wanted[k]`` (``np.flatnonzero(
    np.take(wanted, obj))``) into ``out`` (H * W); returns their number."""
    flat = obj.reshape(-1)
    n = 0
    for p in range(flat.shape[0]):
        if wanted[flat[p]]:
            out[n] = p
            n += 1
    return n


def _ground_labels(ident, line_id, road, keep, obj_mask, mat_shift, lo, hi, lane, drivable):
    """Lane instance mask and drivable mask of the visible ground in one pass.

    A pixel shows the ground when it holds no object (``ident & obj_mask == 0``) and its
    material (``ident >> mat_shift``) is in ``lo..hi``; there ``lane`` gets ``line_id`` when
    ``keep[line_id]`` (lines with a polyline), else 0, and ``drivable`` is ``road``.
    """
    h, w = ident.shape
    for i in range(h):
        idr, lr, rr, ln, dr = ident[i], line_id[i], road[i], lane[i], drivable[i]
        for j in range(w):
            v = idr[j]
            mat = v >> mat_shift
            vis = (v & obj_mask) == 0 and mat >= lo and mat <= hi
            lid = lr[j] if vis else 0
            ln[j] = lid if keep[lid] else 0
            dr[j] = vis and rr[j]


def _facade(row_in, col_in, lit, wall, glass, lamp, rgb):
    """Window-grid texture colours (``render.facade_texture``): ``glass`` where both the row
    and the column are inside a window, ``lamp`` where ``lit`` (when it has rows), else
    ``wall`` (all float32 x 3); writes ``rgb`` (H x W x 3)."""
    h, w = rgb.shape[0], rgb.shape[1]
    night = lit.shape[0] > 0
    w0, w1, w2 = wall[0], wall[1], wall[2]
    g0, g1, g2 = glass[0], glass[1], glass[2]
    l0, l1, l2 = lamp[0], lamp[1], lamp[2]
    for i in range(h):
        win_row = row_in[i]
        for j in range(w):
            a, b, c = w0, w1, w2
            if win_row and col_in[j]:
                a, b, c = g0, g1, g2
                if night and lit[i, j]:
                    a, b, c = l0, l1, l2
            rgb[i, j, 0] = a
            rgb[i, j, 1] = b
            rgb[i, j, 2] = c


def _compile(fn):  # noqa: ANN001, ANN202
    """``fn`` compiled with an on-disk cache; without the cache where no cache directory is
    writable (compiled again by each process); ``fn`` itself without numba."""
    if not HAVE_NUMBA:  # pragma: no cover
        return fn
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # pragma: no cover - "no locator available": read-only install
        return numba.njit(nogil=True)(fn)


madd = _compile(_madd)
bilinear = _compile(_bilinear)
remap_linear = _compile(_remap_linear)
seen_before = _compile(_seen_before)
ztest_fill = _compile(_ztest_fill)
ground = _compile(_ground)
draw_quads = _compile(_draw_quads)
light = _compile(_light)
exp_args = _compile(_exp_args)
flow_pre = _compile(_flow_pre)
flow_mid = _compile(_flow_mid)
ground_labels = _compile(_ground_labels)
flow_end = _compile(_flow_end)
flow_mid_end = _compile(_flow_mid_end)
object_boxes = _compile(_object_boxes)
pixels_of = _compile(_pixels_of)
facade = _compile(_facade)


def warm_up() -> None:
    """Compile (or load from the cache) every kernel for the types the rasteriser passes."""
    if not HAVE_NUMBA:
        return
    f, i32 = np.float32, np.int32
    m = np.full((2, 2), 255, np.uint8)
    color, ident, invz = np.zeros((4, 4, 3), f), np.zeros((4, 4), i32), np.zeros((4, 4), f)
    ztest_fill(m, np.zeros((2, 1), f), np.ones(2, f), invz, color, ident, 1, 1, 0.5, 0.25,
               0.125, 7, True, True)  # fmt: skip
    road = np.zeros((4, 4), bool)
    d = np.zeros((2, 4), f)
    ground(np.ones(4), np.ones(2), np.zeros(2), np.ones(2, f), np.ones(2, f), np.zeros(16, f),
           (f(1), f(2), f(3)), (f(0.3), False, f(0.5), True), np.ones((4, 3), f),
           np.zeros(4, i32), np.zeros((4, 4), np.uint8), 2,
           (d, d.copy(), color, ident, invz, road))  # fmt: skip
    img = np.zeros((4, 4, 3), f)
    e2, e3 = np.zeros((0, 0), f), np.zeros((0, 0, 3), f)
    light(color, ident, 1 << 23, e2, np.ones(6, f), False, e2, np.ones(3, f), e3, f(0), img)
    z4 = [np.zeros((4, 4), f) for _ in range(4)]
    trig = (f(0.9), f(0.1), f(0.01))
    flow_pre(invz, np.ones(4, f), np.ones(4, f), trig, (f(1), f(0), f(0)), *z4)
    b2 = np.ones(2, bool)
    facade(b2, b2, np.zeros((2, 2), bool), np.ones(3, f), np.ones(3, f), np.ones(3, f), img)
    geo = np.array([[1, 1, 2, 2, 0, 0, 0], [0, 0, 1, 1, 4, 2, 2]], np.int64)
    iz = (np.ones(3, f), np.ones(3, f))
    kinds = np.array([1, 2], np.int64)
    colors = np.ones((2, 3), f)
    draw_quads(0, kinds, geo, np.full(5, 255, np.uint8), iz, colors, np.ones(2, np.int64), False,
               (invz, color, ident))  # fmt: skip
    coef = tuple(f(v) for v in (-0.01, 0.99, 0.03, 0.3, 300.0, 300.0, 2.0, 2.0, 3.0, 3.0))
    u8 = np.full((4, 4), 255, np.uint8)
    flow_mid(z4[0], z4[1], z4[2], invz, coef, z4[3], z4[0].copy(), z4[1].copy(), u8, True)
    uv = np.ones((2, 2), f)  # inside invz (the probe kernel does not check bounds)
    remap_linear(invz, uv, uv, True, uv.copy())  # calibrate.flow_fused's probe
    flow2 = np.zeros((4, 4, 2), f)
    flow_end(z4[0], z4[1], z4[2], z4[3], z4[0], z4[1], u8, flow2, road, True)
    flow_mid_end(z4[0], z4[1], z4[2], invz, coef, z4[3], z4[0], z4[1], flow2, road, True)
    e4 = [np.zeros((4, 4), f) for _ in range(3)]
    exp_args(invz, np.ones(4, f), True, True, f(50.0), *e4)
    u16 = np.zeros((4, 4), np.uint16)
    object_boxes(ident, np.zeros((3, 5), np.int64))
    pixels_of(ident, np.zeros(1, bool), np.empty(16, np.int64))
    ground_labels(ident, u16, road, np.ones(3, bool), 7, 24, 1, 3, u16.copy(), road.copy())
    from carla_bridge.synthetic.f16 import f16_planes
    from carla_bridge.synthetic.paint import warm_up as warm_up_paint
    from carla_bridge.synthetic.warp import warp_fill

    f16_planes(np.zeros((4, 4, 2), f), np.zeros((2, 4, 4), np.uint16))
    warm_up_paint()

    # (no cv2 call here: cv2's thread pool must not exist when a parent forks its workers;
    # warp.block_size() calibrates against cv2 lazily, in the worker)
    minv = np.array([1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0])
    warp_fill(np.full((2, 2), 255, np.uint8), np.ones((2, 2, 3), f), minv, 0, 0, 16, color)
