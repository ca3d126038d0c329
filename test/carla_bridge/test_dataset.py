"""Dataset writer/reader: layout, COCO / YouTube-VIS round trip, determinism, resume, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from carla_bridge.classes import LANE_CLASSES, LANE_PALETTE, OBJECT_CLASSES
from carla_bridge.dataset import (
    VALIDATION_SPLIT,
    generate_dataset,
    iter_frames,
    load_coco,
    load_lanes,
    load_manifest,
    load_ytvis,
    train_split,
)
from carla_bridge.scenario import ScenarioConfig
from carla_bridge.synthetic import SyntheticBackend
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

W, H = 160, 96
SCEN = ScenarioConfig(num_vehicles=10, num_walkers=6).replace(camera={"width": W, "height": H})
ARGS = dict(train_sequences=2, val_sequences=1, frames_per_sequence=3, seed=5, progress=False)


def tree_digest(root) -> dict:
    """sha256 of every file under root, by relative path."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ref"))
    manifest = generate_dataset(root, SCEN, workers=1, **ARGS)
    return root, manifest, tree_digest(root)


def test_layout_and_manifest(ref):
    root, manifest, digest = ref
    for split, n_seq in (("train", 2), ("val", 1)):
        for seq in range(n_seq):
            for i in range(3):
                stem = f"{seq:05d}/{i:06d}"
                for kind, ext in (("images", "jpg"), ("lane_class", "png"),
                                  ("lane_instance", "png"), ("flow", "npz")):  # fmt: skip
                    assert f"{split}/{kind}/{stem}.{ext}" in digest
        assert "plan.json" in digest
        for ann in ("coco.json", "ytvis.json", "lanes.json"):
            assert f"{split}/annotations/{ann}" in digest
    assert not [p for p in digest if p.endswith(".tmp")]
    m = load_manifest(root)
    assert m == json.loads(json.dumps(manifest))
    assert m["classes"]["objects"] == list(OBJECT_CLASSES)
    assert m["classes"]["lane"] == list(LANE_CLASSES)
    assert m["splits"]["train"]["frames"] == 6 and m["splits"]["val"]["frames"] == 3
    assert set(m["versions"]) >= {"carla_bridge", "numpy", "cv2"}
    assert m["standard_val"] is False and len(m["data_version"]) == 16
    assert m["splits"]["val"]["seeds"][0] == VALIDATION_SPLIT.base_seed
    # validation keeps the default look whatever the training scenario
    assert m["generator"]["scenario"]["num_vehicles"] == 10
    assert m["generator"]["val_scenario"]["num_vehicles"] == ScenarioConfig().num_vehicles
    assert m["generator"]["val_scenario"]["camera"]["width"] == W
    # ... and the default frame rate whatever the training scenario's (a strided 2 fps training
    # scenario once made its "standard" val split another data set)
    from carla_bridge.dataset.generate import validation_scenario

    assert validation_scenario(ScenarioConfig(fps=2.0, frames=3)).fps == ScenarioConfig().fps


def test_coco_loads_and_matches_a_fresh_render(ref):
    root = ref[0]
    coco = COCO()
    coco.dataset = load_coco(root, "train")
    coco.createIndex()
    assert sorted(coco.getCatIds()) == list(range(1, len(OBJECT_CLASSES) + 1))
    img = next(
        i for i in coco.dataset["images"] if i["sequence"] == "00001" and i["frame_index"] == 2
    )
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
    # render the same sequence again: the stored labels must be exactly its labels
    cfg = SCEN.replace(seed=train_split(5, 2, 3).base_seed + 1, frames=3, sequence="00001")
    with SyntheticBackend().open(cfg) as backend:
        frame = list(backend.frames())[2]
    assert len(anns) == len(frame.objects) > 0
    base = min(a["track_id"] for a in anns) - min(o.track_id for o in frame.objects)
    for o in frame.objects:
        a = next(a for a in anns if a["track_id"] == o.track_id + base)
        m = coco.annToMask(a).astype(bool)
        assert (m == o.mask).all()
        assert a["bbox"] == pytest.approx(list(o.bbox), abs=0.01)
        assert list(mask_utils.toBbox(a["segmentation"])) == pytest.approx(a["bbox"], abs=0.01)
        assert a["area"] == int(o.mask.sum()) and a["iscrowd"] == 0
        assert a["category_id"] == OBJECT_CLASSES.index(o.category) + 1
        assert a["visible_fraction"] == pytest.approx(o.visible_fraction)
        assert a["truncated"] == pytest.approx(o.truncated)


