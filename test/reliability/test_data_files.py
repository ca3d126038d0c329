"""Corrupt and missing data-set files (issue 12, finding 9): every CLI stops with one line naming
the file and what is wrong, exit status 2, no traceback; no sample is ever skipped silently
(``lane-eval --skip-bad`` skips, counts and lists)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lane"))
from carla_bridge.cli import main as carla_bridge  # noqa: E402
from edge_perception.cli import main as edge_perception  # noqa: E402
from edge_perception.datafiles import DataError, MissingDataError, read_json, read_rgb  # noqa: E402
from lane_synth import write_dataset  # noqa: E402

LANE_MODEL = str(Path(__file__).resolve().parents[2] / "models" / "lane_small.onnx")


def _one_line_error(capsys, code: int, *needles: str) -> str:
    """The one ``error:`` line (a progress bar may have drawn on stderr before it)."""
    text = capsys.readouterr().err
    assert code == 2, text
    lines = [ln for ln in text.replace("\r", "\n").splitlines() if "error:" in ln]
    assert "Traceback" not in text and len(lines) == 1, text
    err = lines[0]
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """A tiny dataset written by ``carla-bridge generate`` (manifest, coco.json, images, PNGs)."""
    root = tmp_path_factory.mktemp("gen") / "ds"
    args = ["generate", "--out", str(root), "--train-sequences", "1", "--val-sequences", "1",
            "--frames-per-seq", "2", "--width", "160", "--height", "96",
            "--workers", "1"]  # fmt: skip
    assert carla_bridge(args) == 0
    return root


@pytest.fixture
def carla_ds(generated, tmp_path) -> Path:
    return Path(shutil.copytree(generated, tmp_path / "ds"))


@pytest.fixture
def lane_ds(tmp_path) -> Path:
    return write_dataset(tmp_path / "lane", frames=(4, 4))


def _strip(ds: Path, tmp_path: Path) -> int:
    return carla_bridge(["strip", "--dataset", str(ds), "--out", str(tmp_path / "s.png")])


def test_truncated_coco_json_names_the_file(carla_ds, tmp_path, capsys):
    coco = carla_ds / "train" / "annotations" / "coco.json"
    coco.write_bytes(coco.read_bytes()[: coco.stat().st_size // 2])
    _one_line_error(capsys, _strip(carla_ds, tmp_path), str(coco), "not valid JSON", "truncated")


def test_empty_object_coco_json_names_the_missing_key(carla_ds, tmp_path, capsys):
    coco = carla_ds / "train" / "annotations" / "coco.json"
    coco.write_text("{}")
    _one_line_error(capsys, _strip(carla_ds, tmp_path), str(coco), "'images'")


def test_coco_entry_without_field(carla_ds, tmp_path, capsys):
    coco = carla_ds / "train" / "annotations" / "coco.json"
    d = json.loads(coco.read_text())
    del d["images"][0]["file_name"]
    coco.write_text(json.dumps(d))
    _one_line_error(capsys, _strip(carla_ds, tmp_path), str(coco), "images[0]", "'file_name'")


def test_truncated_jpeg_is_not_called_missing(carla_ds, tmp_path, capsys):
    jpg = sorted((carla_ds / "train" / "images").glob("*/*.jpg"))[0]
    jpg.write_bytes(jpg.read_bytes()[: jpg.stat().st_size // 2])
    err = _one_line_error(capsys, _strip(carla_ds, tmp_path), str(jpg), "truncated JPEG")
    assert "not found" not in err


def test_junk_label_png_in_carla_reader(carla_ds, tmp_path, capsys):
    png = sorted((carla_ds / "train" / "lane_class").glob("*/*.png"))[0]
    png.write_bytes(b"this is not a PNG")
    _one_line_error(capsys, _strip(carla_ds, tmp_path), str(png), "is not a PNG")


def _lane_eval(ds: Path, *extra: str) -> int:
    return edge_perception(["lane-eval", "--model", LANE_MODEL, "--data", str(ds), *extra])


def test_lane_eval_junk_label_png(lane_ds, capsys):
    png = sorted((lane_ds / "val" / "lane_class").glob("*/*.png"))[1]
    png.write_bytes(b"\x00junk" * 10)
    _one_line_error(capsys, _lane_eval(lane_ds), str(png), "lane class PNG")


def test_lane_eval_truncated_png(lane_ds, capsys):
    png = sorted((lane_ds / "val" / "lane_class").glob("*/*.png"))[1]
    png.write_bytes(png.read_bytes()[:60])
    _one_line_error(capsys, _lane_eval(lane_ds), str(png), "corrupt or truncated PNG")


def test_lane_eval_truncated_jpeg(lane_ds, capsys):
    jpg = sorted((lane_ds / "val" / "images").glob("*/*.jpg"))[2]
    jpg.write_bytes(jpg.read_bytes()[:-100])
    _one_line_error(capsys, _lane_eval(lane_ds), str(jpg), "truncated JPEG")


def test_lane_eval_deleted_label_stops_unless_skip_bad(lane_ds, tmp_path, capsys):
    png = sorted((lane_ds / "val" / "lane_class").glob("*/*.png"))[3]
    png.unlink()
    _one_line_error(capsys, _lane_eval(lane_ds), str(png), "label PNG not found")
    out = tmp_path / "res.json"
    assert _lane_eval(lane_ds, "--skip-bad", "--out", str(out)) == 0
    err = capsys.readouterr().err
    assert "skipped 1 bad sample" in err and str(png) in err
    res = json.loads(out.read_text())
    assert res["frames"] == 3 and len(res["skipped"]) == 1 and str(png) in res["skipped"][0]


def test_lane_eval_deleted_image_and_bad_manifest(lane_ds, capsys):
    (lane_ds / "manifest.json").write_text('{"classes": ')
    _one_line_error(capsys, _lane_eval(lane_ds), "manifest.json", "not valid JSON")
    _one_line_error(capsys, _lane_eval(lane_ds.parent / "nope"), "nope", "not found")


def test_readers_tell_missing_empty_directory_apart(tmp_path):
    with pytest.raises(MissingDataError, match="not found"):
        read_rgb(str(tmp_path / "a.jpg"))
    (tmp_path / "e.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        read_rgb(str(tmp_path / "e.jpg"))
    with pytest.raises(DataError, match="is a directory"):
        read_json(str(tmp_path))
    (tmp_path / "l.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="JSON object, not array"):
        read_json(str(tmp_path / "l.json"))
    assert isinstance(MissingDataError("x"), FileNotFoundError)  # old callers still catch it
