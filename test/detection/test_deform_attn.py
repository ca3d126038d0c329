"""grid_sample deformable attention vs a naive loop with hand-written bilinear interpolation."""

from __future__ import annotations

import math

import pytest
import torch
from edge_perception.detection.deform_attn import MSDeformableAttention, deformable_sample


def bilinear(img, x, y):
    """Value of img [C, H, W] at continuous pixel position (x, y) (pixel centres at i + 0.5
    in normalised*size units), zero outside the map."""
    c, h, w = img.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(c, dtype=torch.float64)
    for dx in (0, 1):
        for dy in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            wx = 1 - abs(px - xi)
            wy = 1 - abs(py - yi)
            if 0 <= xi < w and 0 <= yi < h:
                out += wx * wy * img[:, yi, xi].double()
    return out


def naive(value, shapes, locations, weights):
    b, _, heads, dh = value.shape
    q, points = locations.shape[1], locations.shape[4]
    out = torch.zeros(b, q, heads * dh, dtype=torch.float64)
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    for bi in range(b):
        for qi in range(q):
            for hd in range(heads):
                acc = torch.zeros(dh, dtype=torch.float64)
                for lv, (h, w) in enumerate(shapes):
                    img = value[bi, starts[lv] : starts[lv + 1], hd].T.reshape(dh, h, w)
                    for p in range(points):
                        x, y = locations[bi, qi, hd, lv, p].tolist()
                        acc += weights[bi, qi, hd, lv, p].item() * bilinear(img, x, y)
                out[bi, qi, hd * dh : (hd + 1) * dh] = acc
    return out


def test_matches_naive_reference_including_borders():
    g = torch.Generator().manual_seed(0)
    shapes = [(6, 8), (3, 4)]
    b, q, heads, dh, points = 2, 3, 2, 4, 3
    s = sum(h * w for h, w in shapes)
    value = torch.randn(b, s, heads, dh, generator=g)
    # locations partly outside [0, 1] to exercise the zero padding
    locations = torch.rand(b, q, heads, len(shapes), points, 2, generator=g) * 1.3 - 0.15
    weights = torch.rand(b, q, heads, len(shapes), points, generator=g)
    got = deformable_sample(value, shapes, locations, weights)
    ref = naive(value, shapes, locations, weights)
    assert got.shape == (b, q, heads * dh)
    assert torch.allclose(got.double(), ref, atol=1e-5)


def test_exact_pixel_centre_reads_that_pixel():
    value = torch.arange(12, dtype=torch.float32).reshape(1, 12, 1, 1)  # one 3x4 map
    loc = torch.tensor([(2 + 0.5) / 4, (1 + 0.5) / 3]).reshape(1, 1, 1, 1, 1, 2)
    out = deformable_sample(value, [(3, 4)], loc, torch.ones(1, 1, 1, 1, 1))
    assert out.item() == pytest.approx(1 * 4 + 2)  # row 1, column 2


def test_module_shapes_and_level_check():
    torch.manual_seed(0)
    attn = MSDeformableAttention(dim=16, heads=2, levels=2, points=2)
    memory = torch.randn(2, 4 * 4 + 2 * 2, 16)
    query = torch.randn(2, 5, 16)
    ref = torch.rand(2, 5, 4) * 0.5 + 0.25
    assert attn(query, ref, memory, [(4, 4), (2, 2)]).shape == (2, 5, 16)
    with pytest.raises(ValueError, match="levels"):
        attn(query, ref, memory[:, :16], [(4, 4)])
