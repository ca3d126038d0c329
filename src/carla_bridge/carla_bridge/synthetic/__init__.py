"""Procedural scenario generator: pinhole-camera road scenes with exact labels and optical flow.

:class:`SyntheticBackend` implements :class:`carla_bridge.backend.SceneBackend`; the world model is
in :mod:`.world` / :mod:`.layout`, rasterisation in :mod:`.render`, ground/texture shading in
:mod:`.shade` and image formation (light, weather, sensor) in :mod:`.effects`.
"""

from carla_bridge.synthetic.backend import SyntheticBackend

__all__ = ["SyntheticBackend"]
