"""The shipped RViz layout (``config/edge_perception.rviz``) rewritten for a deployment.

The shipped file names absolute topics (``/camera/image_raw``, ``/lane_node/overlay``,
``/detection_node/markers``, ...), which hold for the default deployment only. Under a
``namespace`` (or another ``camera_topic``) the nodes publish elsewhere, so the launch files
(``rviz:=true``) and ``edge-perception run`` (``rviz:=true`` or ``--write-rviz FILE``) generate a
copy whose topics are the ones the deployment's nodes publish:

- a topic whose first segment names a node of the deployment (``/lane_node/overlay``) moves under
  the namespace (``/robot1/lane_node/overlay``), as the nodes' ``~/`` topics do;
- the camera topic (``/camera/image_raw`` in the shipped file) becomes the deployment's
  ``camera_topic`` resolved as ROS resolves it (absolute as given, relative under the namespace);
- a display of a node the deployment does not start (disabled, or a required model missing:
  ``vis_node``) is left out, so RViz subscribes to exactly what the deployment publishes;
- every other topic and setting is kept.

ROS-free (YAML in, YAML out); Python 3.8 compatible.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Dict, Iterable, Optional

import yaml

RVIZ_CONFIG = "edge_perception.rviz"
#: the camera topic the shipped layout shows
SHIPPED_CAMERA_TOPIC = "/camera/image_raw"


def normalize_namespace(namespace: str) -> str:
    """``"robot1"``, ``"/robot1/"`` -> ``"/robot1"``; ``""`` / ``"/"`` -> ``""``."""
    parts = [p for p in str(namespace or "").split("/") if p]
    return "/" + "/".join(parts) if parts else ""


def resolve_topic(topic: str, namespace: str, node: str = "") -> str:
    """The fully qualified name ROS gives ``topic`` in a node ``node`` under ``namespace``."""
    ns = normalize_namespace(namespace)
    if topic.startswith("/"):
        return topic
    if topic.startswith("~"):
        return "%s/%s%s" % (ns, node, topic[1:])
    return "%s/%s" % (ns, topic)


def display_topics(rviz: Dict[str, Any]) -> Dict[str, str]:
    """Topic -> display class of every display of an RViz config that names a topic."""
    out: Dict[str, str] = {}
    for display in (rviz.get("Visualization Manager") or {}).get("Displays") or []:
        topic = (display.get("Topic") or {}).get("Value")
        if topic:
            out[str(topic)] = str(display["Class"])
    return out


def rewrite(
    rviz: Dict[str, Any],
    namespace: str,
    node_names: Iterable[str],
    camera_topic: Optional[str] = None,
    not_started: Iterable[str] = (),
) -> Dict[str, Any]:
    """A copy of ``rviz`` with its topics moved as the module docstring says (``node_names``:
    the nodes started; ``not_started``: nodes whose displays are left out)."""
    ns = normalize_namespace(namespace)
    nodes, off = set(node_names), set(not_started)
    out = copy.deepcopy(rviz)
    manager = out.get("Visualization Manager") or {}
    kept = []
    for display in manager.get("Displays") or []:
        topic = display.get("Topic")
        value = str(topic.get("Value") or "") if isinstance(topic, dict) else ""
        first = value.lstrip("/").split("/", 1)[0]
        if value.startswith("/") and first in off:
            continue
        if value == SHIPPED_CAMERA_TOPIC and camera_topic:
            topic["Value"] = resolve_topic(camera_topic, ns)
        elif value.startswith("/") and first in nodes:
            topic["Value"] = ns + value
        kept.append(display)
    if "Displays" in manager:
        manager["Displays"] = kept
    return out


def generate(
    source_path: str,
    namespace: str,
    node_names: Iterable[str],
    camera_topic: Optional[str] = None,
    not_started: Iterable[str] = (),
) -> str:
    """YAML text of the RViz config at ``source_path`` rewritten for the deployment."""
    with open(source_path, encoding="utf-8") as f:
        rviz = yaml.safe_load(f)
    out = rewrite(rviz, namespace, node_names, camera_topic, not_started)
    head = (
        "# Generated from %s for namespace %r, camera topic %r (edge_perception.ros.rviz).\n"
        % (os.path.basename(source_path), normalize_namespace(namespace) or "/", camera_topic)
    )
    return head + yaml.safe_dump(out, sort_keys=False, default_flow_style=False)


def write(
    path: str,
    source_path: str,
    namespace: str,
    node_names: Iterable[str],
    camera_topic: Optional[str] = None,
    not_started: Iterable[str] = (),
) -> str:
    """Write :func:`generate`'s text to ``path`` (folders created, atomically); return it."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    text = generate(source_path, namespace, node_names, camera_topic, not_started)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as f:  # whole or absent, for whoever opens it
        f.write(text)
    os.replace(tmp, path)
    return path
