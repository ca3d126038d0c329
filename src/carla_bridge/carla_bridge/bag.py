"""rosbag2 MCAP bags without a ROS installation, through the ``rosbags`` library (ROS-free).

A bag is a directory ``<name>/`` with ``metadata.yaml`` (rosbag2 version 9, the layout ``ros2 bag
play`` of Jazzy/Kilted reads) and ``<name>_0.mcap``. Messages are stored as CDR bytes exactly as
``rclpy.serialization.serialize_message`` produces them, so the ROS side (``carla_bridge.ros``)
records and replays without any conversion here. Schemas come from a ``rosbags`` typestore of ROS 2
Kilted plus this project's message packages (``edge_perception_msgs``, ``vision_msgs``), parsed
from their ``.msg`` files.

Writing goes to ``<name>.partial/`` and is renamed to ``<name>/`` only when the bag is closed
without an error, so a crashed recording never looks like a complete bag.
"""

from __future__ import annotations

import glob
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

MSG_PACKAGES: Tuple[str, ...] = ("vision_msgs", "edge_perception_msgs")

_HERE = Path(os.path.realpath(__file__)).parent
# Source-tree locations (with --symlink-install this file resolves to src/).
_SOURCE_DIRS = {
    "edge_perception_msgs": _HERE.parent.parent / "edge_perception_msgs" / "msg",
    "vision_msgs": _HERE.parent.parent.parent / "third_party" / "vision_msgs" / "msg",
}


@dataclass(frozen=True)
class BagMessage:
    """One stored message: topic, type name (``pkg/msg/Name``), receive time (ns), CDR bytes."""

    topic: str
    msgtype: str
    t_ns: int
    data: bytes


def msg_dir(package: str) -> Path:
    """Directory holding ``package``'s ``.msg`` files (install space first, then the source tree).

    Raises FileNotFoundError naming the places searched and the fix.
    """
    tried: List[str] = []
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            cand = Path(prefix) / "share" / package / "msg"
            tried.append(str(cand))
            if glob.glob(str(cand / "*.msg")):
                return cand
    src = _SOURCE_DIRS.get(package)
    if src is not None:
        tried.append(str(src))
        if glob.glob(str(src / "*.msg")):
            return src
    raise FileNotFoundError(
        "no .msg files for %s in %s; build the workspace (scripts/setup.sh) and source env.sh"
        % (package, ", ".join(tried) or "(AMENT_PREFIX_PATH is empty)")
    )


def make_typestore(packages: Sequence[str] = MSG_PACKAGES) -> Any:
    """A ``rosbags`` typestore of ROS 2 Kilted plus the message packages named in ``packages``."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types: Dict[str, Any] = {}
    for pkg in packages:
        for path in sorted(msg_dir(pkg).glob("*.msg")):
            name = "%s/msg/%s" % (pkg, path.stem)
            types.update(get_types_from_msg(path.read_text(encoding="utf-8"), name))
    store.register(types)
    return store


class BagWriter:
    """Write CDR messages to a new rosbag2 MCAP bag directory (atomic on ``close``).

    Usage::

        with BagWriter("run1") as bag:
            bag.write("/camera/image_raw", "sensor_msgs/msg/Image", cdr_bytes, t_ns)
    """

    def __init__(self, path: str, typestore: Any = None) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(
                "bag %s already exists; pass a new directory name or delete the old bag" % path
            )
        self._partial = self.path.with_name(self.path.name + ".partial")
        if self._partial.exists():
            shutil.rmtree(self._partial)
        self._store = typestore if typestore is not None else make_typestore()
        self._writer = Writer(self._partial, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections: Dict[str, Any] = {}
        self._types: Dict[str, str] = {}
        self.count = 0
        self._closed = False

    def write(self, topic: str, msgtype: str, data: bytes, t_ns: int) -> None:
        """Append one message; ``msgtype`` is ``pkg/msg/Name`` and must stay fixed per topic."""
        if self._closed:
            raise RuntimeError("bag %s is closed" % self.path)
        conn = self._connections.get(topic)
        if conn is None:
            if msgtype not in self._store.fielddefs:
                raise ValueError(
                    "unknown message type %r for topic %s; known packages: ROS 2 Kilted + %s"
                    % (msgtype, topic, ", ".join(MSG_PACKAGES))
                )
            conn = self._writer.add_connection(topic, msgtype, typestore=self._store)
            self._connections[topic] = conn
            self._types[topic] = msgtype
        elif self._types[topic] != msgtype:
            raise ValueError(
                "topic %s was opened as %s, got %s" % (topic, self._types[topic], msgtype)
            )
        self._writer.write(conn, int(t_ns), bytes(data))
        self.count += 1

    def close(self) -> None:
        """Finish the bag and move it to its final name. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        os.replace(self._partial, self.path)
        # rosbags names the file after the directory it wrote (<name>.partial.mcap): rename it and
        # its entry in metadata.yaml.
        for f in list(self.path.glob(self._partial.name + "*.mcap")):
            os.replace(f, self.path / f.name.replace(self._partial.name, self.path.name, 1))
        meta = self.path / "metadata.yaml"
        text = meta.read_text(encoding="utf-8").replace(self._partial.name, self.path.name)
        tmp = meta.with_suffix(".yaml.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, meta)

    def abort(self) -> None:
        """Drop everything written so far (nothing is left on disk)."""
        if not self._closed:
            self._closed = True
            try:
                self._writer.close()
            finally:
                shutil.rmtree(self._partial, ignore_errors=True)

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _open_reader(path: str) -> Any:
    from rosbags.rosbag2 import Reader

    if not os.path.isfile(os.path.join(path, "metadata.yaml")):
        raise FileNotFoundError(
            "%s is not a rosbag2 bag (no metadata.yaml); pass the bag directory" % path
        )
    return Reader(path)


def topics(path: str) -> Dict[str, Tuple[str, int]]:
    """``{topic: (msgtype, message count)}`` of a bag."""
    with _open_reader(path) as reader:
        return {c.topic: (c.msgtype, int(c.msgcount)) for c in reader.connections}


def read(path: str, topics_: Optional[Sequence[str]] = None) -> Iterator[BagMessage]:
    """Messages of a bag in time order, optionally only those of ``topics_``."""
    with _open_reader(path) as reader:
        conns = [c for c in reader.connections if topics_ is None or c.topic in topics_]
        for conn, t_ns, data in reader.messages(connections=conns):
            yield BagMessage(conn.topic, conn.msgtype, int(t_ns), bytes(data))


def deserialize(message: BagMessage, typestore: Any = None) -> Any:
    """ROS-free decoding of a stored message into a ``rosbags`` message object."""
    store = typestore if typestore is not None else make_typestore()
    return store.deserialize_cdr(message.data, message.msgtype)
