"""The scene-backend protocol: where frames come from (procedural generator or CARLA).

Usage, identical for both backends::

    with make_backend(config) as backend:      # open(config) on enter, close() on exit
        for frame in backend.frames():         # config.frames Frames of one sequence
            ...

A backend produces exactly one sequence per ``open``; to render another sequence open it again with
another config (e.g. ``config.replace(seed=..., sequence=...)``). ``frames()`` yields
:class:`carla_bridge.frame.Frame` objects with every label filled that the backend can produce.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

from carla_bridge.frame import Frame
from carla_bridge.scenario import ScenarioConfig


class SceneBackend:
    """Base class of scene backends; subclasses implement ``_open``, ``frames`` and ``_close``."""

    name = "abstract"

    def __init__(self) -> None:
        self.config: Optional[ScenarioConfig] = None

    def open(self, config: ScenarioConfig) -> SceneBackend:
        """Prepare one sequence described by ``config`` (connect, spawn, seed). Returns self."""
        if self.config is not None:
            self.close()
        self._open(config)
        self.config = config
        return self

    def frames(self) -> Iterator[Frame]:  # pragma: no cover - abstract
        """Yield ``config.frames`` frames of the opened sequence, index 0, 1, 2, ..."""
        raise NotImplementedError

    def close(self) -> None:
        """Release everything ``open`` acquired (actors, sockets). Safe to call twice."""
        if self.config is not None:
            try:
                self._close()
            finally:
                self.config = None

    def _open(self, config: ScenarioConfig) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _close(self) -> None:
        """Subclass hook for ``close``."""

    def _require_open(self) -> ScenarioConfig:
        if self.config is None:
            raise RuntimeError(f"{self.name} backend: call open(config) before frames()")
        return self.config

    def __enter__(self) -> SceneBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_backend(config: ScenarioConfig, open_now: bool = True, **options: Any) -> SceneBackend:
    """Create the backend ``config.backend`` names and (by default) open it with ``config``.

    ``options`` go to the backend's constructor (e.g. ``effects=False`` for the synthetic one).

    The CARLA backend (``carla_bridge.carla_backend.CarlaBackend``) is imported lazily, so the
    ``carla`` client package is needed only when it is used.
    """
    if config.backend == "synthetic":
        from carla_bridge.synthetic import SyntheticBackend

        backend: SceneBackend = SyntheticBackend(**options)
    elif config.backend == "carla":
        try:
            from carla_bridge.carla_backend import CarlaBackend
        except ImportError as exc:
            raise RuntimeError(
                "the carla backend needs the CARLA Python client (pip install carla==0.9.16) "
                f"and carla_bridge.carla_backend: {exc}"
            ) from exc
        backend = CarlaBackend(**options)
    else:
        raise ValueError(f"unknown backend {config.backend!r}; use 'synthetic' or 'carla'")
    if open_now:
        backend.open(config)
    return backend
