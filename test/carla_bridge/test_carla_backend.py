"""CarlaBackend: a clear error for an unreachable server; a real run when CARLA_HOST answers."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
from carla_bridge.scenario import ScenarioConfig

pytest.importorskip("carla", reason="the CARLA client (pip install carla==0.9.16)")

from carla_bridge.carla_backend import (  # noqa: E402
    CarlaBackend,
    CarlaUnavailableError,
    connect,
    weather_preset,
)


def closed_port() -> int:
    """A localhost TCP port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_names_host_port_and_timeout():
    port = closed_port()
    with pytest.raises(CarlaUnavailableError) as err:
        connect("127.0.0.1", port, 0.3)
    msg = str(err.value)
    assert f"127.0.0.1:{port}" in msg and "0.3 s" in msg and "synthetic" in msg


def test_open_unreachable_leaves_backend_closed():
    cfg = ScenarioConfig.from_dict(
        {
            "backend": "carla",
            "carla": {"host": "127.0.0.1", "port": closed_port(), "timeout_s": 0.3},
        }
    )
    backend = CarlaBackend()
    with pytest.raises(CarlaUnavailableError):
        backend.open(cfg)
    assert backend.config is None and backend.client is None
    with pytest.raises(RuntimeError, match="call open"):
        next(iter(backend.frames()))
    backend.close()  # harmless


def test_bad_class_mapping_fails_before_connecting():
    with pytest.raises(ValueError, match="unknown project class 'lorry'"):
        CarlaBackend(object_map={"Truck": "lorry"})


def test_weather_presets_resolve_to_real_carla_parameters():
    import random

    import carla

    for weather in ("clear", "cloudy", "rain", "fog"):
        for tod in ("day", "dusk", "night"):
            _, _, preset = weather_preset(weather, tod, random.Random(0))
            assert isinstance(getattr(carla.WeatherParameters, preset), carla.WeatherParameters)
    w1 = weather_preset("random", "random", random.Random(3))
    assert w1 == weather_preset("random", "random", random.Random(3))


def _carla_client():
    host = os.environ.get("CARLA_HOST", "")
    if not host:
        pytest.skip("no CARLA server: set CARLA_HOST (and CARLA_PORT) to run against one")
    try:
        return connect(host, int(os.environ.get("CARLA_PORT", "2000")), 5.0)
    except CarlaUnavailableError as exc:
        pytest.skip(f"CARLA_HOST does not answer: {exc}")


@pytest.mark.carla
@pytest.mark.slow
def test_frames_from_a_live_server(tmp_path):
    host = os.environ.get("CARLA_HOST", "")
    sync_before = _carla_client().get_world().get_settings().synchronous_mode
    cfg = ScenarioConfig.from_dict({
        "backend": "carla", "frames": 3, "fps": 10, "num_vehicles": 5, "num_walkers": 3,
        "weather": "clear", "time_of_day": "day", "town": "Town10HD",
        "camera": {"width": 320, "height": 192},
        "carla": {"host": host, "port": int(os.environ.get("CARLA_PORT", "2000"))},
    })  # fmt: skip
    with CarlaBackend() as backend:
        backend.open(cfg)
        world = backend.world
        frames = list(backend.frames())
    assert [f.index for f in frames] == [0, 1, 2]
    assert frames[0].image.shape == (192, 320, 3) and frames[0].drivable_mask.any()
    assert np.isclose(frames[2].timestamp, 0.2, atol=1e-3)
    assert world.get_settings().synchronous_mode == sync_before  # settings restored on close
    assert frames[1].flow is not None and frames[1].flow_valid is not None


def test_recorder_replay_needs_a_log_and_a_server():
    from carla_bridge.replay import CarlaRecorderReplay, replay_frames

    with pytest.raises(ValueError, match="recorder log name"):
        CarlaRecorderReplay("")
    cfg = ScenarioConfig.from_dict(
        {
            "backend": "carla",
            "carla": {"host": "127.0.0.1", "port": closed_port(), "timeout_s": 0.3},
        }
    )
    with pytest.raises(CarlaUnavailableError, match="did not answer within 0.3 s"):
        next(replay_frames(cfg, "recording01.log"))


@pytest.mark.carla
def test_recorder_replay_of_a_missing_log_is_refused():
    client = _carla_client()
    from carla_bridge.replay import CarlaRecorderReplay

    host, port = os.environ["CARLA_HOST"], int(os.environ.get("CARLA_PORT", "2000"))
    cfg = ScenarioConfig.from_dict({"backend": "carla", "carla": {"host": host, "port": port}})
    sync_before = client.get_world().get_settings().synchronous_mode
    with pytest.raises(FileNotFoundError, match="cannot read recorder log"):
        CarlaRecorderReplay("no_such_log_4711.log").open(cfg)
    assert client.get_world().get_settings().synchronous_mode == sync_before
