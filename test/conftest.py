"""Test-wide set-up: ROS 2 discovery confined to this host, on a domain of this run's own.

The project sets these itself so no test depends on (or leaks to) the caller's network:
`ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST` (Kilted/Jazzy) and `ROS_LOCALHOST_ONLY=1` (Humble),
plus a `ROS_DOMAIN_ID` of each test's own (processes the tests spawn inherit it): a node or
process an earlier test left behind, still shutting down, can never answer a later test's
service call or appear in its graph.
"""

from __future__ import annotations

import os
import random

from edge_perception.ros.runner import apply_discovery_range  # noqa: E402 (ROS-free module)

_DOMAIN = str(random.SystemRandom().randint(1, 101))
_MAX_DOMAIN = 101  # highest domain id whose ports stay below the Linux ephemeral range
# Never inherit the caller's choice (e.g. the env.sh of another checkout).
for _var in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE"):
    os.environ.pop(_var, None)
apply_discovery_range(os.environ, "LOCALHOST")  # + the loopback-only Fast DDS profile
os.environ["ROS_DOMAIN_ID"] = os.environ.get("EP_TEST_DOMAIN_ID", _DOMAIN)
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402


def _have_rclpy() -> bool:
    try:
        import rclpy  # noqa: F401

        return True
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    if _have_rclpy():
        return
    skip = pytest.mark.skip(reason="rclpy is not importable: source env.sh (scripts/setup.sh)")
    for item in items:
        if "ros" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rclpy_context():
    """An initialised rclpy context of its own, shut down after the test."""
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx)
    try:
        yield ctx
    finally:
        ctx.try_shutdown()


_next_domain = [int(os.environ["ROS_DOMAIN_ID"])]


@pytest.fixture(autouse=True)
def ros_domain_id(monkeypatch) -> int:
    """The ROS_DOMAIN_ID of this test: the next one after the previous test's (1..101, cycling)."""
    _next_domain[0] = _next_domain[0] % _MAX_DOMAIN + 1
    monkeypatch.setenv("ROS_DOMAIN_ID", str(_next_domain[0]))
    return _next_domain[0]
