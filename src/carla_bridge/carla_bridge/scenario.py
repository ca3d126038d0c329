"""Scenario configuration shared by both scene backends (procedural generator and CARLA).

A scenario is a YAML file (see ``config/scenarios/*.yaml``)::

    backend: synthetic          # synthetic | carla
    town: Town10HD              # CARLA map; the synthetic backend uses it only as a label
    weather: random             # clear | cloudy | rain | fog | random
    time_of_day: random         # day | dusk | night | random
    num_vehicles: 8
    num_walkers: 6
    classes: [car, truck, bus, motorcycle, bicycle, pedestrian, traffic_sign]
    vehicle_mix: {car: 0.45, truck: 0.2, bus: 0.17, motorcycle: 0.18}   # optional class balance
    seed: 0
    frames: 30                  # or duration_s: 3.0 (frames = round(duration_s * fps))
    fps: 10
    camera: {width: 640, height: 384, fov_deg: 90, mount_height_m: 1.5, pitch_deg: 2, jitter: true}
    carla: {host: localhost, port: 2000, timeout_s: 10}

Every problem (unknown key, bad value, unknown class name) raises one ``ValueError`` that lists all
of them and says how to fix each.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from carla_bridge.classes import OBJECT_CLASSES

BACKENDS = ("synthetic", "carla")
WEATHERS = ("clear", "cloudy", "rain", "fog", "random")
TIMES_OF_DAY = ("day", "dusk", "night", "random")


@dataclass
class CameraConfig:
    """Nominal RGB camera; ``jitter`` lets the synthetic backend randomise it per sequence."""

    width: int = 640
    height: int = 384
    fov_deg: float = 90.0  # horizontal field of view
    mount_height_m: float = 1.5  # above the road
    pitch_deg: float = 2.0  # positive = looking down
    jitter: bool = True  # synthetic: randomise height, pitch and intrinsics around these values


@dataclass
class CarlaConnection:
    """Where the CARLA server is (used only by the ``carla`` backend)."""

    host: str = "localhost"
    port: int = 2000
    timeout_s: float = 10.0
    traffic_manager_port: int = 8000


@dataclass
class ScenarioConfig:
    """Everything a backend needs to produce one sequence of frames."""

    backend: str = "synthetic"
    town: str = "Town10HD"
    weather: str = "random"
    time_of_day: str = "random"
    num_vehicles: int = 8
    num_walkers: int = 6
    classes: List[str] = field(default_factory=lambda: list(OBJECT_CLASSES))
    # relative frequency of each vehicle category (car, truck, bus, motorcycle); None = the
    # generator's street mix (72 / 10 / 6 / 12 %). A training-data balance control: the
    # validation split always uses the default.
    vehicle_mix: Optional[Dict[str, float]] = None
    spawn_points: Optional[List[int]] = None  # CARLA spawn-point indices; None = random
    seed: int = 0
    frames: int = 30
    duration_s: Optional[float] = None
    fps: float = 10.0
    sequence: Optional[str] = None  # name stamped into Frame.sequence; default "seq_<seed>"
    camera: CameraConfig = field(default_factory=CameraConfig)
    carla: CarlaConnection = field(default_factory=CarlaConnection)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "scenario") -> ScenarioConfig:
        """Build and validate a config from a (YAML-loaded) mapping; missing keys keep defaults.

        ``duration_s``, when given, overrides ``frames`` (``round(duration_s * fps)``).
        """
        if not isinstance(data, Mapping):
            raise ValueError(
                f"{source}: expected a mapping of scenario keys, got {type(data).__name__}"
            )
        errors: List[str] = []
        top = {f.name for f in dataclasses.fields(cls)}
        kwargs: Dict[str, Any] = {}
        for key, value in data.items():
            if key not in top:
                errors.append(
                    "unknown key {!r} (valid keys: {})".format(key, ", ".join(sorted(top)))
                )
            elif key == "camera":
                kwargs[key] = _sub(CameraConfig, value, "camera", errors)
            elif key == "carla":
                kwargs[key] = _sub(CarlaConnection, value, "carla", errors)
            else:
                kwargs[key] = value
        cfg = cls(**kwargs)
        if cfg.duration_s is not None and _is_num(cfg.duration_s) and _is_num(cfg.fps):
            cfg.frames = max(1, int(round(float(cfg.duration_s) * float(cfg.fps))))
        errors.extend(cfg.problems())
        if errors:
            raise ValueError(
                "invalid {}:\n  - {}\nFix the YAML (see config/scenarios/default.yaml).".format(
                    source, "\n  - ".join(errors)
                )
            )
        return cfg

    @classmethod
    def from_yaml(cls, path: str) -> ScenarioConfig:
        """Load a scenario YAML file; raises ``ValueError`` for a missing file or bad content."""
        import yaml

        if not os.path.isfile(path):
            raise ValueError(f"scenario file {path} does not exist; pass an existing YAML path")
        with open(path, encoding="utf-8") as fh:
            try:
                data = yaml.safe_load(fh)
            except yaml.YAMLError as exc:
                raise ValueError(f"scenario file {path} is not valid YAML: {exc}") from None
        return cls.from_dict(data or {}, source=f"scenario file {path}")

    def to_dict(self) -> Dict[str, Any]:
        """Plain-data copy (for manifests and YAML dumps)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> ScenarioConfig:
        """A validated copy with some fields changed (``camera``/``carla`` accept dicts)."""
        data = self.to_dict()
        for key, value in changes.items():
            if key in ("camera", "carla") and isinstance(value, Mapping):
                data[key] = dict(data[key], **value)
            else:
                data[key] = value
        if "frames" in changes and "duration_s" not in changes:
            data["duration_s"] = None
        return ScenarioConfig.from_dict(data)

    @property
    def sequence_name(self) -> str:
        return self.sequence if self.sequence else f"seq_{self.seed:08d}"

    # ------------------------------------------------------------------ validation
    def problems(self) -> List[str]:
        """Every validation problem as a readable line (empty when the config is valid)."""
        p: List[str] = []
        _choice(p, "backend", self.backend, BACKENDS)
        _choice(p, "weather", self.weather, WEATHERS)
        _choice(p, "time_of_day", self.time_of_day, TIMES_OF_DAY)
        if not isinstance(self.town, str) or not self.town:
            p.append("town must be a non-empty string such as Town10HD")
        _int(p, "num_vehicles", self.num_vehicles, 0, 200)
        _int(p, "num_walkers", self.num_walkers, 0, 200)
        _int(p, "seed", self.seed, 0, 2**31 - 1)
        _int(p, "frames", self.frames, 1, 100000)
        _num(p, "fps", self.fps, 0.1, 1000.0)
        if self.duration_s is not None:
            _num(p, "duration_s", self.duration_s, 0.01, 1e6)
        if not isinstance(self.classes, (list, tuple)) or not self.classes:
            p.append("classes must be a non-empty list of: {}".format(", ".join(OBJECT_CLASSES)))
        else:
            unknown = [c for c in self.classes if c not in OBJECT_CLASSES]
            if unknown:
                p.append(
                    "unknown class name(s) {}; known classes: {}".format(
                        ", ".join(map(repr, unknown)), ", ".join(OBJECT_CLASSES)
                    )
                )
        if self.vehicle_mix is not None:
            vehicles = ("car", "truck", "bus", "motorcycle")
            vm = self.vehicle_mix
            if (
                not isinstance(vm, Mapping)
                or not vm
                or any(k not in vehicles for k in vm)
                or not all(_is_num(v) and v >= 0 for v in vm.values())
                or sum(float(v) for v in vm.values()) <= 0
            ):
                p.append(
                    "vehicle_mix must map some of {} to non-negative weights with a positive "
                    "sum (e.g. {{car: 0.5, bus: 0.2}}) or be omitted".format(", ".join(vehicles))
                )
        if self.spawn_points is not None:
            if not isinstance(self.spawn_points, (list, tuple)) or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0
                for i in self.spawn_points
            ):
                p.append("spawn_points must be a list of non-negative integers or omitted")
        if self.sequence is not None and (
            not isinstance(self.sequence, str)
            or not self.sequence
            or any(c in self.sequence for c in "/\\ ")
        ):
            p.append("sequence must be a non-empty name without '/', '\\' or spaces")
        c = self.camera
        _int(p, "camera.width", c.width, 16, 8192)
        _int(p, "camera.height", c.height, 16, 8192)
        _num(p, "camera.fov_deg", c.fov_deg, 10.0, 170.0)
        _num(p, "camera.mount_height_m", c.mount_height_m, 0.3, 10.0)
        _num(p, "camera.pitch_deg", c.pitch_deg, -30.0, 45.0)
        if not isinstance(c.jitter, bool):
            p.append("camera.jitter must be true or false")
        k = self.carla
        if not isinstance(k.host, str) or not k.host:
            p.append("carla.host must be a host name or address")
        _int(p, "carla.port", k.port, 1, 65535)
        _int(p, "carla.traffic_manager_port", k.traffic_manager_port, 1, 65535)
        _num(p, "carla.timeout_s", k.timeout_s, 0.1, 600.0)
        return p


def _sub(cls: Any, value: Any, name: str, errors: List[str]) -> Any:
    if not isinstance(value, Mapping):
        errors.append(f"{name} must be a mapping, got {value!r}")
        return cls()
    names = {f.name for f in dataclasses.fields(cls)}
    bad = [k for k in value if k not in names]
    for k in bad:
        errors.append("unknown key {}.{} (valid: {})".format(name, k, ", ".join(sorted(names))))
    return cls(**{k: v for k, v in value.items() if k in names})


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _choice(p: List[str], name: str, value: Any, options: Any) -> None:
    if value not in options:
        p.append("{}={!r} is not one of: {}".format(name, value, ", ".join(options)))


def _int(p: List[str], name: str, value: Any, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        p.append(f"{name}={value!r} must be an integer in [{lo}, {hi}]")


def _num(p: List[str], name: str, value: Any, lo: float, hi: float) -> None:
    if not _is_num(value) or not lo <= float(value) <= hi:
        p.append(f"{name}={value!r} must be a number in [{lo:g}, {hi:g}]")
