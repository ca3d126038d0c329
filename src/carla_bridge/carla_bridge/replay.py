"""Scenario replay (ROS-free): frames from a scenario YAML, a dataset or a CARLA recorder log.

- :func:`dataset_frames` reads a dataset split (``carla_bridge.dataset``) back into Frames;
- :func:`scenario_frames` renders the sequences a scenario YAML describes with the backend it
  names (``synthetic`` by default, ``carla`` when the YAML says so).
- :class:`CarlaRecorderReplay` replays a recording made with ``client.start_recorder(name)``
  through ``client.replay_file`` in synchronous mode and renders the project's Frames from cameras
  attached to the recorded ego (the actor with ``role_name`` ``hero``, or ``follow_id``).
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Optional, Union

import numpy as np

from carla_bridge.backend import make_backend
from carla_bridge.carla_backend import CarlaBackend, connect
from carla_bridge.classes import OBJECT_CLASSES
from carla_bridge.frame import CameraModel, Frame, LaneLineLabel, ObjectLabel
from carla_bridge.scenario import ScenarioConfig


def load_scenario(scenario: Union[str, ScenarioConfig, None]) -> ScenarioConfig:
    """A ScenarioConfig from a YAML path, an existing config, or the defaults (None)."""
    if scenario is None:
        return ScenarioConfig()
    if isinstance(scenario, ScenarioConfig):
        return scenario
    return ScenarioConfig.from_yaml(str(scenario))


def scenario_frames(
    scenario: Union[str, ScenarioConfig, None], sequences: int = 1, loop: bool = False
) -> Iterator[Frame]:
    """Frames of ``sequences`` consecutive sequences (seed, seed + 1, ...) of a scenario.

    With ``loop`` the sequences start over from the first one forever.
    """
    config = load_scenario(scenario)
    if sequences < 1:
        raise ValueError("sequences must be >= 1, got %d" % sequences)
    while True:
        for k in range(sequences):
            cfg = (
                config
                if k == 0
                else config.replace(
                    seed=config.seed + k, sequence="%s_%d" % (config.sequence_name, k)
                )
            )
            with make_backend(cfg) as backend:
                yield from backend.frames()
        if not loop:
            return


def dataset_frames(root: str, split: str = "val", loop: bool = False) -> Iterator[Frame]:
    """Frames of a dataset split written by ``carla-bridge generate``, in sequence order.

    Objects come from ``coco.json`` (masks decoded from RLE), lines from ``lanes.json``, the
    camera from ``ytvis.json`` and ``timestamp`` from the COCO image entry; the drivable mask is
    every non-background pixel of the lane class mask, so ``Frame.class_mask()`` reproduces it.
    """
    from pycocotools import mask as mask_utils

    from carla_bridge.dataset import iter_frames, load_coco, load_ytvis

    cameras: Dict[str, Dict[str, Any]] = {}
    for video in load_ytvis(root, split)["videos"]:
        if video.get("file_names") and video.get("camera"):
            cameras[video["file_names"][0].split("/")[0]] = video["camera"]
    stamps = {im["file_name"]: float(im.get("timestamp", 0.0)) for im in
              load_coco(root, split)["images"]}  # fmt: skip
    while True:
        for fr in iter_frames(root, split):
            h, w = fr.image.shape[:2]
            cam = cameras.get(fr.sequence)
            if cam:
                camera = CameraModel(
                    int(cam["width"]),
                    int(cam["height"]),
                    float(cam["fx"]),
                    float(cam["fy"]),
                    float(cam["cx"]),
                    float(cam["cy"]),
                )
            else:  # no intrinsics stored: a 90-degree pinhole
                camera = CameraModel(w, h, w / 2.0, w / 2.0, w / 2.0, h / 2.0)
            objects = []
            for ann in fr.annotations:
                segm = dict(ann["segmentation"])
                if isinstance(segm.get("counts"), list):
                    segm = mask_utils.frPyObjects(segm, h, w)
                objects.append(ObjectLabel(
                    track_id=int(ann.get("track_id", ann.get("id", 0))),
                    category=OBJECT_CLASSES[int(ann["category_id"]) - 1],
                    bbox=tuple(float(v) for v in ann["bbox"]),  # type: ignore[arg-type]
                    mask=mask_utils.decode(segm).astype(bool),
                    visible_fraction=float(ann.get("visible_fraction", -1.0)),
                    truncated=float(ann.get("truncated", 0.0)),
                ))  # fmt: skip
            lines = [LaneLineLabel(int(ln["id"]), ln["type"], ln["color"],
                                   np.asarray(ln["points"], np.float32).reshape(-1, 2))
                     for ln in fr.lines]  # fmt: skip
            yield Frame(
                sequence=fr.sequence, index=fr.index, timestamp=stamps.get(fr.file_name, 0.0),
                image=fr.image, camera=camera, pose=np.eye(4),
                lane_instance_mask=fr.lane_instance, lane_lines=lines,
                drivable_mask=fr.lane_class > 0, objects=objects, meta=dict(fr.meta),
            )  # fmt: skip
        if not loop:
            return


class CarlaRecorderReplay(CarlaBackend):
    """Frames rendered while CARLA replays a recorder log (``client.replay_file``).

    ``log`` is the recorder file name as the *server* sees it; ``start``/``duration`` are seconds
    of the recording (0 = from the start / to the end); the scenario's ``frames`` bounds the number
    of rendered frames and its ``fps`` the fixed step. Traffic is whatever the log contains:
    nothing is spawned except the cameras.
    """

    name = "carla-replay"

    def __init__(
        self,
        log: str,
        start: float = 0.0,
        duration: float = 0.0,
        follow_id: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not log:
            raise ValueError("CarlaRecorderReplay needs the recorder log name (log=...)")
        self.log, self.start, self.duration, self.follow_id = log, start, duration, follow_id

    def _setup(self, config: ScenarioConfig) -> None:
        info = self.client.show_recorder_file_info(self.log, False)
        if not info or "not found" in info.lower() or "error" in info.lower()[:200]:
            raise FileNotFoundError(
                "CARLA cannot read recorder log %r (server answered: %s); pass the path as the "
                "server sees it (relative names are under CarlaUE4/Saved)"
                % (self.log, (info or "").strip()[:200])
            )
        self.world = self.client.get_world()
        self._original_settings = self.world.get_settings()
        self.client.replay_file(self.log, self.start, self.duration, self.follow_id, False)
        self.world = self.client.get_world()  # the replay may have loaded another map
        settings = self.world.get_settings()
        settings.synchronous_mode = True
        settings.fixed_delta_seconds = 1.0 / float(config.fps)
        self.world.apply_settings(settings)
        self.world.tick()
        self.ego = self._find_ego()
        self._meta = {"backend": "carla-replay", "log": self.log, "start": self.start,
                      "town": self.world.get_map().name, "seed": config.seed}  # fmt: skip
        self._attach_cameras(config)
        self.world.tick()

    def _find_ego(self) -> Any:
        vehicles = list(self.world.get_actors().filter("vehicle.*"))
        for actor in vehicles:
            if self.follow_id and actor.id == self.follow_id:
                return actor
            if not self.follow_id and actor.attributes.get("role_name") == "hero":
                return actor
        raise RuntimeError(
            "no ego in the replayed log %r: no vehicle with %s; record with role_name=hero "
            "or pass follow_id" % (self.log, "id %d" % self.follow_id if self.follow_id
                                   else "role_name 'hero'")
        )  # fmt: skip

    def _close(self) -> None:
        try:
            if self.client is not None:
                self.client.stop_replayer(False)
        except RuntimeError:
            pass
        super()._close()


def recorder_info(
    host: str, port: int, log: str, timeout_s: float = 10.0, show_all: bool = False
) -> str:
    """The server's description of a recorder log (``client.show_recorder_file_info``)."""
    return str(connect(host, port, timeout_s).show_recorder_file_info(log, show_all))


def replay_frames(
    config: ScenarioConfig, log: str, start: float = 0.0, duration: float = 0.0, follow_id: int = 0
) -> Iterator[Frame]:
    """Frames of one replay of ``log`` (see :class:`CarlaRecorderReplay`)."""
    backend: Optional[CarlaRecorderReplay] = None
    try:
        backend = CarlaRecorderReplay(log, start, duration, follow_id)
        backend.open(config)
        yield from backend.frames()
    finally:
        if backend is not None:
            backend.close()
