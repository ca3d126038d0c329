"""The one-slot latest-frame mailbox and the node's running statistics (threads, no ROS)."""

from __future__ import annotations

import threading
import time

import pytest
from edge_perception.runtime.mailbox import LatestMailbox, RunningStats


def test_latest_wins_and_replacements_count_as_dropped():
    box: LatestMailbox[int] = LatestMailbox()
    assert box.take(timeout=0.0) is None
    assert not box.put(1)
    assert box.put(2) and box.put(3)
    assert len(box) == 1 and box.dropped == 2 and box.received == 3
    item, t = box.take(timeout=0.0)
    assert item == 3 and t <= time.monotonic()
    assert len(box) == 0 and box.take(timeout=0.0) is None


def test_take_wakes_on_put_and_on_close():
    box: LatestMailbox[str] = LatestMailbox()
    got = []
    th = threading.Thread(target=lambda: got.append(box.take(timeout=5.0)))
    th.start()
    box.put("frame")
    th.join(2.0)
    assert got and got[0][0] == "frame"
    th = threading.Thread(target=lambda: got.append(box.take(timeout=5.0)))
    start = time.monotonic()
    th.start()
    box.close()
    th.join(2.0)
    assert got[-1] is None and time.monotonic() - start < 2.0
    box.reopen()
    box.put("again")
    assert box.take(0.0)[0] == "again"


def test_fast_producer_slow_consumer_never_queues():
    box: LatestMailbox[int] = LatestMailbox()
    taken = []

    def consumer():
        while True:
            item = box.take(timeout=0.5)
            if item is None:
                return
            taken.append(item[0])
            time.sleep(0.01)

    th = threading.Thread(target=consumer)
    th.start()
    for i in range(200):
        box.put(i)
        assert len(box) <= 1
        time.sleep(0.0005)
    th.join(5.0)
    assert taken[-1] == 199 and box.dropped > 0
    assert len(taken) + box.dropped == 200


def test_running_stats():
    st = RunningStats(window=10)
    assert st.fps() == 0.0 and st.percentiles("inference_ms") == {}
    for v in range(1, 21):
        st.record(inference_ms=float(v))
        time.sleep(0.002)
    p = st.percentiles("inference_ms")
    assert p["p50"] == pytest.approx(15.5) and p["p99"] <= 20.0  # last 10 values: 11..20
    assert st.fps() > 10.0
    assert st.count_malformed("bad_step") == 1 and st.count_malformed("bad_step") == 2
    st.count_error()
    snap = st.snapshot()
    assert snap == {"processed": 20, "errors": 1, "malformed": {"bad_step": 2}}
    st.reset()
    assert st.snapshot()["processed"] == 0
