"""Procedural world of one synthetic sequence: road geometry, lane lines, scenery and agents.

Everything lives in *road coordinates* ``(s, d, h)``: ``s`` metres along the road centre line,
``d`` metres to the right of it, ``h`` metres above the road surface. A camera at road position
``(s_c, d_c)`` (mount height ``H`` above the road, yaw ``psi`` relative to the road tangent) sees
the point ``(s, d, h)`` at the pre-pitch camera coordinates::

    Z' = s - s_c
    X' = d - d_c + C(Z') - psi * Z'        C = lateral drift of the curved centre line
    Y' = H - h - (E(s) - E(s_c))           E = road elevation (Y' points down)

the usual "bent road" model of curvature and grade. The mapping is invertible, so per-pixel road
coordinates (and with them textures, labels and optical flow) follow exactly from the depth buffer.
Agents are simulated for the whole sequence up front (car following, lane changes, overtaking,
crossing pedestrians) so that their positions at every frame are known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence, Tuple, Union

import numpy as np

DS = 0.5  # metres between road-profile samples


@dataclass
class LineSpec:
    line_id: int
    d: float  # lateral centre of the painted line
    type: str  # solid | dashed | double
    color: str  # white | yellow
    width: float  # painted width of one stripe (m)
    dash: Tuple[float, float] = (3.0, 6.0)  # dash length, period (m)
    wear: float = 0.0  # 0 = fresh paint, 1 = almost gone


@dataclass
class Box:
    """A road-aligned coloured cuboid, part of an agent or of the scenery."""

    ds: float  # centre offset along s from the owner's position
    dd: float  # centre offset along d
    length: float
    width: float
    h0: float
    h1: float
    color: Tuple[float, float, float]  # RGB 0..1
    material: int
    emissive: bool = False


@dataclass
class Agent:
    track_id: int
    category: str
    boxes: List[Box]
    length: float
    width: float
    s: float
    d: float
    speed: float  # along +s (negative = oncoming)
    desired: float
    direction: int  # +1 with the ego, -1 oncoming, 0 pedestrian on sidewalk
    lane: int = -1
    lc_from: float = 0.0
    lc_to: float = 0.0
    lc_t: float = -1.0  # progress of a lane change in [0, 1), -1 = none
    lc_dur: float = 3.0
    cross_at: int = -1  # pedestrians: frame at which they start crossing
    vd: float = 0.0


@dataclass
class Building:
    s0: float
    s1: float
    d: float  # facade plane (signed: <0 left of the road)
    depth: float
    height: float
    color: Tuple[float, float, float]
    windows: float  # window density 0..1


@dataclass
class Tree:
    s: float
    d: float
    trunk_h: float
    crown_r: float
    color: Tuple[float, float, float]


@dataclass
class World:
    """Road profile tables, lane lines, scenery and the simulated trajectories of one sequence."""

    seed: int
    s_grid: np.ndarray
    theta: np.ndarray  # road heading (rad) at s_grid
    xc: np.ndarray  # integral of theta: lateral drift of the centre line
    elev: np.ndarray  # road elevation (m)
    n_lanes: int
    lane_width: float
    n_oncoming: int
    lines: List[LineSpec]
    half_width: float
    sidewalk: float  # sidewalk width (0 = none, grass verge)
    scene: str  # urban | suburban | rural
    buildings: List[Building]
    trees: List[Tree]
    agents: List[Agent]
    signs: List[Agent]
    ego_lane: int
    # simulated trajectories, one row per frame
    ego_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ego_d: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ego_psi: np.ndarray = field(default_factory=lambda: np.zeros(0))
    agent_s: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    agent_d: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def lane_center(self, lane: int) -> float:
        return -self.half_width + (lane + 0.5) * self.lane_width

    def drift_elev(self, s: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``(xc, elev)`` at arc lengths ``s`` by linear interpolation on the uniform grid."""
        f = (np.asarray(s, np.float64) - self.s_grid[0]) * (1.0 / DS)
        i = np.clip(f.astype(np.int64), 0, len(self.s_grid) - 2)
        t = np.clip(f - i, 0.0, 1.0)
        xc0, el0 = self.xc[i], self.elev[i]
        return xc0 + t * (self.xc[i + 1] - xc0), el0 + t * (self.elev[i + 1] - el0)

    def profile(self, s: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(theta, xc, elev)`` interpolated at arc lengths ``s``."""
        return (
            np.interp(s, self.s_grid, self.theta),
            np.interp(s, self.s_grid, self.xc),
            np.interp(s, self.s_grid, self.elev),
        )


VEHICLE_COLORS = (
    (0.85, 0.85, 0.85),
    (0.08, 0.08, 0.09),
    (0.55, 0.56, 0.58),
    (0.65, 0.08, 0.07),
    (0.10, 0.20, 0.55),
    (0.90, 0.90, 0.93),
    (0.25, 0.32, 0.22),
    (0.80, 0.55, 0.10),
    (0.35, 0.35, 0.38),
    (0.92, 0.80, 0.15),
    (0.45, 0.12, 0.35),
    (0.15, 0.45, 0.55),
)
GLASS = (0.10, 0.13, 0.17)
TYRE = (0.04, 0.04, 0.04)
M_BODY, M_GLASS, M_LIGHT, M_TYRE, M_PERSON, M_SIGN, M_POLE = 10, 11, 12, 13, 14, 15, 16


RGB = Tuple[float, float, float]


def rgb(c: Union[Sequence[float], np.ndarray]) -> RGB:
    """A colour as a plain ``(r, g, b)`` float tuple."""
    return (float(c[0]), float(c[1]), float(c[2]))


def _jit(rng: np.random.Generator, c: Union[Sequence[float], np.ndarray], a: float = 0.06) -> RGB:
    return rgb(np.clip(np.asarray(c) + rng.uniform(-a, a, 3), 0, 1))


def make_vehicle(
    rng: np.random.Generator, category: str, oncoming: bool
) -> Tuple[list, float, float]:
    """Cuboids of a vehicle of ``category`` (body, cabin/cargo, lights, wheels); returns width too.

    The boxes are given for a vehicle driving along +s; the lights flip for oncoming traffic.
    """
    col = _jit(rng, VEHICLE_COLORS[int(rng.integers(len(VEHICLE_COLORS)))])
    rear_light = (1.0, 0.08, 0.05)
    head_light = (1.0, 0.97, 0.85)
    back_col, front_col = rear_light, head_light
    boxes: List[Box] = []
    if category == "car":
        length, width = rng.uniform(3.9, 4.9), rng.uniform(1.7, 1.95)
        hb = rng.uniform(0.95, 1.15) if rng.random() < 0.6 else rng.uniform(1.15, 1.35)
        hc = hb + rng.uniform(0.4, 0.55)
        boxes.append(Box(0, 0, length, width, 0.25, hb, col, M_BODY))
        cl = length * rng.uniform(0.45, 0.62)
        boxes.append(
            Box(-0.1 * length * rng.random(), 0, cl, width * 0.86, hb, hc, GLASS, M_GLASS)
        )
        boxes.append(Box(0, 0, cl * 0.9, width * 0.8, hc - 0.02, hc, col, M_BODY))
    elif category in ("truck", "bus"):
        length = rng.uniform(7.0, 11.0) if category == "truck" else rng.uniform(10.0, 12.5)
        width = rng.uniform(2.3, 2.55)
        hb = rng.uniform(3.0, 3.8) if category == "truck" else rng.uniform(2.9, 3.3)
        if category == "truck":
            cargo = _jit(rng, VEHICLE_COLORS[int(rng.integers(len(VEHICLE_COLORS)))])
            cab = 2.2
            boxes.append(Box(-cab / 2, 0, length - cab, width, 0.9, hb, cargo, M_BODY))
            boxes.append(Box((length - cab) / 2, 0, cab, width * 0.97, 0.5, 2.9, col, M_BODY))
            boxes.append(
                Box((length - cab) / 2 + 0.3, 0, cab * 0.8, width * 0.9, 1.9, 2.7, GLASS, M_GLASS)
            )
            boxes.append(
                Box(-cab / 2, 0, length - cab - 0.4, width * 0.9, 0.35, 0.9, TYRE, M_TYRE)
            )
        else:
            boxes.append(Box(0, 0, length, width, 0.35, hb, col, M_BODY))
            boxes.append(Box(0, 0, length * 0.96, width + 0.02, 1.4, 2.4, GLASS, M_GLASS))
    else:  # motorcycle / bicycle with rider
        length = rng.uniform(1.9, 2.2) if category == "motorcycle" else rng.uniform(1.6, 1.8)
        width = 0.75 if category == "motorcycle" else 0.55
        body_h = 0.95 if category == "motorcycle" else 0.75
        frame = col if category == "motorcycle" else _jit(rng, (0.2, 0.2, 0.22), 0.15)
        boxes.append(Box(0, 0, length * 0.8, width * 0.5, 0.0, body_h, TYRE, M_TYRE))
        boxes.append(Box(0, 0, length * 0.55, width * 0.8, 0.35, body_h, frame, M_BODY))
        shirt = rgb(rng.uniform(0.1, 0.9, 3))
        boxes.append(Box(-0.1, 0, 0.4, width * 0.85, body_h, body_h + 0.65, shirt, M_PERSON))
        helmet = (0.9, 0.9, 0.9) if rng.random() < 0.5 else (0.1, 0.1, 0.1)
        boxes.append(Box(-0.05, 0, 0.3, 0.28, body_h + 0.65, body_h + 0.95, helmet, M_PERSON))
    if category in ("car", "truck", "bus", "motorcycle"):
        lw = 0.25 if category != "motorcycle" else 0.12
        for side in (-1, 1) if category != "motorcycle" else (0,):
            dd = side * (width / 2 - lw / 2 - 0.08)
            h0 = 0.6 if category == "car" else 0.9
            boxes.append(
                Box(-length / 2 - 0.01, dd, 0.04, lw, h0, h0 + 0.15, back_col, M_LIGHT, True)
            )
            boxes.append(
                Box(length / 2 + 0.01, dd, 0.04, lw, h0, h0 + 0.15, front_col, M_LIGHT, True)
            )
    if category in ("car", "bus"):
        for ws in (-1, 1):
            boxes.append(Box(ws * length * 0.3, 0, 0.7, width + 0.04, 0.0, 0.62, TYRE, M_TYRE))
    if oncoming:  # drive along -s: mirror the boxes front to back
        for b in boxes:
            b.ds = -b.ds
    return boxes, float(length), float(width)


def make_pedestrian(rng: np.random.Generator) -> Tuple[list, float, float]:
    """Legs, torso, arms and head cuboids of a walker (1.5-1.95 m)."""
    h = rng.uniform(1.5, 1.95)
    trousers = _jit(rng, ((0.1, 0.1, 0.15), (0.2, 0.25, 0.4), (0.35, 0.3, 0.25))[rng.integers(3)])
    shirt = rgb(rng.uniform(0.05, 0.95, 3))
    skin = _jit(rng, ((0.85, 0.68, 0.55), (0.55, 0.38, 0.26), (0.35, 0.24, 0.17))[rng.integers(3)])
    w = rng.uniform(0.42, 0.55)
    hl, ht = 0.47 * h, 0.85 * h
    boxes = [
        Box(0, -w * 0.22, 0.22, w * 0.4, 0.0, hl, trousers, M_PERSON),
        Box(0, w * 0.22, 0.22, w * 0.4, 0.0, hl, trousers, M_PERSON),
        Box(0, 0, 0.28, w, hl, ht, shirt, M_PERSON),
        Box(0, 0, 0.22, 0.2, ht, h, skin, M_PERSON),
    ]
    return boxes, 0.3, float(w)


def make_sign(rng: np.random.Generator) -> Tuple[list, float, float]:
    """A pole and a sign plate (only the plate is the ``traffic_sign`` object; see backend)."""
    plate = rng.uniform(0.6, 0.9)
    h0 = rng.uniform(1.8, 2.5)
    palette = ((0.8, 0.05, 0.05), (0.05, 0.25, 0.7), (0.95, 0.95, 0.95), (0.95, 0.75, 0.05))
    col = palette[int(rng.integers(len(palette)))]
    boxes = [
        Box(0, 0, 0.04, plate, h0, h0 + plate, col, M_SIGN),
        Box(
            -0.035,
            0,
            0.02,
            plate * 0.6,
            h0 + plate * 0.2,
            h0 + plate * 0.8,
            (0.97, 0.97, 0.97) if col != (0.95, 0.95, 0.95) else (0.1, 0.1, 0.1),
            M_SIGN,
        ),
        Box(0.06, 0, 0.06, 0.07, 0.0, h0, (0.5, 0.5, 0.52), M_POLE),
    ]
    return boxes, 0.1, float(plate)
