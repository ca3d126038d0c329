"""Camera sources for the ``camera_node``, ROS-free: open, read, pace, calibrate.

Sources (:func:`open_source`; ``source_type: auto`` guesses from ``source``):

- ``video``: a video file or stream URL (OpenCV's FFmpeg backend);
- ``images``: a folder of images (jpg, png, bmp, tif, webp, ppm / pgm), in name order;
- ``device``: a V4L2 device (``/dev/video0`` or ``0``), with optional size and FOURCC;
- ``gstreamer``: a GStreamer pipeline string (OpenCV's GStreamer backend; needs an OpenCV built
  with it: :func:`gstreamer_available` tells; an ``appsink`` is appended when missing).

Every failure is a :class:`CameraError` with one line that names the source and the problem
(absent device, device busy and which process holds it, no permission, OpenCV without
GStreamer, unreadable file, empty folder). :class:`CameraReader` gives frames (BGR ``uint8``) at
the wanted rate (:class:`Pacer`), looping when asked. Calibration files are the YAML that
``camera_calibration`` / ``camera_info_manager`` write (:func:`load_calibration`).

Python 3.8 compatible.
"""

from __future__ import annotations

import glob
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from edge_perception.config import QOS_PROFILES, _f, validate_fields

SOURCE_TYPES = ("auto", "video", "images", "device", "gstreamer")
CAMERA_TRANSPORTS = ("raw", "compressed", "both")
CAMERA_ENCODINGS = ("rgb8", "bgr8", "mono8")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
IMAGES_DEFAULT_RATE = 10.0  # Hz, an image folder without rate_hz
APPSINK = "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"


@dataclass
class CameraNodeConfig:
    """``camera_node`` parameters (the ROS parameter names)."""

    source: str = _f(
        "", "video file / URL, image folder, V4L2 device (/dev/video0 or 0) or GStreamer pipeline"
    )
    source_type: str = _f("auto", "how to open source (auto: guessed)", choices=SOURCE_TYPES)
    rate_hz: float = _f(
        0.0,
        "publishing rate; 0 = the source's own (video: its fps, device: as delivered, image "
        "folder: 10 Hz)",
        min=0.0,
        max=1000.0,
    )
    loop: bool = _f(False, "video file / image folder: start over at the end")
    frame_id: str = _f("camera_optical_frame", "header frame id (REP-103 optical frame)")
    camera_name: str = _f("camera", "camera name (checked against the calibration's)")
    camera_info_url: str = _f(
        "",
        "calibration YAML (camera_calibration format; path, file:// or package://); '' = "
        "uncalibrated (CameraInfo with zero K)",
    )
    image_topic: str = _f("image_raw", "sensor_msgs/Image topic (compressed: + '/compressed')")
    camera_info_topic: str = _f("camera_info", "sensor_msgs/CameraInfo topic")
    encoding: str = _f("rgb8", "published image encoding", choices=CAMERA_ENCODINGS)
    image_transport: str = _f(
        "raw",
        "raw: Image; compressed: CompressedImage on image_topic + '/compressed'; both",
        choices=CAMERA_TRANSPORTS,
    )
    compressed_format: str = _f("jpeg", "compressed transport codec", choices=("jpeg", "png"))
    jpeg_quality: int = _f(80, "JPEG quality of the compressed transport", min=1, max=100)
    width: int = _f(0, "device: requested frame width (0 = driver default)", min=0, max=16384)
    height: int = _f(0, "device: requested frame height (0 = driver default)", min=0, max=16384)
    fourcc: str = _f("", "device: pixel format, e.g. MJPG or YUYV ('' = driver default)")
    qos: str = _f("sensor_data", "publisher QoS (best effort or reliable)", choices=QOS_PROFILES)

    def validate(self) -> CameraNodeConfig:
        validate_fields(self)
        if not self.source.strip():
            raise ValueError("source: must name a video file, image folder, device or pipeline")
        if self.fourcc and len(self.fourcc) != 4:
            raise ValueError(f"fourcc: {self.fourcc!r} is not 4 characters (e.g. MJPG, YUYV)")
        if not self.frame_id.strip():
            raise ValueError("frame_id: must not be empty")
        return self


class CameraError(RuntimeError):
    """A camera source cannot be opened or read; the message is one line."""


# ------------------------------------------------------------------------------ calibration


