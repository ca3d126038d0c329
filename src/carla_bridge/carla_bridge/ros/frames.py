"""A Frame as the ROS messages the scenario publisher sends (conversions via edge_perception).

Every message conversion goes through ``edge_perception.ros.convert``; the only exception is
``camera_info`` below (CameraModel -> sensor_msgs/CameraInfo), a minimal call site until convert
offers it. Topic keys and their default names/types are listed in :data:`TOPICS`; the camera
image may also go out compressed (image_transport's ``compressed`` transport: key
``image_compressed``, ``sensor_msgs/CompressedImage`` on ``<image topic>/compressed``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np
from edge_perception.ros import convert
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, LabelInfo

from carla_bridge.classes import LANE_CLASSES, OBJECT_CLASSES
from carla_bridge.dataset.writer import ignore_flags
from carla_bridge.frame import CameraModel, Frame
from edge_perception_msgs.msg import InstanceArray, LaneSegmentation

# key -> (default topic, message class). Keys are the publisher's parameter names (<key>_topic).
TOPICS: Dict[str, Tuple[str, Any]] = {
    "image": ("/camera/image_raw", Image),
    "camera_info": ("/camera/camera_info", CameraInfo),
    "detections": ("/ground_truth/detections", Detection2DArray),
    "instances": ("/ground_truth/instances", InstanceArray),
    "lanes": ("/ground_truth/lanes", LaneSegmentation),
    "label_info": ("/ground_truth/label_info", LabelInfo),
    "clock": ("/clock", Clock),
}


IMAGE_TRANSPORTS = ("raw", "compressed", "both")
COMPRESSED_FORMATS = ("jpeg", "png")


def compressed_topic(image_topic: str) -> str:
    """The ``compressed`` transport's topic of an image topic (image_transport's naming)."""
    return image_topic.rstrip("/") + "/compressed"


def topic_of(key: str) -> Tuple[str, Any]:
    """Default (topic, message class) of a message key, ``image_compressed`` included."""
    if key == "image_compressed":
        return compressed_topic(TOPICS["image"][0]), CompressedImage
    return TOPICS[key]


def image_messages(
    rgb: np.ndarray, header: Header, transport: str = "raw", codec: str = "jpeg", quality: int = 80
) -> Dict[str, Any]:
    """The camera image in the wanted transports: ``image`` (rgb8 ``Image``) for ``raw`` /
    ``both``, ``image_compressed`` (JPEG or PNG ``CompressedImage``) for ``compressed`` / ``both``.
    """
    if transport not in IMAGE_TRANSPORTS:
        raise ValueError("image_transport=%r is not one of %s" % (transport, IMAGE_TRANSPORTS))
    out: Dict[str, Any] = {}
    if transport in ("raw", "both"):
        out["image"] = convert.array_to_image(rgb, "rgb8", header)
    if transport in ("compressed", "both"):
        out["image_compressed"] = convert.array_to_compressed(rgb, codec, header, quality)
    return out


def msg_type_name(cls: Any) -> str:
    """``pkg/msg/Name`` of a generated message class (the rosbag2 type string)."""
    module = cls.__module__.split(".")[0]
    return "%s/msg/%s" % (module, cls.__name__)


def camera_info(camera: CameraModel, header: Header) -> CameraInfo:
    """Pinhole ``CameraInfo`` (plumb_bob, no distortion) of a CameraModel.

    MINIMAL CALL SITE: belongs in ``edge_perception.ros.convert`` (asked for); here until then.
    """
    msg = CameraInfo()
    msg.header = convert.copy_header(header)
    msg.height, msg.width = int(camera.height), int(camera.width)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    k = camera.K
    msg.k = [float(v) for v in k.reshape(-1)]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    p = np.zeros((3, 4))
    p[:3, :3] = k
    msg.p = [float(v) for v in p.reshape(-1)]
    return msg


def frame_messages(
    frame: Frame,
    stamp_ns: int,
    frame_id: str,
    transport: str = "raw",
    codec: str = "jpeg",
    quality: int = 80,
) -> Dict[str, Any]:
    """Image (rgb8 and / or compressed: :func:`image_messages`), CameraInfo and the ground truth
    of one frame, all with the same header.

    Detections use ``class_id = str(index into OBJECT_CLASSES)`` and ``id = str(track_id)``; the
    instances carry the same ids, track ids, visible fractions and RLE masks; the lane message
    embeds the ``LANE_CLASSES`` class mask and the lane lines (ids = ``line_id``). A ground-truth
    hypothesis score is 1.0, or 0.0 for an object the data set flags ``ignore`` (too small:
    :func:`carla_bridge.dataset.writer.ignore_flags`): evaluators treat those as crowd regions.
    """
    header = convert.make_header(int(stamp_ns), frame_id)
    h, w = frame.image.shape[:2]
    objs = frame.objects
    boxes = np.array([[o.bbox[0], o.bbox[1], o.bbox[0] + o.bbox[2], o.bbox[1] + o.bbox[3]]
                      for o in objs], np.float64).reshape(-1, 4)  # fmt: skip
    labels = [OBJECT_CLASSES.index(o.category) for o in objs]
    ids = [str(o.track_id) for o in objs]
    ones = [0.0 if ignored else 1.0 for ignored in ignore_flags(frame)]
    lines: List[Dict[str, Any]] = [
        {"points": ln.points, "type": ln.type, "color": ln.color, "confidence": 1.0,
         "id": int(ln.line_id)}
        for ln in frame.lane_lines
    ]  # fmt: skip
    msgs = image_messages(frame.image, header, transport, codec, quality)
    return {
        **msgs,
        "camera_info": camera_info(frame.camera, header),
        "detections": convert.detections_to_msg(header, boxes, ones, labels, OBJECT_CLASSES, ids),
        "instances": convert.instances_to_msg(
            header,
            (h, w),
            [o.mask for o in objs],
            ones,
            labels,
            boxes_xyxy=boxes,
            track_ids=[o.track_id for o in objs],
            ids=ids,
            keyframe=True,
            visible_fraction=[o.visible_fraction for o in objs],
        ),  # fmt: skip
        "lanes": convert.lane_to_msg(header, frame.class_mask(), LANE_CLASSES, lines),
    }


def label_info(stamp_ns: int, frame_id: str) -> LabelInfo:
    """The object class table as ``vision_msgs/LabelInfo`` (published once, transient local)."""
    return convert.label_info_msg(OBJECT_CLASSES, 0.0, convert.make_header(stamp_ns, frame_id))


def clock(stamp_ns: int) -> Clock:
    """``/clock`` message for a simulated time."""
    return Clock(clock=convert.ns_to_stamp(int(stamp_ns)))
