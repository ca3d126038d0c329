"""runtime.camera (ROS-free): calibration YAML, source guessing and errors, pacing, readers."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from edge_perception.runtime.camera import (  # noqa: E402
    CameraCalibration,
    CameraError,
    CameraNodeConfig,
    CameraReader,
    ImageFolderSource,
    Pacer,
    gstreamer_available,
    guess_type,
    load_calibration,
    open_source,
)

# What camera_calibration's cameracalibrator writes (ost.yaml), verbatim layout.
OST = """image_width: 640
image_height: 480
camera_name: narrow_stereo
camera_matrix:
  rows: 3
  cols: 3
  data: [430.2, 0, 306.7, 0, 429.6, 240.3, 0, 0, 1]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [-0.3, 0.09, 0.001, -0.002, 0]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1, 0, 0, 0, 1, 0, 0, 0, 1]
projection_matrix:
  rows: 3
  cols: 4
  data: [400.1, 0, 305.2, 0, 0, 410.3, 241.0, 0, 0, 0, 1, 0]
"""


def test_calibration_in_camera_calibration_format(tmp_path):
    path = tmp_path / "ost.yaml"
    path.write_text(OST)
    cal = load_calibration(str(path))
    assert (cal.width, cal.height, cal.camera_name) == (640, 480, "narrow_stereo")
    assert cal.k[0] == 430.2 and cal.k[5] == 240.3 and cal.p[5] == 410.3
    assert cal.d == [-0.3, 0.09, 0.001, -0.002, 0.0] and cal.calibrated
    again = tmp_path / "again.yaml"
    again.write_text(cal.to_yaml())
    assert load_calibration("file://" + str(again)) == cal
    # Without R and P: identity and [K | 0]
    short = tmp_path / "short.yaml"
    short.write_text(OST.split("rectification_matrix")[0])
    cal2 = load_calibration(str(short))
    assert cal2.r == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert cal2.p == [430.2, 0.0, 306.7, 0.0, 0.0, 429.6, 240.3, 0.0, 0.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize(
    "text, words",
    [
        (OST.replace("data: [430.2, 0, 306.7, 0,", "data: [430.2, 306.7, 0,"), "camera_matrix"),
        (OST.replace("image_width: 640", "image_width: -1"), "image_width"),
        (OST.replace("[-0.3, 0.09, 0.001, -0.002, 0]", "[-0.3, 0.09]"), "distortion"),
        ("[1, 2", "not valid YAML"),
        ("- a list", "expected a mapping"),
    ],
)
def test_calibration_errors_name_the_file_and_key(tmp_path, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CameraError) as err:
        load_calibration(str(path))
    assert words in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_source_guessing(tmp_path):
    assert guess_type("0") == "device" and guess_type("/dev/video2") == "device"
    assert guess_type("v4l2src ! videoconvert ! appsink") == "gstreamer"
    assert guess_type(str(tmp_path)) == "images"
    assert guess_type("clip.mp4") == "video" and guess_type("rtsp://cam/stream") == "video"


def test_gstreamer_pipeline_without_gstreamer_says_so():
    cfg = CameraNodeConfig(source="nvarguscamerasrc ! nvvidconv ! appsink").validate()
    if gstreamer_available():
        pytest.skip("this OpenCV has GStreamer (the pipeline itself needs a Jetson)")
    with pytest.raises(CameraError, match="built without GStreamer"):
        open_source(cfg)


def test_absent_device_names_present_ones():
    with pytest.raises(CameraError, match=r"/dev/video63 is absent \(video devices here: "):
        open_source(CameraNodeConfig(source="63").validate())


def test_config_checks():
    with pytest.raises(ValueError, match="fourcc"):
        CameraNodeConfig(source="0", fourcc="MJPEG").validate()
    with pytest.raises(ValueError, match="image_transport"):
        CameraNodeConfig(source="0", image_transport="theora").validate()


def test_image_folder_skips_unreadable_and_loops(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), 10 * i, np.uint8))
    (tmp_path / "3.png").write_bytes(b"not a png")
    src = ImageFolderSource(str(tmp_path))
    reader = CameraReader(src, rate_hz=500.0, loop=True)
    stop = threading.Event()
    values = [int(reader.next(stop)[0, 0, 0]) for _ in range(7)]
    assert values == [0, 10, 20, 0, 10, 20, 0]
    assert src.skipped[0].endswith("3.png")
    once = CameraReader(ImageFolderSource(str(tmp_path)), rate_hz=500.0, loop=False)
    got = [once.next(stop) for _ in range(4)]
    assert got[3] is None and once.ended and once.frames == 3


def test_pacer_holds_the_rate_without_bursts():
    pacer, stop = Pacer(50.0), threading.Event()
    t0 = time.monotonic()
    for _ in range(6):
        assert pacer.wait(stop)
    assert time.monotonic() - t0 >= 5 * 0.02 - 0.005
    time.sleep(0.1)  # late by 5 periods: the next tick goes now, the one after a period later
    assert pacer.wait(stop)
    t1 = time.monotonic()
    assert pacer.wait(stop)
    assert time.monotonic() - t1 >= 0.015
    live = Pacer(10.0)
    assert live.due() and not live.due()  # a live source's frames between ticks are dropped


def test_calibration_dataclass_defaults_are_uncalibrated():
    cal = CameraCalibration(64, 48)
    assert not cal.calibrated and cal.distortion_model == "" and len(cal.p) == 12
