"""The ROS-free pieces behind the nodes' bad-input handling (edge_perception.runtime.health)."""

from __future__ import annotations

from edge_perception.runtime.health import (
    ERROR,
    OK,
    WARN,
    EventWindow,
    InputMonitor,
    ThrottledReporter,
    check_stamp,
)

S = 10**9


def test_check_stamp_kinds_and_bounds():
    now = 1_000_000 * S
    assert check_stamp(now - S // 100, now, 10.0, 0.5) is None
    assert check_stamp(0, now, 10.0, 0.5) == "zero"
    assert check_stamp(now - 11 * S, now, 10.0, 0.5) == "stale"
    assert check_stamp(now - 9 * S, now, 10.0, 0.5) is None
    assert check_stamp(now - 3600 * S, now, 0.0, 0.5) is None  # age check off
    assert check_stamp(now + S // 4, now, 10.0, 0.5) is None  # within the skew tolerance
    assert check_stamp(now + S, now, 10.0, 0.5) == "future"
    assert check_stamp(now + 1, now, 10.0, 0.0) == "future"
    assert check_stamp(5 * S, 0, 10.0, 0.5) == "no_clock"  # sim time before the first /clock


def test_throttled_reporter_one_line_per_period_with_count():
    r = ThrottledReporter(10.0)
    assert r.hit("a", 0.0, "x") == 1  # the first one is reported at once
    assert [r.hit("a", t, "x") for t in (1.0, 2.0, 3.0)] == [None] * 3
    assert r.hit("b", 3.5, "y") == 1  # kinds are independent
    assert r.due(5.0) == []
    assert r.hit("a", 10.5, "x") == 4  # three suppressed plus this one
    r.hit("a", 11.0, "x2")
    r.hit("a", 12.0, "x3")
    assert r.due(15.0) == []
    assert r.due(20.6) == [("a", 2, "x3")]  # a burst that stopped is still summarised once
    assert r.due(40.0) == []


def test_event_window_forgets():
    w = EventWindow(10.0)
    w.add("a", 0.0)
    w.add("a", 5.0)
    w.add("b", 6.0)
    assert w.counts(6.0) == {"a": 2, "b": 1}
    assert w.counts(12.0) == {"a": 1, "b": 1}
    assert w.counts(16.5) == {}


def test_input_monitor_rate_and_stall():
    m = InputMonitor(window_s=2.0, min_rate_hz=5.0, stall_timeout_s=1.5)
    assert m.status(0.0) == (OK, "")  # inactive: no verdict
    m.start(0.0)
    assert m.status(0.5)[0] == OK  # too early to judge
    t = 0.0
    while t < 3.0:
        m.frame(t)
        t += 0.05  # 20 Hz
    assert m.status(3.0)[0] == OK and 15 < m.rate(3.0) < 25
    while t < 6.0:
        m.frame(t)
        t += 0.5  # 2 Hz
    level, text = m.status(6.0)
    assert level == WARN and "input rate" in text
    level, text = m.status(8.0)
    assert level == ERROR and "no input frame" in text
    m.stop()
    assert m.status(100.0) == (OK, "")
    m.start(200.0)
    assert m.status(202.0)[0] == ERROR  # a camera that never sends after activation