@dataclass
class CameraCalibration:
    """A camera calibration as ``sensor_msgs/CameraInfo`` holds it (row-major float lists)."""

    width: int
    height: int
    camera_name: str = ""
    distortion_model: str = ""
    d: List[float] = field(default_factory=list)
    k: List[float] = field(default_factory=lambda: [0.0] * 9)
    r: List[float] = field(default_factory=lambda: [0.0] * 9)
    p: List[float] = field(default_factory=lambda: [0.0] * 12)

    @property
    def calibrated(self) -> bool:
        return any(self.k)

    def to_yaml(self) -> str:
        """This calibration as camera_calibration YAML (what :func:`load_calibration` reads)."""
        import yaml

        def mat(rows: int, cols: int, data: Sequence[float]) -> Dict[str, Any]:
            return {"rows": rows, "cols": cols, "data": [float(v) for v in data]}

        doc = {
            "image_width": self.width,
            "image_height": self.height,
            "camera_name": self.camera_name,
            "camera_matrix": mat(3, 3, self.k),
            "distortion_model": self.distortion_model,
            "distortion_coefficients": mat(1, len(self.d), self.d),
            "rectification_matrix": mat(3, 3, self.r),
            "projection_matrix": mat(3, 4, self.p),
        }
        return yaml.safe_dump(doc, sort_keys=False)


def uncalibrated(width: int, height: int, camera_name: str = "") -> CameraCalibration:
    """What camera_info_manager publishes without a calibration: the size, everything else 0."""
    return CameraCalibration(int(width), int(height), camera_name)


def resolve_url(url: str) -> str:
    """A calibration URL (``file:///p``, ``package://pkg/p`` or a plain path) -> a file path."""
    if url.startswith("file://"):
        return url[len("file://") :]
    if url.startswith("package://"):
        pkg, _, rest = url[len("package://") :].partition("/")
        try:
            from ament_index_python.packages import get_package_share_directory

            return os.path.join(get_package_share_directory(pkg), rest)
        except Exception as exc:  # noqa: BLE001 - no ament index, unknown package
            raise CameraError(f"calibration {url}: package {pkg!r} not found ({exc})") from None
    return os.path.expanduser(url)


def _matrix(doc: Dict[str, Any], key: str, rows: int, cols: int, where: str) -> List[float]:
    m = doc.get(key)
    if not isinstance(m, dict) or "data" not in m:
        raise CameraError(f"{where}: {key} is missing or has no data (rows, cols, data)")
    data = m["data"]
    if not isinstance(data, list) or not all(isinstance(v, (int, float)) for v in data):
        raise CameraError(f"{where}: {key}.data must be a list of numbers")
    r, c = m.get("rows", rows), m.get("cols", cols)
    if (rows and r != rows) or (cols and c != cols) or len(data) != r * c:
        shape = f"{rows} x {cols}" if rows and cols else f"rows x cols = {r} x {c}"
        raise CameraError(f"{where}: {key} has {len(data)} values as {r} x {c}; expected {shape}")
    return [float(v) for v in data]


DISTORTION_SIZES = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}


def load_calibration(url: str) -> CameraCalibration:
    """Read a camera_calibration YAML (``image_width``, ``image_height``, ``camera_name``,
    ``camera_matrix``, ``distortion_model``, ``distortion_coefficients``,
    ``rectification_matrix``, ``projection_matrix``); CameraError names the file and the key."""
    import yaml

    path = resolve_url(url)
    where = f"calibration {path}"
    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except OSError as exc:
        raise CameraError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise CameraError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise CameraError(f"{where}: expected a mapping (camera_calibration format)")
    for key in ("image_width", "image_height"):
        if not isinstance(doc.get(key), int) or doc[key] <= 0:
            raise CameraError(f"{where}: {key} must be a positive integer")
    k = _matrix(doc, "camera_matrix", 3, 3, where)
    model = str(doc.get("distortion_model", "plumb_bob"))
    d = (
        _matrix(doc, "distortion_coefficients", 1, 0, where)
        if "distortion_coefficients" in doc
        else []
    )
    if model in DISTORTION_SIZES and d and len(d) != DISTORTION_SIZES[model]:
        raise CameraError(
            f"{where}: {model} needs {DISTORTION_SIZES[model]} distortion coefficients, "
            f"got {len(d)}"
        )
    r = _matrix(doc, "rectification_matrix", 3, 3, where) if "rectification_matrix" in doc else [
        1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]  # fmt: skip
    if "projection_matrix" in doc:
        p = _matrix(doc, "projection_matrix", 3, 4, where)
    else:  # monocular: P = [K | 0]
        p = k[0:3] + [0.0] + k[3:6] + [0.0] + k[6:9] + [0.0]
    return CameraCalibration(
        int(doc["image_width"]), int(doc["image_height"]), str(doc.get("camera_name", "")),
        model, d, k, r, p,
    )  # fmt: skip


# ------------------------------------------------------------------------------ sources


def gstreamer_available() -> bool:
    """Whether this OpenCV was built with its GStreamer video backend."""
    import cv2

    m = re.search(r"GStreamer:\s*(\w+)", cv2.getBuildInformation())
    return m is not None and m.group(1).upper() == "YES"


