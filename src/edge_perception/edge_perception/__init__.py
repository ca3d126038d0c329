"""edge_perception: a ROS-free perception core for edge boards, with thin ROS 2 wrappers.

Everything that computes (models, losses, training, data, pre/post-processing, inference backends,
quantization, export, metrics) lives here and imports without rclpy. Only the
:mod:`edge_perception.ros` sub-package imports rclpy and message packages.

Importing this package switches ONNX Runtime's telemetry off for the process (see
:data:`ORT_TELEMETRY_ENV`): it must happen before ``onnxruntime`` is first imported.
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# ONNX Runtime's Linux wheels (seen in 1.31.1) carry Microsoft's 1DS telemetry SDK
# (core/platform/posix/telemetry_1ds.cc + libcurl): when the C extension loads at
# `import onnxruntime` it opens an event store in ~/.cache/Microsoft/DeveloperTools/.onnxruntime/
# (deviceid + onnxruntime.db, SQLite) and records session events there; a background uploader
# then posts them to https://mobile.events.data.microsoft.com/OneCollector/1.0 -- about 9 s after
# the import and every few seconds after, so every long-lived process (nodes, training, benches)
# sends DNS queries for that host and also uploads the backlog that short-lived CLIs left in the
# store. `onnxruntime.disable_telemetry_events()` does not stop it (it only gates some events);
# the environment variable ORT_DISABLE_TELEMETRY=1 does, but only when it is set before the
# extension loads: then no store is opened and nothing is sent. This package is imported before
# any of its modules imports onnxruntime, so setting it here covers every ORT session the project
# creates (nodes, CLIs, quantization's calibration sessions, benches, tests); env.sh exports it
# too for code that imports onnxruntime on its own.
ORT_TELEMETRY_ENV = "ORT_DISABLE_TELEMETRY"
# True when onnxruntime was imported before this package and without the variable: its telemetry
# is already running and cannot be stopped from inside the process (see ort_telemetry_problem).
_ORT_LOADED_WITH_TELEMETRY = "onnxruntime" in _sys.modules and _os.environ.get(
    ORT_TELEMETRY_ENV, ""
).strip().lower() not in ("1", "true", "yes")
_os.environ[ORT_TELEMETRY_ENV] = "1"


def ort_telemetry_problem():
    """None, or one line saying why ONNX Runtime telemetry could not be switched off here."""
    if not _ORT_LOADED_WITH_TELEMETRY:
        return None
    return (
        "onnxruntime was imported before edge_perception without %s=1: its telemetry uploader "
        "is running in this process (export %s=1 before starting Python, e.g. source env.sh)"
        % (ORT_TELEMETRY_ENV, ORT_TELEMETRY_ENV)
    )
