"""Input health of a perception node (ROS-free): stamp checks, throttled reports, windowed counts,
input rate and stall detection.

What ``diagnostic_updater``'s ``FrequencyStatus`` / ``TimeStampStatus`` give a C++ node, for the
Python nodes, plus the node's bad-input bookkeeping:

- :func:`check_stamp`: a header stamp that is zero, older than ``max_age_s`` or ahead of the node
  clock by more than ``future_tolerance_s`` cannot give a latency (one such frame used to put
  1e12 ms into every percentile for a whole window); the frame is still processed, its latency is
  left out of the statistics and the event is counted and reported.
- :class:`ThrottledReporter`: one report per kind per period, with the count since the last one
  (a camera that breaks hours after configure is logged again, never flooding the log).
- :class:`EventWindow`: event counts over the last ``window_s`` seconds, so one bad frame turns
  the diagnostics WARN for a window, not until the next configure.
- :class:`InputMonitor`: input frame rate over the window (WARN below a minimum) and time since
  the last frame while active (ERROR past a stall timeout).

All times are ``time.monotonic()`` seconds except stamps (integer nanoseconds of the node clock,
which follows ``/clock`` under ``use_sim_time``). Thread-safe where the node needs it.
Python 3.8 compatible.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Deque, Dict, List, Optional, Tuple

#: diagnostic levels (the values of ``diagnostic_msgs/DiagnosticStatus`` OK / WARN / ERROR)
OK, WARN, ERROR = 0, 1, 2

#: what :func:`check_stamp` returns for a stamp that cannot give a latency
STAMP_KINDS: Tuple[str, ...] = (
    "zero",  # header.stamp is 0 (driver never set it)
    "stale",  # older than max_age_s on the node clock
    "future",  # ahead of the node clock by more than future_tolerance_s
    "no_clock",  # the node clock reads 0 (use_sim_time and no /clock yet): no latency possible
)


def check_stamp(
    stamp_ns: int, now_ns: int, max_age_s: float, future_tolerance_s: float
) -> Optional[str]:
    """None for a stamp that gives a meaningful latency at ``now_ns``, else its kind.

    ``max_age_s <= 0`` disables the age check; ``future_tolerance_s`` is the clock skew allowed
    between the camera and the node (a stamp up to that far ahead is accepted).
    """
    if stamp_ns <= 0:
        return "zero"
    if now_ns <= 0:
        return "no_clock"
    age_ns = now_ns - stamp_ns
    if age_ns < -int(future_tolerance_s * 1e9):
        return "future"
    if max_age_s > 0 and age_ns > int(max_age_s * 1e9):
        return "stale"
    return None


class ThrottledReporter:
    """At most one report per kind every ``period_s`` seconds, carrying the count since the last.

    :meth:`hit` counts one event and says whether to report it now (with how many events of that
    kind the report covers); :meth:`due` returns the kinds whose suppressed events are ready to be
    summarised (call it periodically so a burst that stopped is still reported once).
    """

    def __init__(self, period_s: float = 10.0) -> None:
        self.period_s = float(period_s)
        self._lock = threading.Lock()
        # kind -> [time of the last report or None, events since it, last text]
        self._kinds: Dict[str, List] = {}

    def reset(self) -> None:
        with self._lock:
            self._kinds.clear()

    def hit(self, kind: str, now: float, text: str = "") -> Optional[int]:
        """Count one ``kind`` event at ``now``; the number of events to report now, or None."""
        with self._lock:
            st = self._kinds.setdefault(kind, [None, 0, text])
            st[1] += 1
            st[2] = text or st[2]
            if st[0] is None or now - st[0] >= self.period_s:
                n, st[0], st[1] = st[1], now, 0
                return n
            return None

    def due(self, now: float) -> List[Tuple[str, int, str]]:
        """``(kind, suppressed count, last text)`` of each kind whose summary is due now."""
        out = []
        with self._lock:
            for kind, st in self._kinds.items():
                if st[1] and st[0] is not None and now - st[0] >= self.period_s:
                    out.append((kind, st[1], st[2]))
                    st[0], st[1] = now, 0
        return out


class EventWindow:
    """Counts of events per kind over the last ``window_s`` seconds (thread-safe)."""

    def __init__(self, window_s: float = 10.0, maxlen: int = 100_000) -> None:
        self.window_s = float(window_s)
        self._lock = threading.Lock()
        self._events: Deque[Tuple[float, str]] = deque(maxlen=maxlen)

    def reset(self) -> None:
        with self._lock:
            self._events.clear()

    def add(self, kind: str, now: float) -> None:
        with self._lock:
            self._events.append((now, kind))

    def counts(self, now: float) -> Dict[str, int]:
        """``{kind: events in (now - window_s, now]}``, kinds with none left out."""
        out: Dict[str, int] = {}
        with self._lock:
            while self._events and now - self._events[0][0] > self.window_s:
                self._events.popleft()
            for t, kind in self._events:
                if t <= now:
                    out[kind] = out.get(kind, 0) + 1
        return out


class InputMonitor:
    """Input frame rate over a window and time since the last frame, while active.

    ``min_rate_hz <= 0`` disables the rate check, ``stall_timeout_s <= 0`` the stall check. The
    rate is judged once the node has been active for ``min(window_s, max(1, 2 / min_rate_hz))``
    seconds (a just-activated node has seen too few frames to tell), over the part of the window
    since activation.
    """

    def __init__(
        self, window_s: float = 10.0, min_rate_hz: float = 0.0, stall_timeout_s: float = 0.0
    ) -> None:
        self.window_s = float(window_s)
        self.min_rate_hz = float(min_rate_hz)
        self.stall_timeout_s = float(stall_timeout_s)
        self._lock = threading.Lock()
        self._arrivals: Deque[float] = deque(maxlen=100_000)
        self._active_since: Optional[float] = None
        self._last: Optional[float] = None

    def start(self, now: float) -> None:
        """The node became active (the stall clock starts now)."""
        with self._lock:
            self._active_since = now
            self._last = None
            self._arrivals.clear()

    def stop(self) -> None:
        with self._lock:
            self._active_since = None

    @property
    def active(self) -> bool:
        return self._active_since is not None

    def frame(self, now: float) -> None:
        """One input frame arrived at ``now``."""
        with self._lock:
            self._arrivals.append(now)
            self._last = now

    def rate(self, now: float) -> float:
        """Frames per second over the window (the part of it since activation)."""
        with self._lock:
            while self._arrivals and now - self._arrivals[0] > self.window_s:
                self._arrivals.popleft()
            n = len(self._arrivals)
            since = self._active_since
        span = self.window_s if since is None else min(self.window_s, now - since)
        return n / span if span > 0 else 0.0

    def since_last(self, now: float) -> Optional[float]:
        """Seconds since the last frame (since activation when none came yet); None inactive."""
        with self._lock:
            if self._active_since is None:
                return None
            return now - (self._last if self._last is not None else self._active_since)

    def status(self, now: float) -> Tuple[int, str]:
        """``(level, message)``: ERROR when stalled, WARN when the rate is low, else OK, ''."""
        since_last = self.since_last(now)
        if since_last is None:
            return OK, ""
        if self.stall_timeout_s > 0 and since_last > self.stall_timeout_s:
            return ERROR, "no input frame for %.1f s (stall_timeout %g s)" % (
                since_last,
                self.stall_timeout_s,
            )
        if self.min_rate_hz > 0:
            with self._lock:
                active_for = now - self._active_since if self._active_since is not None else 0.0
            settle = min(self.window_s, max(1.0, 2.0 / self.min_rate_hz))
            rate = self.rate(now)
            if active_for >= settle and rate < self.min_rate_hz:
                return WARN, "input rate %.2f Hz below min_input_rate %g Hz" % (
                    rate,
                    self.min_rate_hz,
                )
        return OK, ""
