"""Random layout of one synthetic sequence (road, lines, scenery, agents) and its simulation."""

from __future__ import annotations

from typing import List

import numpy as np

from carla_bridge.scenario import ScenarioConfig
from carla_bridge.synthetic.world import (
    DS,
    Agent,
    Building,
    LineSpec,
    Tree,
    World,
    make_pedestrian,
    make_sign,
    make_vehicle,
    rgb,
)

VEHICLE_MIX = (("car", 0.72), ("truck", 0.1), ("bus", 0.06), ("motorcycle", 0.12))


def _profile(rng: np.random.Generator, s: np.ndarray, straight: bool) -> tuple:
    kappa = np.zeros_like(s)
    if not straight:
        for _ in range(3):
            amp = rng.uniform(0.0, 1.0 / 250.0)
            lam = rng.uniform(150.0, 600.0)
            kappa += amp * np.sin(2 * np.pi * s / lam + rng.uniform(0, 2 * np.pi))
    theta = np.cumsum(kappa) * DS
    xc = np.cumsum(theta) * DS
    elev = np.zeros_like(s)
    for _ in range(2):
        amp = rng.uniform(0.0, 3.0)
        lam = rng.uniform(180.0, 500.0)
        elev += amp * np.sin(2 * np.pi * s / lam + rng.uniform(0, 2 * np.pi))
    return theta, xc, elev


def _lines(rng: np.random.Generator, n: int, width: float, n_on: int) -> List[LineSpec]:
    half = n * width / 2
    wear = float(rng.uniform(0.0, 0.45))
    dash = (float(rng.uniform(2.0, 4.0)), float(rng.uniform(7.0, 12.0)))
    lines = []
    for k in range(n + 1):
        d = -half + k * width
        if k in (0, n):
            typ, col = "solid", "white"
            if k == 0 and n_on == 0 and rng.random() < 0.3:
                col = "yellow"
        elif n_on and k == n_on:
            typ = ("double", "solid", "dashed")[int(rng.choice(3, p=(0.55, 0.25, 0.2)))]
            col = "yellow" if rng.random() < 0.8 else "white"
        else:
            typ, col = "dashed", "white"
        w = float(rng.uniform(0.1, 0.16))
        lines.append(LineSpec(k + 1, d, typ, col, w, dash, wear))
    return lines