def guess_type(source: str) -> str:
    """``device`` / ``gstreamer`` / ``images`` / ``video`` from the source string."""
    s = source.strip()
    if re.fullmatch(r"\d+", s) or s.startswith("/dev/video"):
        return "device"
    if "!" in s:
        return "gstreamer"
    if os.path.isdir(s):
        return "images"
    return "video"


def device_holders(path: str) -> List[str]:
    """``pid (name)`` of the processes (visible to us) that have ``path`` open."""
    real = os.path.realpath(path)
    found: List[str] = []
    for fd_dir in glob.glob("/proc/[0-9]*/fd"):
        pid = fd_dir.split("/")[2]
        if pid == str(os.getpid()):
            continue
        try:
            links = [os.readlink(os.path.join(fd_dir, fd)) for fd in os.listdir(fd_dir)]
        except OSError:
            continue
        if real in links:
            try:
                with open(f"/proc/{pid}/comm", encoding="utf-8") as fh:
                    found.append(f"{pid} ({fh.read().strip()})")
            except OSError:
                found.append(pid)
    return found


class FrameSource:
    """A source of BGR frames; :meth:`read` returns None at its end (or on a read failure)."""

    kind = ""
    live = False  # a device / stream: frames come at their own pace and cannot rewind
    fps = 0.0  # the source's own rate (0 = unknown)

    def __init__(self, name: str) -> None:
        self.name = name

    def read(self) -> Optional[np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError

    def rewind(self) -> bool:
        """Start over; False when the source cannot."""
        return False

    def close(self) -> None:
        """Release the device / file."""


class CaptureSource(FrameSource):
    """Video file, stream, device or GStreamer pipeline through ``cv2.VideoCapture``."""

    def __init__(self, name: str, cap: Any, kind: str, live: bool) -> None:
        super().__init__(name)
        import cv2

        self.cap, self.kind, self.live = cap, kind, live
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps < 1000.0 else 0.0
        self._pending: Optional[np.ndarray] = None
        self._lock = threading.Lock()

    def prime(self, what: str) -> None:
        """Read the first frame now, so opening fails when no frame comes."""
        frame = self.read()
        if frame is None:
            raise CameraError(f"{self.kind} {self.name}: {what}")
        self._pending = frame

    def read(self) -> Optional[np.ndarray]:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        with self._lock:
            if self.cap is None:
                return None
            ok, frame = self.cap.read()
        return frame if ok and frame is not None and frame.size else None

    def rewind(self) -> bool:
        import cv2

        if self.live:
            return False
        with self._lock:
            return bool(self.cap is not None and self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0))

    def close(self) -> None:
        with self._lock:
            cap, self.cap = self.cap, None
        if cap is not None:
            cap.release()


class ImageFolderSource(FrameSource):
    """Images of a folder in name order; unreadable files are skipped and counted."""

    kind = "images"

    def __init__(self, folder: str) -> None:
        super().__init__(folder)
        self.files = sorted(
            os.path.join(folder, f)
            for f in os.listdir(folder)
            if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, f))
        )
        if not self.files:
            raise CameraError(
                f"image folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})"
            )
        self.index = 0
        self.skipped: List[str] = []

    def read(self) -> Optional[np.ndarray]:
        import cv2

        while self.index < len(self.files):
            path = self.files[self.index]
            self.index += 1
            frame = cv2.imread(path, cv2.IMREAD_COLOR)
            if frame is not None:
                return frame
            self.skipped.append(path)
        return None

    def rewind(self) -> bool:
        self.index = 0
        return len(self.skipped) < len(self.files)


def _open_device(cfg: CameraNodeConfig) -> CaptureSource:
    import cv2

    s = cfg.source.strip()
    path = f"/dev/video{s}" if s.isdigit() else s
    if not os.path.exists(path):
        present = sorted(glob.glob("/dev/video*")) or ["none"]
        raise CameraError(
            f"camera device {path} is absent (video devices here: {', '.join(present)})"
        )
    if not os.access(path, os.R_OK | os.W_OK):
        raise CameraError(
            f"camera device {path}: no permission to open it (add the user to the 'video' group)"
        )
    cap = cv2.VideoCapture(path, cv2.CAP_V4L2)
    if not cap.isOpened():
        cap.release()
        holders = device_holders(path)
        why = f"busy, held by {', '.join(holders)}" if holders else "not a capture device?"
        raise CameraError(f"camera device {path} could not be opened ({why})")
    if cfg.fourcc:
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*cfg.fourcc))
    if cfg.width:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.width)
    if cfg.height:
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.height)
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a queue of old ones
    src = CaptureSource(path, cap, "camera device", live=True)
    holders = device_holders(path)
    src.prime(
        f"opened but gives no frames (busy, held by {', '.join(holders)})"
        if holders
        else "opened but gives no frames (busy in another process, or the size / fourcc is "
        "not supported)"
    )
    return src