def test_ytvis_tracks_agree_with_coco(ref):
    root = ref[0]
    coco, vis = load_coco(root, "train"), load_ytvis(root, "train")
    assert [v["length"] for v in vis["videos"]] == [3, 3]
    assert len({a["track_id"] for a in coco["annotations"]}) == len(vis["annotations"])
    images = {i["id"]: i for i in coco["images"]}
    by_track = {a["track_id"]: a for a in vis["annotations"]}
    for a in coco["annotations"]:
        t = by_track[a["track_id"]]
        im = images[a["image_id"]]
        assert t["video_id"] == im["video_id"] and t["category_id"] == a["category_id"]
        rle = t["segmentations"][im["frame_index"]]
        assert rle == a["segmentation"]
        assert mask_utils.decode(rle).sum() == a["area"]
    for t in vis["annotations"]:
        assert len(t["segmentations"]) == 3 and any(s is not None for s in t["segmentations"])
        flags = [a["ignore"] for a in coco["annotations"] if a["track_id"] == t["track_id"]]
        assert t["ignore"] == all(flags)


def test_tiny_objects_are_flagged_ignore(ref):
    coco = load_coco(ref[0], "train")
    pol = load_manifest(ref[0])["label_policy"]["ignore"]
    flags = [a["ignore"] for a in coco["annotations"]]
    for a in coco["annotations"]:
        small = a["area"] < pol["min_area"] or a["bbox"][3] < pol["min_height"]
        assert a["ignore"] == small and a["iscrowd"] == 0
    assert any(flags) and not all(flags)


def test_masks_lanes_and_flow_files(ref):
    root = ref[0]
    lanes = load_lanes(root, "val")
    frames = list(iter_frames(root, "val", with_flow=True))
    assert [f.index for f in frames] == [0, 1, 2]
    for fr, lane_img in zip(frames, lanes["images"]):
        assert lane_img["file_name"] == fr.file_name
        assert fr.image.shape == (H, W, 3) and fr.image.dtype == np.uint8
        png = Image.open(os.path.join(root, "val", "lane_class", fr.file_name[:-4] + ".png"))
        assert png.mode == "P"
        assert png.getpalette()[: 3 * len(LANE_PALETTE)] == [c for p in LANE_PALETTE for c in p]
        assert fr.lane_class.max() < len(LANE_CLASSES)
        assert fr.lane_instance.dtype == np.uint16
        on = fr.lane_instance > 0
        assert np.isin(fr.lane_class[on], (2, 3)).all()
        ids = {ln["id"] for ln in fr.lines}
        assert set(np.unique(fr.lane_instance[on]).tolist()) <= ids
        assert fr.flow.shape == (H, W, 2) and fr.flow_valid.dtype == bool
    assert not frames[0].flow_valid.any() and frames[1].flow_valid.mean() > 0.3


def test_parallel_run_is_byte_identical(ref, tmp_path):
    generate_dataset(str(tmp_path), SCEN, workers=2, **ARGS)
    assert tree_digest(str(tmp_path)) == ref[2]


def test_resume_after_losing_files_is_byte_identical(ref, tmp_path):
    root = str(tmp_path)
    generate_dataset(root, SCEN, workers=1, **ARGS)
    # an interrupted run: a sequence without its part file and with missing frames, a stale
    # temporary file, no merged annotations and no manifest
    os.remove(os.path.join(root, "train", "annotations", "parts", "00001.json"))
    os.remove(os.path.join(root, "train", "images", "00001", "000002.jpg"))
    os.remove(os.path.join(root, "train", "flow", "00001", "000001.npz"))
    os.remove(os.path.join(root, "train", "annotations", "coco.json"))
    os.remove(os.path.join(root, "manifest.json"))
    with open(os.path.join(root, "train", "images", "00001", ".000002.jpg.99.tmp"), "wb") as fh:
        fh.write(b"half")
    with pytest.raises(FileNotFoundError, match="carla-bridge generate"):
        load_coco(root, "train")
    generate_dataset(root, SCEN, workers=1, **ARGS)
    assert tree_digest(root) == ref[2]


def test_killed_cli_run_resumes_to_identical_dataset(ref, tmp_path):
    root = str(tmp_path / "ds")
    cmd = [sys.executable, "-m", "carla_bridge.cli", "generate", "--out", root, "--seed", "5",
           "--train-sequences", "2", "--val-sequences", "1", "--frames-per-seq", "3",
           "--width", str(W), "--height", str(H), "--workers", "1"]  # fmt: skip
    # the reference used num_vehicles=10 / num_walkers=6: pass them through a scenario file
    scen = tmp_path / "s.yaml"
    scen.write_text("num_vehicles: 10\nnum_walkers: 6\n")
    cmd += ["--scenario", str(scen)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = os.path.join(root, "train", "images", "00000", "000000.jpg")
    deadline = time.time() + 60
    while not os.path.exists(first) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(root, "manifest.json")), "killed before finishing"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert tree_digest(root) == ref[2]


def test_split_seeds_never_overlap_validation():
    last = train_split(9999, 100_000, 1)
    assert last.base_seed + last.sequences - 1 < VALIDATION_SPLIT.base_seed
    with pytest.raises(ValueError, match="overlap the validation split"):
        train_split(10_000, 1, 1)
    assert VALIDATION_SPLIT.seeds()[0] == VALIDATION_SPLIT.base_seed
    assert VALIDATION_SPLIT.sequences > 0 and VALIDATION_SPLIT.frames_per_sequence > 0


