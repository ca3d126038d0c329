"""CARLA scene backend: a synchronous-mode CARLA 0.9.16 world rendered into project Frames.

``CarlaBackend().open(config)`` connects (``carla.Client`` + ``set_timeout``; an unreachable server
raises :class:`CarlaUnavailableError` naming host, port and timeout), loads ``config.town`` if
needed, switches the world and the Traffic Manager to synchronous mode with
``fixed_delta_seconds = 1 / config.fps``, sets the weather preset, spawns the ego vehicle on
autopilot, ``num_vehicles`` autopilot vehicles, ``num_walkers`` walkers with AI controllers, and
four co-located cameras on the ego (rgb, semantic_segmentation, instance_segmentation,
optical_flow). ``frames()`` ticks the world and converts each synchronised set of sensor images
with :mod:`carla_bridge.carla_labels`. ``close()`` destroys every actor it spawned and restores
the original world settings, also after an error inside ``open`` or the frame loop.
"""

from __future__ import annotations

import queue
import random
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from carla_bridge import carla_labels as cl
from carla_bridge.backend import SceneBackend
from carla_bridge.frame import Frame
from carla_bridge.scenario import ScenarioConfig

SENSORS = ("rgb", "semantic_segmentation", "instance_segmentation", "optical_flow")

# (weather, time_of_day) -> carla.WeatherParameters preset name. Fog has no preset: it is the
# cloudy preset with fog_density / fog_distance set (see _weather).
WEATHER_PRESETS: Dict[Tuple[str, str], str] = {
    ("clear", "day"): "ClearNoon",
    ("clear", "dusk"): "ClearSunset",
    ("clear", "night"): "ClearNight",
    ("cloudy", "day"): "CloudyNoon",
    ("cloudy", "dusk"): "CloudySunset",
    ("cloudy", "night"): "CloudyNight",
    ("rain", "day"): "MidRainyNoon",
    ("rain", "dusk"): "MidRainSunset",
    ("rain", "night"): "MidRainyNight",
    ("fog", "day"): "CloudyNoon",
    ("fog", "dusk"): "CloudySunset",
    ("fog", "night"): "CloudyNight",
}


class CarlaUnavailableError(ConnectionError):
    """The CARLA server did not answer; the message names host, port and timeout."""


def connect(host: str, port: int, timeout_s: float) -> Any:
    """A ``carla.Client`` whose server answered within ``timeout_s``.

    Raises CarlaUnavailableError (naming host, port and timeout and how to fix it) when the server
    is not reachable, and RuntimeError when the ``carla`` client package is missing.
    """
    try:
        import carla
    except ImportError as exc:  # pragma: no cover - carla is in the project's requirements
        raise RuntimeError("the CARLA backend needs: pip install carla==0.9.16") from exc
    client = carla.Client(host, int(port), worker_threads=1)
    client.set_timeout(float(timeout_s))
    try:
        server = client.get_server_version()
    except RuntimeError as exc:
        raise CarlaUnavailableError(
            "CARLA server at %s:%d did not answer within %.1f s (%s); start CarlaUE4.sh there, "
            "or set carla.host / carla.port / carla.timeout_s in the scenario, or use "
            "backend: synthetic" % (host, int(port), float(timeout_s), exc)
        ) from None
    client_version = client.get_client_version()
    if server.split("-")[0] != client_version.split("-")[0]:
        # A mismatch usually still works for the sensors used here; say so once.
        print(f"[carla_bridge] warning: CARLA server {server} vs client {client_version}")
    return client


def weather_preset(weather: str, time_of_day: str, rng: random.Random) -> Tuple[str, str, str]:
    """Resolve ``random`` choices; returns ``(weather, time_of_day, preset name)``."""
    if weather == "random":
        weather = rng.choice(["clear", "cloudy", "rain", "fog"])
    if time_of_day == "random":
        time_of_day = rng.choice(["day", "dusk", "night"])
    key = (weather, time_of_day)
    if key not in WEATHER_PRESETS:
        raise ValueError(
            "no CARLA weather for weather=%r time_of_day=%r; weather in clear/cloudy/rain/fog, "
            "time_of_day in day/dusk/night" % key
        )
    return weather, time_of_day, WEATHER_PRESETS[key]


