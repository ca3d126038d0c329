"""A one-slot mailbox for the latest camera frame, and the node's running statistics (ROS-free).

The subscription callback only :meth:`LatestMailbox.put` s; the inference worker
:meth:`LatestMailbox.take` s. A frame replaced before the worker took it counts as *dropped*, so
the queue never grows: a slow model sees the newest frame, never a backlog.

Python 3.8 compatible.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Deque, Dict, Generic, Optional, Tuple, TypeVar

import numpy as np

T = TypeVar("T")


class LatestMailbox(Generic[T]):
    """Thread-safe single slot holding ``(item, monotonic receive time)``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Optional[Tuple[T, float]] = None
        self._closed = False
        self.received = 0
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Store ``item`` (replacing an untaken one, which counts as dropped); True if replaced."""
        with self._cond:
            replaced = self._item is not None
            if replaced:
                self.dropped += 1
            self._item = (item, time.monotonic())
            self.received += 1
            self._cond.notify()
            return replaced

    def take(self, timeout: Optional[float] = None) -> Optional[Tuple[T, float]]:
        """Wait up to ``timeout`` s for an item; None on timeout or when closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def clear(self) -> None:
        with self._cond:
            self._item = None

    def close(self) -> None:
        """Wake a waiting :meth:`take` (which returns None) and refuse to block again."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False
            self._item = None

    def __len__(self) -> int:
        with self._cond:
            return 0 if self._item is None else 1


class RunningStats:
    """Per-node counters and a sliding window of per-frame latencies (thread-safe)."""

    def __init__(self, window: int = 300) -> None:
        self._lock = threading.Lock()
        self._window = int(window)
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.processed = 0
            self.errors = 0
            self.malformed: Dict[str, int] = {}
            self._stamps: Deque[float] = deque(maxlen=self._window)
            self._series: Dict[str, Deque[float]] = {}

    def record(self, **values_ms: float) -> None:
        """Count one processed frame and its timings (``inference_ms=..., end_to_end_ms=...``)."""
        with self._lock:
            self.processed += 1
            self._stamps.append(time.monotonic())
            for k, v in values_ms.items():
                self._series.setdefault(k, deque(maxlen=self._window)).append(float(v))

    def count_malformed(self, kind: str) -> int:
        """Count one malformed input of ``kind``; returns the count for that kind."""
        with self._lock:
            self.malformed[kind] = self.malformed.get(kind, 0) + 1
            return self.malformed[kind]

    def count_error(self) -> None:
        with self._lock:
            self.errors += 1

    def fps(self, horizon_s: float = 5.0) -> float:
        """Processed frames per second over the last ``horizon_s`` seconds."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._stamps if now - t <= horizon_s]
        if len(recent) < 2:
            return 0.0
        span = now - recent[0]
        return (len(recent) - 1) / span if span > 0 else 0.0

    def percentiles(self, key: str, qs: Tuple[float, ...] = (50, 90, 99)) -> Dict[str, float]:
        """``{"p50": ..., ...}`` of a recorded series over the window ({} when empty)."""
        with self._lock:
            data = list(self._series.get(key, ()))
        if not data:
            return {}
        vals = np.percentile(np.asarray(data), qs)
        return {f"p{int(q)}": float(v) for q, v in zip(qs, vals)}

    def snapshot(self) -> Dict[str, Any]:
        with self._lock:
            return {
                "processed": self.processed,
                "errors": self.errors,
                "malformed": dict(self.malformed),
            }