def generate_world(config: ScenarioConfig, rng: np.random.Generator) -> World:
    """Draw road, lines, scenery and agents for ``config``; simulate ``config.frames`` frames."""
    n_frames, dt = config.frames, 1.0 / config.fps
    ego_speed = float(rng.uniform(7.0, 17.0))
    s_max = ego_speed * n_frames * dt * 1.6 + 450.0
    s_grid = np.arange(-120.0, s_max, DS)
    scene = ("urban", "suburban", "rural")[int(rng.choice(3, p=(0.5, 0.3, 0.2)))]
    theta, xc, elev = _profile(rng, s_grid, straight=rng.random() < 0.2)
    n = int(rng.integers(2, 5))
    lane_w = float(rng.uniform(3.0, 3.7))
    two_way = rng.random() < 0.6
    n_on = (n // 2 if n > 2 else 1) if two_way else 0
    lines = _lines(rng, n, lane_w, n_on)
    half = n * lane_w / 2
    sidewalk = float(rng.uniform(2.0, 4.5)) if scene != "rural" else 0.0
    verge = half + 0.25 + sidewalk
    buildings: List[Building] = []
    trees: List[Tree] = []
    for side in (-1, 1):
        s = -60.0
        while s < s_max:
            if scene == "urban" or (scene == "suburban" and rng.random() < 0.5):
                length = float(rng.uniform(8.0, 30.0))
                setback = float(rng.uniform(0.5, 6.0 if scene == "urban" else 14.0))
                base = rng.uniform(0.35, 0.85, 3) * rng.uniform(0.7, 1.0)
                height = float(rng.uniform(5.0, 24.0 if scene == "urban" else 9.0))
                buildings.append(
                    Building(
                        s,
                        s + length,
                        side * (verge + setback),
                        10.0,
                        height,
                        rgb(base),
                        float(rng.uniform(0.3, 1.0)),
                    )
                )
                s += length + float(rng.uniform(0.0, 5.0))
            else:
                s += float(rng.uniform(6.0, 20.0))
            if scene != "urban" or rng.random() < 0.3:
                trees.append(
                    Tree(
                        s - float(rng.uniform(0, 5)),
                        side * (verge + float(rng.uniform(0.3, 4))),
                        float(rng.uniform(1.5, 3.0)),
                        float(rng.uniform(1.2, 3.0)),
                        rgb(rng.uniform((0.1, 0.25, 0.05), (0.3, 0.5, 0.15))),
                    )
                )
    ego_lane = int(rng.integers(n_on, n))
    world = World(
        config.seed,
        s_grid,
        theta,
        xc,
        elev,
        n,
        lane_w,
        n_on,
        lines,
        half,
        sidewalk,
        scene,
        buildings,
        trees,
        [],
        [],
        ego_lane,
    )
    classes = set(config.classes)
    tid = 1
    # vehicles
    mix = tuple(config.vehicle_mix.items()) if config.vehicle_mix else VEHICLE_MIX
    cats = [c for c, p in mix if c in classes and p > 0]
    probs = np.array([float(p) for c, p in mix if c in classes and p > 0])
    occupied: List[tuple] = [(ego_lane, 0.0)]
    for _ in range(config.num_vehicles if cats else 0):
        cat = cats[int(rng.choice(len(cats), p=probs / probs.sum()))]
        lane = int(rng.integers(0, n))
        oncoming = lane < n_on
        for _try in range(10):
            s0 = float(rng.uniform(15.0, 200.0) if oncoming else rng.uniform(-25.0, 120.0))
            if all(ln != lane or abs(s0 - so) > 14.0 for ln, so in occupied):
                break
        else:
            continue
        occupied.append((lane, s0))
        boxes, length, width = make_vehicle(rng, cat, oncoming)
        desired = float(rng.uniform(6.0, 16.0) if cat != "bus" else rng.uniform(5.0, 11.0))
        v = -desired if oncoming else desired
        a = Agent(
            tid,
            cat,
            boxes,
            length,
            width,
            s0,
            world.lane_center(lane),
            v,
            desired,
            -1 if oncoming else 1,
            lane,
        )
        world.agents.append(a)
        tid += 1
    # cyclists ride at the right edge of the rightmost lane
    if "bicycle" in classes:
        for _ in range(int(rng.integers(0, 3))):
            boxes, length, width = make_vehicle(rng, "bicycle", False)
            sp = float(rng.uniform(3.5, 6.5))
            d = half - float(rng.uniform(0.6, 1.0))
            world.agents.append(
                Agent(
                    tid,
                    "bicycle",
                    boxes,
                    length,
                    width,
                    float(rng.uniform(5, 90)),
                    d,
                    sp,
                    sp,
                    1,
                    n - 1,
                )
            )
            tid += 1
    # pedestrians: walkers on sidewalks, some crossing the road
    if "pedestrian" in classes:
        for _ in range(config.num_walkers):
            boxes, length, width = make_pedestrian(rng)
            side = -1 if rng.random() < 0.5 else 1
            edge = half + 0.25
            d = side * (edge + float(rng.uniform(0.4, max(sidewalk, 1.0) - 0.3)))
            sp = float(rng.uniform(0.8, 1.6)) * (-1 if rng.random() < 0.5 else 1)
            p = Agent(
                tid,
                "pedestrian",
                boxes,
                length,
                width,
                float(rng.uniform(4, 80)),
                d,
                sp,
                abs(sp),
                0,
            )
            if rng.random() < 0.3:
                p.cross_at = int(rng.integers(0, max(1, n_frames // 2)))
                p.vd = -side * float(rng.uniform(1.1, 1.6))
                p.s = float(rng.uniform(18, 60))
            world.agents.append(p)
            tid += 1
    if "traffic_sign" in classes:
        s = float(rng.uniform(5, 30))
        while s < s_max:
            boxes, length, width = make_sign(rng)
            side = 1 if (n_on == 0 or rng.random() < 0.75) else -1
            d = side * (half + 0.25 + max(sidewalk, 1.2) - 0.4)
            world.signs.append(Agent(tid, "traffic_sign", boxes, length, width, s, d, 0.0, 0.0, 0))
            tid += 1
            s += float(rng.uniform(25.0, 70.0))
    simulate(world, rng, n_frames, dt, ego_speed)
    return world


def simulate(world: World, rng: np.random.Generator, n: int, dt: float, ego_speed: float) -> None:
    """Fill the per-frame trajectories: car following, lane changes (overtaking), crossings."""
    ego = Agent(
        0,
        "ego",
        [],
        4.5,
        1.9,
        0.0,
        world.lane_center(world.ego_lane),
        ego_speed,
        ego_speed,
        1,
        world.ego_lane,
    )
    movers = [ego] + world.agents
    traj_s = np.zeros((n, len(movers)))
    traj_d = np.zeros((n, len(movers)))
    psi = np.zeros(n)
    for t in range(n):
        for i, a in enumerate(movers):
            traj_s[t, i], traj_d[t, i] = a.s, a.d
        psi[t] = _lc_slope(ego) / max(ego.speed, 0.5)
        if t == n - 1:
            break
        for a in movers:
            if a.category == "pedestrian":
                if 0 <= a.cross_at <= t and abs(a.d) < world.half_width + 4.0:
                    a.d += a.vd * dt
                else:
                    a.s += a.speed * dt
                continue
            if a.direction != 0:
                _follow(world, a, movers, rng)
            a.s += a.speed * dt
            if a.lc_t >= 0:
                a.lc_t += dt / a.lc_dur
                if a.lc_t >= 1.0:
                    a.lc_t, a.d = -1.0, a.lc_to
                else:
                    w = 0.5 - 0.5 * np.cos(np.pi * a.lc_t)
                    a.d = a.lc_from + (a.lc_to - a.lc_from) * w
    world.ego_s, world.ego_d, world.ego_psi = traj_s[:, 0], traj_d[:, 0], psi
    world.agent_s, world.agent_d = traj_s[:, 1:], traj_d[:, 1:]


def _lc_slope(a: Agent) -> float:
    if a.lc_t < 0:
        return 0.0
    return (a.lc_to - a.lc_from) * 0.5 * np.pi * np.sin(np.pi * a.lc_t) / a.lc_dur


def _follow(world: World, a: Agent, movers: List[Agent], rng: np.random.Generator) -> None:
    """Car following with overtaking: slow down behind a leader, change lanes when possible."""
    lw = world.lane_width
    gap, lead_v = 1e9, a.desired * a.direction
    for b in movers:
        if b is a or abs(b.d - a.d) > lw * 0.6:
            continue
        ahead = (b.s - a.s) * a.direction
        if ahead <= 0:
            continue
        g = ahead - (a.length + b.length) / 2
        if g < gap:
            gap, lead_v = g, (0.0 if b.category == "pedestrian" else b.speed)
    v = a.desired
    safe = 6.0 + 1.2 * a.desired
    if gap < safe:
        v = max(0.0, min(a.desired, lead_v * a.direction))
        if gap < 4.0:
            v *= 0.5
        if a.lc_t < 0 and a.desired - v > 1.5 and a.category != "bicycle":
            _try_lane_change(world, a, movers, rng)
    a.speed = v * a.direction


def _try_lane_change(world: World, a: Agent, movers: List[Agent], rng: np.random.Generator):
    lanes = [a.lane - 1, a.lane + 1]
    rng.shuffle(lanes)
    for ln in lanes:
        same_dir = ln >= world.n_oncoming if a.direction > 0 else 0 <= ln < world.n_oncoming
        if not (0 <= ln < world.n_lanes and same_dir):
            continue
        target = world.lane_center(ln)
        free = all(
            abs(b.d - target) > world.lane_width * 0.6 or not -15.0 < (b.s - a.s) < 25.0
            for b in movers
            if b is not a
        )
        if free:
            a.lc_from, a.lc_to, a.lc_t, a.lane = a.d, target, 0.0, ln
            a.lc_dur = float(rng.uniform(2.5, 4.0))
            return