class CarlaBackend(SceneBackend):
    """Frames from a live CARLA server (see the module docstring)."""

    name = "carla"

    def __init__(
        self,
        object_map: Optional[Dict[str, str]] = None,
        lane_map: Optional[Dict[str, str]] = None,
        min_pixels: int = 20,
        lane_range_m: float = 60.0,
        sensor_timeout_s: float = 10.0,
    ) -> None:
        super().__init__()
        self.object_map = dict(cl.DEFAULT_OBJECT_MAP if object_map is None else object_map)
        self.lane_map = dict(cl.DEFAULT_LANE_MAP if lane_map is None else lane_map)
        # Validate the mappings now: a bad class name must fail before anything is spawned.
        cl.semantic_lut(self.object_map, cl.OBJECT_CLASSES)
        cl.semantic_lut(self.lane_map, cl.LANE_CLASSES)
        self.min_pixels = int(min_pixels)
        self.lane_range_m = float(lane_range_m)
        self.sensor_timeout_s = float(sensor_timeout_s)
        self.client: Any = None
        self.world: Any = None
        self.ego: Any = None
        self._tm: Any = None
        self._original_settings: Any = None
        self._actors: List[Any] = []  # destroyed in reverse order
        self._walker_controllers: List[Any] = []
        self._sensors: Dict[str, Any] = {}
        self._queues: Dict[str, queue.Queue] = {}
        self._meta: Dict[str, Any] = {}

    # ------------------------------------------------------------------ open / close
    def _open(self, config: ScenarioConfig) -> None:
        conn = config.carla
        self.client = connect(conn.host, conn.port, conn.timeout_s)
        try:
            self._setup(config)
        except BaseException:
            self._close()
            raise

    def _setup(self, config: ScenarioConfig) -> None:
        import carla

        rng = random.Random(config.seed)
        world = self.client.get_world()
        if config.town not in world.get_map().name:
            self.client.set_timeout(max(float(config.carla.timeout_s), 60.0))  # map loads are slow
            try:
                world = self.client.load_world(config.town)
            finally:
                self.client.set_timeout(float(config.carla.timeout_s))
        self.world = world
        self._original_settings = world.get_settings()
        settings = world.get_settings()
        settings.synchronous_mode = True
        settings.fixed_delta_seconds = 1.0 / float(config.fps)
        world.apply_settings(settings)
        self._tm = self.client.get_trafficmanager(config.carla.traffic_manager_port)
        self._tm.set_synchronous_mode(True)
        self._tm.set_random_device_seed(int(config.seed))
        world.set_pedestrians_seed(int(config.seed))

        weather, tod, preset = weather_preset(config.weather, config.time_of_day, rng)
        params = getattr(carla.WeatherParameters, preset)
        if weather == "fog":
            params.fog_density = 60.0
            params.fog_distance = 10.0
        world.set_weather(params)
        self._meta = {
            "weather": weather,
            "time_of_day": tod,
            "carla_weather": preset,
            "town": world.get_map().name,
            "seed": config.seed,
            "backend": "carla",
        }

        lib = world.get_blueprint_library()
        spawn = world.get_map().get_spawn_points()
        if not spawn:
            raise RuntimeError("map %s has no spawn points" % world.get_map().name)
        order = list(config.spawn_points) if config.spawn_points else []
        order += [i for i in rng.sample(range(len(spawn)), len(spawn)) if i not in order]
        order = [i for i in order if i < len(spawn)]
        cars = [bp for bp in lib.filter("vehicle.*")
                if bp.has_attribute("number_of_wheels")
                and bp.get_attribute("number_of_wheels").as_int() >= 2]  # fmt: skip
        if not cars:
            raise RuntimeError("the CARLA blueprint library has no vehicles")
        fours = [bp for bp in cars if bp.get_attribute("number_of_wheels").as_int() == 4]
        named = [bp for bp in fours if bp.id == "vehicle.lincoln.mkz_2020"]
        ego_bp = (named or fours or cars)[0]
        ego_bp.set_attribute("role_name", "hero")
        for i in order:
            self.ego = world.try_spawn_actor(ego_bp, spawn[i])
            if self.ego is not None:
                order.remove(i)
                break
        if self.ego is None:
            raise RuntimeError("could not spawn the ego vehicle at any spawn point")
        self._actors.append(self.ego)
        tm_port = self._tm.get_port()
        self.ego.set_autopilot(True, tm_port)
        for i in order[: config.num_vehicles]:
            v = world.try_spawn_actor(rng.choice(cars), spawn[i])
            if v is not None:
                self._actors.append(v)
                v.set_autopilot(True, tm_port)
        self._spawn_walkers(config.num_walkers, rng)
        self._attach_cameras(config)
        world.tick()  # let the spawned actors settle; walkers' controllers start after a tick
        for ctrl in self._walker_controllers:
            ctrl.start()
            ctrl.go_to_location(world.get_random_location_from_navigation())
            ctrl.set_max_speed(1.0 + rng.random())

    def _spawn_walkers(self, n: int, rng: random.Random) -> None:
        world = self.world
        lib = world.get_blueprint_library()
        walkers = lib.filter("walker.pedestrian.*")
        ctrl_bp = lib.find("controller.ai.walker")
        import carla

        for _ in range(n * 3):
            if len(self._walker_controllers) >= n:
                break
            loc = world.get_random_location_from_navigation()
            if loc is None:
                continue
            bp = rng.choice(walkers)
            if bp.has_attribute("is_invincible"):
                bp.set_attribute("is_invincible", "false")
            w = world.try_spawn_actor(bp, carla.Transform(loc + carla.Location(z=1.0)))
            if w is None:
                continue
            self._actors.append(w)
            ctrl = world.spawn_actor(ctrl_bp, carla.Transform(), attach_to=w)
            self._actors.append(ctrl)
            self._walker_controllers.append(ctrl)

    def _attach_cameras(self, config: ScenarioConfig) -> None:
        import carla

        cam = config.camera
        lib = self.world.get_blueprint_library()
        mount = carla.Transform(
            carla.Location(x=1.0, z=float(cam.mount_height_m)),
            carla.Rotation(pitch=-float(cam.pitch_deg)),
        )
        for kind in SENSORS:
            bp = lib.find("sensor.camera." + kind)
            bp.set_attribute("image_size_x", str(cam.width))
            bp.set_attribute("image_size_y", str(cam.height))
            bp.set_attribute("fov", str(cam.fov_deg))
            bp.set_attribute("sensor_tick", "0.0")
            sensor = self.world.spawn_actor(bp, mount, attach_to=self.ego)
            self._actors.append(sensor)
            q: queue.Queue = queue.Queue()
            sensor.listen(q.put)
            self._sensors[kind] = sensor
            self._queues[kind] = q

    def _close(self) -> None:
        """Stop sensors, destroy actors (reverse order), restore world and TM settings."""
        errors: List[str] = []
        for ctrl in self._walker_controllers:
            try:
                ctrl.stop()
            except RuntimeError as exc:
                errors.append(str(exc))
        for sensor in self._sensors.values():
            try:
                sensor.stop()
            except RuntimeError as exc:
                errors.append(str(exc))
        for actor in reversed(self._actors):
            try:
                actor.destroy()
            except RuntimeError as exc:
                errors.append(str(exc))
        self._actors, self._walker_controllers = [], []
        self._sensors, self._queues = {}, {}
        self.ego = None
        try:
            if self._tm is not None:
                self._tm.set_synchronous_mode(False)
            if self.world is not None and self._original_settings is not None:
                self.world.apply_settings(self._original_settings)
        finally:
            self._tm = None
            self._original_settings = None
            self.world = None
            self.client = None
        if errors:
            print("[carla_bridge] %d error(s) while cleaning up: %s" % (len(errors), errors[0]))

    # ------------------------------------------------------------------ frames
    def frames(self) -> Iterator[Frame]:
        """Tick the world ``config.frames`` times and yield one labelled Frame per tick."""
        config = self._require_open()
        t0: Optional[float] = None
        for index in range(config.frames):
            frame_id = self.world.tick()
            data = {kind: self._wait(kind, frame_id) for kind in SENSORS}
            ts = float(data["rgb"].timestamp)
            t0 = ts if t0 is None else t0
            yield self._to_frame(config, index, ts - t0, data)

    def _wait(self, kind: str, frame_id: int) -> Any:
        while True:
            try:
                item = self._queues[kind].get(timeout=self.sensor_timeout_s)
            except queue.Empty:
                raise RuntimeError(
                    "no %s image for frame %d within %.1f s (server too slow? raise "
                    "sensor_timeout_s)" % (kind, frame_id, self.sensor_timeout_s)
                ) from None
            if item.frame == frame_id:
                return item
            if item.frame > frame_id:
                raise RuntimeError("%s sensor skipped frame %d" % (kind, frame_id))

    def _to_frame(
        self, config: ScenarioConfig, index: int, t: float, data: Dict[str, Any]
    ) -> Frame:
        rgb_img = data["rgb"]
        h, w = int(rgb_img.height), int(rgb_img.width)
        camera = cl.camera_model(w, h, float(rgb_img.fov))
        pose = cl.camera_pose(rgb_img.transform.get_matrix())
        sem = cl.semantic_tags(cl.bgra(data["semantic_segmentation"].raw_data, h, w))
        inst = cl.bgra(data["instance_segmentation"].raw_data, h, w)
        objects = cl.objects_from_instances(
            inst, self._class_map(config), self.min_pixels, self._full_boxes(pose, camera)
        )
        lines = cl.lane_lines_in_image(self._map_lines(), pose, camera)
        if index == 0:
            flow = np.zeros((h, w, 2), np.float32)
            valid = np.zeros((h, w), bool)
        else:
            raw = np.frombuffer(data["optical_flow"].raw_data, dtype=np.float32)
            flow, valid = cl.backward_flow(raw.reshape(h, w, 2))
        return Frame(
            sequence=config.sequence_name,
            index=index,
            timestamp=t,
            image=cl.bgra_to_rgb(cl.bgra(rgb_img.raw_data, h, w)),
            camera=camera,
            pose=pose,
            lane_instance_mask=cl.lane_instance_mask(sem, lines),
            lane_lines=lines,
            drivable_mask=cl.drivable_mask(sem, self.lane_map),
            objects=objects,
            flow=flow,
            flow_valid=valid,
            meta=dict(self._meta, carla_frame=int(rgb_img.frame)),
        )

    def _class_map(self, config: ScenarioConfig) -> Dict[str, str]:
        return {k: v for k, v in self.object_map.items() if v in config.classes}

    def _full_boxes(
        self, pose: np.ndarray, camera: Any
    ) -> Dict[int, Tuple[float, float, float, float]]:
        out: Dict[int, Tuple[float, float, float, float]] = {}
        for actor in self.world.get_actors():
            if not (actor.type_id.startswith("vehicle.") or actor.type_id.startswith("walker.")):
                continue
            verts = actor.bounding_box.get_world_vertices(actor.get_transform())
            box = cl.project_box(np.array([[v.x, v.y, v.z] for v in verts]), pose, camera)
            if box is not None:
                out[int(actor.id)] = box
        return out

    def _map_lines(self) -> List[Tuple[str, str, np.ndarray]]:
        """World polylines of the painted lane boundaries around the ego, near to far."""
        import carla

        cmap = self.world.get_map()
        wp = cmap.get_waypoint(
            self.ego.get_location(), project_to_road=True, lane_type=carla.LaneType.Driving
        )
        if wp is None:
            return []
        lanes = [wp]
        for step in ("get_left_lane", "get_right_lane"):
            cur = wp
            for _ in range(2):
                cur = getattr(cur, step)()
                if cur is None or cur.lane_type != carla.LaneType.Driving:
                    break
                lanes.append(cur)
        lines: List[Tuple[str, str, np.ndarray]] = []
        seen = set()
        for lane in lanes:
            for side, sign in (("left_lane_marking", -1.0), ("right_lane_marking", 1.0)):
                runs = self._boundary_runs(lane, side, sign)
                for ltype, color, pts in runs:
                    key = tuple(np.round(pts[0], 1))
                    if key in seen:
                        continue  # shared boundary of two neighbouring lanes
                    seen.add(key)
                    lines.append((ltype, color, pts))
        return lines

    def _boundary_runs(self, lane: Any, side: str, sign: float) -> List[Tuple[str, str, Any]]:
        step, walked, cur = 2.0, 0.0, lane
        runs: List[Tuple[str, str, Any]] = []
        pts: List[List[float]] = []
        key: Optional[Tuple[str, str]] = None
        while cur is not None and walked <= self.lane_range_m:
            mark = getattr(cur, side)
            ltype = cl.lane_type(mark.type)
            k = (ltype, cl.lane_color(mark.color)) if ltype else None
            if k != key and key is not None and len(pts) >= 2:
                runs.append((key[0], key[1], np.array(pts)))
            if k != key:
                pts = []
            key = k
            if k is not None:
                tf = cur.transform
                r = tf.get_right_vector()
                off = sign * cur.lane_width / 2.0
                loc = tf.location
                pts.append([loc.x + r.x * off, loc.y + r.y * off, loc.z + r.z * off])
            nxt = cur.next(step)
            cur = nxt[0] if nxt else None
            walked += step
        if key is not None and len(pts) >= 2:
            runs.append((key[0], key[1], np.array(pts)))
        return runs
