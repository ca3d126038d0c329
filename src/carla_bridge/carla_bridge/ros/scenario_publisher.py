"""Lifecycle node ``scenario_publisher``: camera images and ground truth from a scenario source.

Sources (parameter ``source``):

- ``scenario`` (default): the backend the scenario YAML (parameter ``scenario``, empty = built-in
  defaults = procedural generator) names, ``synthetic`` or ``carla``;
- ``dataset``: a dataset directory written by ``carla-bridge generate`` (``dataset_dir``,
  ``split``);
- ``bag``: a rosbag2 MCAP bag (``bag``) recorded by this node; messages are re-published as
  stored (same stamps), one image and its ground truth per timer tick.

Topics (names are parameters ``<key>_topic``): ``/camera/image_raw`` sensor_msgs/Image rgb8 and
``/camera/camera_info`` sensor_msgs/CameraInfo (sensor-data QoS); ``/ground_truth/detections``
vision_msgs/Detection2DArray, ``/ground_truth/instances`` edge_perception_msgs/InstanceArray,
``/ground_truth/lanes`` edge_perception_msgs/LaneSegmentation (reliable, depth 10);
``/ground_truth/label_info`` vision_msgs/LabelInfo (transient local); ``/clock`` when the node runs
with ``use_sim_time`` (the stamps are then the scenario's simulated time). Every message of one
frame carries the same header (stamp + ``frame_id``).

``record_bag`` (a new directory name) records every published message into a rosbag2 MCAP bag,
closed when the node is cleaned up or shut down.

Lifecycle: configure opens the source (connects to CARLA, opens the bag) and creates the
publishers; a failure (unreachable CARLA server, missing file) returns FAILURE with the reason
logged and leaves the node unconfigured. activate starts the timer at ``rate_hz`` (0 = the
scenario's fps); deactivate stops it; cleanup closes the source and the recording.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Optional

import rclpy
import rclpy.executors
from edge_perception.ros.spin import spin_until_shutdown
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import (
    DurabilityPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.serialization import serialize_message

from carla_bridge.bag import BagWriter
from carla_bridge.bag import read as read_bag
from carla_bridge.frame import Frame
from carla_bridge.replay import dataset_frames, load_scenario, scenario_frames
from carla_bridge.ros.frames import TOPICS, clock, frame_messages, label_info, msg_type_name

SOURCES = ("scenario", "dataset", "bag")
SENSOR_KEYS = ("image", "camera_info")


class ScenarioPublisher(LifecycleNode):
    """See the module docstring."""

    def __init__(self, node_name: str = "scenario_publisher", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.declare_parameter("source", "scenario")
        self.declare_parameter("scenario", "")
        self.declare_parameter("sequences", 1)
        self.declare_parameter("dataset_dir", "")
        self.declare_parameter("split", "val")
        self.declare_parameter("bag", "")
        self.declare_parameter("loop", False)
        self.declare_parameter("rate_hz", 0.0)
        self.declare_parameter("frame_id", "camera")
        self.declare_parameter("record_bag", "")
        self.declare_parameter("autostart", True)  # read by main(): configure + activate
        for key, (topic, _cls) in TOPICS.items():
            self.declare_parameter(key + "_topic", topic)
        self._pubs: Dict[str, Any] = {}
        self._frames: Optional[Iterator[Any]] = None
        self._first: Any = None
        self._timer: Any = None
        self._writer: Optional[BagWriter] = None
        self._rate = 10.0
        self._sim = False
        self._sim_base_ns = 0
        self._last_sim_ns = -1
        self._label_sent = False
        self.published_frames = 0
        self.finished = False

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        p = self._params()
        try:
            if p["source"] not in SOURCES:
                raise ValueError("source=%r is not one of %s" % (p["source"], ", ".join(SOURCES)))
            self._open_source(p)
            if p["record_bag"]:
                self._writer = BagWriter(p["record_bag"])
        except Exception as exc:  # noqa: BLE001 - every failure must leave the node alive
            self.get_logger().error("configure failed: %s" % exc)
            self._release()
            return TransitionCallbackReturn.FAILURE
        sensor = qos_profile_sensor_data
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)  # fmt: skip
        for key, (_topic, cls) in TOPICS.items():
            if key == "clock" and not (self._sim or p["source"] == "bag"):
                continue  # a bag's recorded /clock is replayed like every other topic
            qos = sensor if key in SENSOR_KEYS else latched if key == "label_info" else reliable
            self._pubs[key] = self.create_lifecycle_publisher(cls, p[key + "_topic"], qos)
        self.get_logger().info(
            "configured: source=%s rate=%.2f Hz sim_time=%s" % (p["source"], self._rate, self._sim)
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        # The node is the source of simulated time: its pace must not wait for /clock.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._timer = self.create_timer(1.0 / self._rate, self._tick, clock=steady)
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_timer()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    # ------------------------------------------------------------------ internals
    def _params(self) -> Dict[str, Any]:
        names = ["source", "scenario", "sequences", "dataset_dir", "split", "bag", "loop",
                 "rate_hz", "frame_id", "record_bag"] + [k + "_topic" for k in TOPICS]  # fmt: skip
        return {n: self.get_parameter(n).value for n in names}

    def _open_source(self, p: Dict[str, Any]) -> None:
        self._sim = bool(self.get_parameter("use_sim_time").value)
        rate = float(p["rate_hz"])
        if p["source"] == "scenario":
            config = load_scenario(p["scenario"] or None)
            rate = rate or float(config.fps)
            self._frames = scenario_frames(config, int(p["sequences"]), bool(p["loop"]))
        elif p["source"] == "dataset":
            if not p["dataset_dir"]:
                raise ValueError("source=dataset needs the dataset_dir parameter")
            self._frames = dataset_frames(p["dataset_dir"], p["split"], bool(p["loop"]))
        else:
            if not p["bag"]:
                raise ValueError("source=bag needs the bag parameter (a rosbag2 directory)")
            self._frames = self._bag_groups(p["bag"], bool(p["loop"]))
        # Produce the first item now (connects to CARLA, opens files): configure must fail when
        # the source cannot deliver.
        self._first = next(self._frames, None)
        if self._first is None:
            raise ValueError("the %s source is empty" % p["source"])
        self._rate = rate if rate > 0 else 10.0

    def _bag_groups(self, path: str, loop: bool) -> Iterator[Any]:
        """Lists of stored messages sharing one bag time (this node records a frame that way).

        With ``loop`` the bag starts over (stamps repeat as recorded).
        """
        while True:
            group: list = []
            for m in read_bag(path):
                if group and m.t_ns != group[0].t_ns:
                    yield group
                    group = []
                group.append(m)
            if group:
                yield group
            if not loop:
                return

    def _tick(self) -> None:
        try:
            if self._first is not None:
                item, self._first = self._first, None
            else:
                item = next(self._frames) if self._frames is not None else None
        except StopIteration:
            item = None
        except Exception as exc:  # noqa: BLE001 - a source error stops publishing, loudly
            self.get_logger().error("source failed: %s; publishing stops" % exc)
            item = None
        if item is None:
            if not self.finished:
                self.get_logger().info("source exhausted after %d frames" % self.published_frames)
            self.finished = True
            self._stop_timer()
            return
        if isinstance(item, list):
            self._publish_stored(item)
        else:
            self._publish_frame(item)
        self.published_frames += 1

    def _publish_frame(self, frame: Frame) -> None:
        if self._sim:
            stamp = self._sim_base_ns + int(round(frame.timestamp * 1e9))
            if stamp <= self._last_sim_ns:  # a new sequence starts at 0: keep time monotonic
                self._sim_base_ns = self._last_sim_ns + int(1e9 / self._rate)
                stamp = self._sim_base_ns + int(round(frame.timestamp * 1e9))
            self._last_sim_ns = stamp
            self._send("clock", clock(stamp), stamp)
        else:
            stamp = self.get_clock().now().nanoseconds
        frame_id = self.get_parameter("frame_id").value
        if not self._label_sent:
            self._send("label_info", label_info(stamp, frame_id), stamp)
            self._label_sent = True
        for key, msg in frame_messages(frame, stamp, frame_id).items():
            self._send(key, msg, stamp)

    def _send(self, key: str, msg: Any, stamp_ns: int) -> None:
        pub = self._pubs.get(key)
        if pub is None:
            return
        if self._writer is not None:  # record first: whatever was published is in the bag
            self._writer.write(pub.topic_name, msg_type_name(type(msg)), serialize_message(msg),
                               stamp_ns)  # fmt: skip
        pub.publish(msg)

    def _publish_stored(self, group: list) -> None:
        by_topic = {pub.topic_name: (key, pub) for key, pub in self._pubs.items()}
        for m in group:
            entry = by_topic.get(m.topic)
            if entry is None or msg_type_name(entry[1].msg_type) != m.msgtype:
                continue  # a topic this node does not publish (or of another type)
            if self._writer is not None:
                self._writer.write(m.topic, m.msgtype, m.data, m.t_ns)
            entry[1].publish(m.data)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self.destroy_timer(self._timer)
            self._timer = None

    def _release(self) -> None:
        self._stop_timer()
        frames, self._frames, self._first = self._frames, None, None
        if frames is not None and hasattr(frames, "close"):
            frames.close()  # closes the backend (generator finally / context manager)
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        self._pubs = {}
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
                self.get_logger().info("recorded %d messages" % writer.count)
            except Exception as exc:  # noqa: BLE001 - report, never lose the shutdown path
                self.get_logger().error("could not finish the recording: %s" % exc)
        self._label_sent = False


def main(args: Optional[list] = None) -> None:
    """Console entry: run the node; ``autostart:=true`` (default) configures and activates it."""
    rclpy.init(args=args)
    node = ScenarioPublisher()
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if node.get_parameter("autostart").value:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("staying unconfigured (see the error above)")
            else:
                node.trigger_activate()
        spin_until_shutdown(executor)
    except KeyboardInterrupt:  # Ctrl-C during configure/activate
        pass
    finally:
        node._release()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