def _open_gstreamer(cfg: CameraNodeConfig) -> CaptureSource:
    import cv2

    if not gstreamer_available():
        raise CameraError(
            f"this OpenCV ({cv2.__version__}) is built without GStreamer "
            "(cv2.getBuildInformation(): GStreamer: NO); a pipeline needs an OpenCV built with "
            "it (JetPack's, or -DWITH_GSTREAMER=ON)"
        )
    pipeline = cfg.source.strip()
    if "appsink" not in pipeline:
        pipeline = f"{pipeline} ! {APPSINK}"
    cap = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
    if not cap.isOpened():
        cap.release()
        raise CameraError(f"GStreamer pipeline did not start: {pipeline}")
    src = CaptureSource(pipeline, cap, "GStreamer pipeline", live=True)
    src.prime("started but gives no frames")
    return src


def _open_video(cfg: CameraNodeConfig) -> CaptureSource:
    import cv2

    s = cfg.source.strip()
    stream = "://" in s
    if not stream and not os.path.isfile(s):
        raise CameraError(f"video file {s} does not exist")
    cap = cv2.VideoCapture(s)
    if not cap.isOpened():
        cap.release()
        raise CameraError(f"cannot open video {s} (not a video, or no codec for it in OpenCV)")
    src = CaptureSource(s, cap, "video", live=stream)
    src.prime("has no frames")
    return src


def open_source(cfg: CameraNodeConfig) -> FrameSource:
    """Open the configured source (CameraError with one line when it cannot deliver)."""
    kind = cfg.source_type if cfg.source_type != "auto" else guess_type(cfg.source)
    if kind == "device":
        return _open_device(cfg)
    if kind == "gstreamer":
        return _open_gstreamer(cfg)
    if kind == "images":
        if not os.path.isdir(cfg.source):
            raise CameraError(f"image folder {cfg.source} does not exist")
        return ImageFolderSource(cfg.source)
    return _open_video(cfg)


# ------------------------------------------------------------------------------ rate control


class Pacer:
    """Fixed-rate ticks on the monotonic clock; a late tick moves the schedule (no bursts)."""

    def __init__(self, rate_hz: float) -> None:
        self.period = 1.0 / rate_hz if rate_hz > 0 else 0.0
        self.next = time.monotonic()

    def restart(self) -> None:
        """The next tick is now (call when streaming starts)."""
        self.next = time.monotonic()

    def _advance(self, now: float) -> None:
        self.next += self.period
        if self.next < now:  # more than a period late: start a new schedule, no catch-up burst
            self.next = now + self.period

    def wait(self, stop: threading.Event) -> bool:
        """Sleep until the next tick; False when ``stop`` was set meanwhile."""
        if self.period:
            delay = self.next - time.monotonic()
            if delay > 0 and stop.wait(delay):
                return False
            self._advance(time.monotonic())
        return not stop.is_set()

    def due(self) -> bool:
        """For a live source: whether a frame arriving now should go out (then schedules)."""
        if not self.period:
            return True
        now = time.monotonic()
        if now + 1e-3 < self.next:
            return False
        self._advance(now)
        return True


class CameraReader:
    """Frames of a source at ``rate_hz`` (0: the source's own), looping when asked.

    Files are paced (sleep until each tick); a live source is read as fast as it delivers and
    frames that arrive before the next tick are dropped (``dropped``).
    """

    def __init__(self, source: FrameSource, rate_hz: float = 0.0, loop: bool = False) -> None:
        self.source, self.loop = source, loop
        rate = rate_hz
        if not rate and not source.live:
            rate = source.fps or IMAGES_DEFAULT_RATE
        self.rate = rate
        self.pacer = Pacer(rate)
        self.frames = 0
        self.dropped = 0
        self.ended = False

    def restart(self) -> None:
        """Streaming (re)starts: the first frame goes out at once, the rest on schedule."""
        self.pacer.restart()

    def next(self, stop: threading.Event) -> Optional[np.ndarray]:
        """The next frame to publish, or None at the end / when ``stop`` is set."""
        while not stop.is_set():
            frame = self.source.read()
            if frame is None:
                if self.source.live or not (self.loop and self.source.rewind()):
                    self.ended = True
                    return None
                frame = self.source.read()
                if frame is None:
                    self.ended = True
                    return None
            if self.source.live:
                if not self.pacer.due():
                    self.dropped += 1
                    continue
            elif not self.pacer.wait(stop):
                return None
            self.frames += 1
            return frame
        return None
