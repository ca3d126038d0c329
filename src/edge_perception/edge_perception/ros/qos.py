"""QoS of the perception nodes' result publishers, from ``output_qos`` / ``output_depth``.

``output_qos: reliable`` (default) suits recorders, RViz's default subscriptions and nodes that
must see every result; ``best_effort`` suits a lossy link (Wi-Fi to a remote RViz), where a late
result is worth less than the next. Either way a best-effort subscriber receives the results; a
reliable subscriber receives nothing from a best-effort publisher (DDS matching rules), which
``ros2 topic info -v`` shows. ``output_depth`` is the history depth (0 = each topic's default).

Python 3.8 compatible.
"""

from __future__ import annotations

from typing import Any

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITY = {
    "reliable": ReliabilityPolicy.RELIABLE,
    "best_effort": ReliabilityPolicy.BEST_EFFORT,
}


def output_profile(config: Any, qos: Any = 10) -> Any:
    """The QoS of a result publisher whose default is ``qos`` (a depth or a profile).

    A depth becomes a volatile keep-last profile with the config's ``output_qos`` reliability and
    ``output_depth`` (0 keeps the depth given); a full profile (``label_info``'s latched one) and
    a config without ``output_qos`` (``None`` before configure) keep ``qos`` as it is.
    """
    kind = getattr(config, "output_qos", None)
    if isinstance(qos, QoSProfile) or kind is None:
        return qos
    depth = int(getattr(config, "output_depth", 0) or qos)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=RELIABILITY[kind],
        durability=DurabilityPolicy.VOLATILE,
    )