def test_resume_with_other_settings_is_refused(ref, tmp_path):
    root = str(tmp_path)
    generate_dataset(root, SCEN, workers=1, **dict(ARGS, train_sequences=1, val_sequences=0))
    with pytest.raises(ValueError, match="other settings .*splits"):
        generate_dataset(root, SCEN, workers=1, **dict(ARGS, train_sequences=2, val_sequences=0))
    with pytest.raises(ValueError, match="scenario"):
        generate_dataset(
            root,
            SCEN.replace(num_vehicles=3),
            workers=1,
            **dict(ARGS, train_sequences=1, val_sequences=0),
        )


def test_stored_flow_reads_back_identically(ref, tmp_path):
    root = str(tmp_path)
    args = dict(ARGS, train_sequences=1, val_sequences=0)
    m = generate_dataset(root, SCEN, workers=1, flow_compression="store", **args)
    assert m["generator"]["flow_compression"] == "store"
    stored = list(iter_frames(root, "train", with_flow=True))
    deflated = list(iter_frames(ref[0], "train", with_flow=True, sequences=["00000"]))
    for a, b in zip(stored, deflated):
        assert np.array_equal(a.flow, b.flow) and np.array_equal(a.flow_valid, b.flow_valid)
    path = os.path.join(root, "train", "flow", "00000", "000001.npz")
    assert os.path.getsize(path) > os.path.getsize(
        os.path.join(ref[0], "train", "flow", "00000", "000001.npz")
    )
    with pytest.raises(ValueError, match="flow-compression"):
        generate_dataset(root, SCEN, workers=1, flow_compression="zstd", **args)


def test_other_seed_changes_data_version(ref, tmp_path):
    m = generate_dataset(str(tmp_path), SCEN, workers=1, **dict(ARGS, seed=6, val_sequences=0))
    assert m["data_version"] != ref[1]["data_version"]
    assert m["splits"]["val"]["frames"] == 0


def test_strip_cli_writes_a_labelled_png(ref, tmp_path):
    from carla_bridge.cli import main

    out = tmp_path / "strip.png"
    assert main(["strip", "--dataset", ref[0], "--out", str(out), "--n", "4", "--cols", "2"]) == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (2 * H, 2 * W, 3)
    assert main(["strip", "--dataset", str(tmp_path), "--out", str(out)]) == 2
    assert main(["generate", "--out", str(tmp_path), "--workers", "0"]) == 2


def test_draw_frame_marks_lines_boxes_and_drivable(ref):
    from carla_bridge.viz import CLASS_COLORS, LINE_COLORS, draw_frame

    fr = next(f for f in iter_frames(ref[0], "train") if f.annotations and f.lines)
    out = draw_frame(fr.image, fr.lane_class, fr.annotations, fr.lines)
    assert out.shape == fr.image.shape and out.dtype == np.uint8
    drv = fr.lane_class == LANE_CLASSES.index("drivable")
    assert (out[drv] != fr.image[drv]).any(axis=1).mean() > 0.9, "drivable area is tinted"
    ln = fr.lines[0]
    x, y = np.round(ln["points"][len(ln["points"]) // 2]).astype(int)
    assert tuple(out[y, x]) == LINE_COLORS[ln["type"]]
    a = fr.annotations[0]
    bx, by, bw, bh = (int(round(v)) for v in a["bbox"])
    col = CLASS_COLORS[a["category_id"] - 1]
    edge = out[by + bh - 1, bx : bx + bw]  # bottom edge (captions sit above the top edge)
    assert (edge == col).all(axis=1).mean() > 0.5


@pytest.mark.parametrize("compiled", [True, False])
def test_box_rle_equals_pycocotools(compiled):
    """The writer's RLE (read inside the label box; numba kernel or numpy) is pycocotools' RLE
    of the whole mask."""
    from carla_bridge.dataset import rle

    rng = np.random.default_rng(0)
    masks = [rng.random((7, 5)) < p for p in (0.0, 0.2, 0.5, 0.8, 1.0) for _ in range(20)]
    edge = np.zeros((7, 5), bool)
    edge[-1, 0] = edge[0, 1] = edge[-1, -1] = True  # a run across a column boundary, last pixel
    masks.append(edge)
    for _ in range(20):  # blobs inside larger images, touching the borders or not
        m = np.zeros((int(rng.integers(5, 40)), int(rng.integers(5, 40))), bool)
        for _ in range(3):
            y, x = rng.integers(0, m.shape[0]), rng.integers(0, m.shape[1])
            m[y : y + int(rng.integers(1, 30)), x : x + int(rng.integers(1, 30))] = True
        masks.append(m)
    for m in masks:
        ys, xs = np.nonzero(m)
        tight = (
            (float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1))
            if len(xs)
            else (0.0, 0.0, 0.0, 0.0)
        )
        want = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        for box in (tight, (1.0, 1.0, 2.0, 2.0)):  # a box missing pixels reads the whole mask
            if compiled:
                got = rle.rle(m, box)
            else:
                got = {"size": list(m.shape), "counts": rle.rle_numpy(m, box)}
            assert got == {"size": list(m.shape), "counts": want["counts"].decode()}
