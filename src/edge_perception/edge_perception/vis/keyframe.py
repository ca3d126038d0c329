"""When to run the full keyframe path (YolactEdge keyframes, made time- and content-aware).

:class:`KeyframePolicy.decide` returns ``(is_key, reason)`` for a frame; the first applicable
reason wins, in this order:

- ``"first"`` / ``"reset"``: no keyframe yet, or :meth:`KeyframePolicy.reset` was called (a
  time jump back, a new bag, a camera change);
- ``"stamp_gap"``: more than ``max_stamp_gap_s`` since the previous frame (dropped frames: the
  flow between distant frames is unreliable);
- ``"age"``: the keyframe is older than ``max_keyframe_age_s`` (time, so 10 Hz and 30 Hz cameras
  get the same staleness bound);
- ``"interval"``: ``keyframe_interval`` frames since the keyframe (1 = every frame a keyframe);
- ``"flow"``: the previous non-keyframe's mean flow magnitude exceeded ``max_mean_flow_px``
  (the warped features are then least trustworthy);
- ``"lost_tracks"``: the tracker lost at least ``max_lost_tracks`` tracks on the previous frame.

Runtime module: Python 3.8 compatible, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass
class KeyframePolicyConfig:
    """Thresholds of :class:`KeyframePolicy`; ``None`` / 0 disables a criterion."""

    keyframe_interval: int = 5
    max_keyframe_age_s: Optional[float] = 0.5
    max_stamp_gap_s: Optional[float] = 0.25
    max_mean_flow_px: Optional[float] = 12.0
    max_lost_tracks: int = 2


class KeyframePolicy:
    """Stateful keyframe decision per frame (module docstring)."""

    def __init__(self, config: Optional[KeyframePolicyConfig] = None) -> None:
        self.config = config or KeyframePolicyConfig()
        if self.config.keyframe_interval < 1:
            raise ValueError("keyframe_interval must be >= 1")
        self._first = True
        self.reset()

    def reset(self) -> None:
        """Force the next frame to be a keyframe."""
        self._key_stamp: Optional[float] = None
        self._last_stamp: Optional[float] = None
        self._since_key = 0
        self._pending_reset = True
        self._mean_flow = 0.0
        self._lost = 0

    def observe(self, mean_flow_px: Optional[float] = None, lost_tracks: int = 0) -> None:
        """Report the last processed frame's mean flow (non-key path) and lost-track count."""
        self._mean_flow = float(mean_flow_px or 0.0)
        self._lost = int(lost_tracks)

    def decide(self, stamp_s: float) -> Tuple[bool, str]:
        """``(is_keyframe, reason)`` for a frame stamped ``stamp_s``; updates the state."""
        c = self.config
        reason = ""
        if self._pending_reset:
            reason = "first" if self._first else "reset"
        elif self._last_stamp is not None and stamp_s < self._last_stamp:
            reason = "reset"  # time went backwards (a replay restarted)
        elif (
            c.max_stamp_gap_s and stamp_s - float(self._last_stamp or stamp_s) > c.max_stamp_gap_s
        ):
            reason = "stamp_gap"
        elif (
            c.max_keyframe_age_s and stamp_s - float(self._key_stamp or 0.0) > c.max_keyframe_age_s
        ):
            reason = "age"
        elif self._since_key + 1 >= c.keyframe_interval:
            reason = "interval"
        elif c.max_mean_flow_px and self._mean_flow > c.max_mean_flow_px:
            reason = "flow"
        elif c.max_lost_tracks and self._lost >= c.max_lost_tracks:
            reason = "lost_tracks"
        self._last_stamp = stamp_s
        if reason:
            self._key_stamp = stamp_s
            self._since_key = 0
            self._pending_reset = self._first = False
            self._mean_flow, self._lost = 0.0, 0
            return True, reason
        self._since_key += 1
        return False, ""
