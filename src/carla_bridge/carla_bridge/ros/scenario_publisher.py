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

``image_transport`` (``raw`` default, ``compressed``, ``both``) picks how the camera image goes
out: rgb8 ``Image`` on the image topic and / or ``sensor_msgs/CompressedImage`` on
``<image topic>/compressed`` (image_transport's naming; ``compressed_format`` jpeg | png,
``jpeg_quality``). A bag's stored images are converted to the wanted transports: a raw image is
compressed, a compressed one (as a camera's bag holds) decoded, when the bag lacks the other.

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
from edge_perception.ros import convert
from edge_perception.ros.spin import spin_until_shutdown
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import (
    DurabilityPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image

from carla_bridge.bag import BagMessage, BagWriter
from carla_bridge.bag import read as read_bag
from carla_bridge.frame import Frame
from carla_bridge.replay import dataset_frames, load_scenario, scenario_frames
from carla_bridge.ros.frames import (
    COMPRESSED_FORMATS,
    IMAGE_TRANSPORTS,
    TOPICS,
    clock,
    compressed_topic,
    frame_messages,
    label_info,
    msg_type_name,
)

SOURCES = ("scenario", "dataset", "bag")
SENSOR_KEYS = ("image", "image_compressed", "camera_info")
IMAGE_TYPE, COMPRESSED_TYPE = msg_type_name(Image), msg_type_name(CompressedImage)


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
        self.declare_parameter("image_transport", "raw")  # raw | compressed | both
        self.declare_parameter("compressed_format", "jpeg")  # jpeg | png
        self.declare_parameter("jpeg_quality", 80)  # 1..100 (image_transport's default)
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
        self._codec = ("raw", "jpeg", 80)
        self.published_frames = 0
        self.finished = False

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        p = self._params()
        try:
            if p["source"] not in SOURCES:
                raise ValueError("source=%r is not one of %s" % (p["source"], ", ".join(SOURCES)))
            _check_transport(p)
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
            if key == "image" and p["image_transport"] == "compressed":
                continue
            qos = sensor if key in SENSOR_KEYS else latched if key == "label_info" else reliable
            self._pubs[key] = self.create_lifecycle_publisher(cls, p[key + "_topic"], qos)
        if p["image_transport"] != "raw":
            self._pubs["image_compressed"] = self.create_lifecycle_publisher(
                CompressedImage, compressed_topic(p["image_topic"]), sensor
            )
        self._codec = (p["image_transport"], p["compressed_format"], int(p["jpeg_quality"]))
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
                 "rate_hz", "frame_id", "record_bag", "image_transport", "compressed_format",
                 "jpeg_quality"] + [k + "_topic" for k in TOPICS]  # fmt: skip
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
        for key, msg in frame_messages(frame, stamp, frame_id, *self._codec).items():
            self._send(key, msg, stamp)

    def _send(self, key: str, msg: Any, stamp_ns: int) -> None:
        pub = self._pubs.get(key)
        if pub is None:
            return
        if self._writer is not None:  # record first: whatever was published is in the bag
            self._writer.write(pub.topic_name, msg_type_name(type(msg)), serialize_message(msg),
                               stamp_ns)  # fmt: skip
        pub.publish(msg)

    def _transcode(self, group: list) -> list:
        """``group`` plus its camera image in the transports published here that the bag lacks
        at this time (a raw image compressed, or a compressed one decoded to rgb8)."""
        raw_pub, comp_pub = self._pubs.get("image"), self._pubs.get("image_compressed")
        if raw_pub is None and comp_pub is None:
            return group
        if raw_pub is not None:
            raw_topic = raw_pub.topic_name
        else:
            raw_topic = comp_pub.topic_name[: -len("/compressed")]
        comp_topic = compressed_topic(raw_topic)
        raw = [m for m in group if (m.topic, m.msgtype) == (raw_topic, IMAGE_TYPE)]
        comp = [m for m in group if (m.topic, m.msgtype) == (comp_topic, COMPRESSED_TYPE)]
        if comp_pub is not None and raw and not comp:
            img = deserialize_message(raw[0].data, Image)
            out: Any = convert.array_to_compressed(
                convert.image_to_array(img), self._codec[1], img.header, self._codec[2]
            )
            return group + [BagMessage(comp_topic, COMPRESSED_TYPE, raw[0].t_ns,
                                       serialize_message(out))]  # fmt: skip
        if raw_pub is not None and comp and not raw:
            cimg = deserialize_message(comp[0].data, CompressedImage)
            out = convert.array_to_image(convert.image_to_array(cimg), "rgb8", cimg.header)
            return group + [BagMessage(raw_topic, IMAGE_TYPE, comp[0].t_ns,
                                       serialize_message(out))]  # fmt: skip
        return group

    def _publish_stored(self, group: list) -> None:
        by_topic = {pub.topic_name: (key, pub) for key, pub in self._pubs.items()}
        for m in self._transcode(group):
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


def _check_transport(p: Dict[str, Any]) -> None:
    """ValueError naming the parameter, value and what is allowed, for the image transport."""
    if p["image_transport"] not in IMAGE_TRANSPORTS:
        raise ValueError("image_transport=%r is not one of %s"
                         % (p["image_transport"], ", ".join(IMAGE_TRANSPORTS)))  # fmt: skip
    if p["compressed_format"] not in COMPRESSED_FORMATS:
        raise ValueError("compressed_format=%r is not one of %s"
                         % (p["compressed_format"], ", ".join(COMPRESSED_FORMATS)))  # fmt: skip
    if not 1 <= int(p["jpeg_quality"]) <= 100:
        raise ValueError("jpeg_quality=%r is not in 1..100" % p["jpeg_quality"])


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
