"""vis-export / vis-eval / vis-train through ``edge-perception``: a tiny checkpoint exported with
its manifest, then both evaluation modes on the tiny moving-rectangles data set."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
import torch
from edge_perception.cli import main
from edge_perception.vis.model import build_vis, vis_config_dict


def _ytvis(root) -> None:
    """ytvis.json of the tiny data set's val split, from its coco.json."""
    coco = json.loads((root / "val/annotations/coco.json").read_text())
    frames = defaultdict(list)
    for im in coco["images"]:
        frames[im["video_id"]].append(im)
    index = {}
    for vid, ims in frames.items():
        for k, im in enumerate(sorted(ims, key=lambda i: i["frame_index"])):
            index[im["id"]] = (vid, k, len(ims))
    tracks = {}
    for a in coco["annotations"]:
        vid, k, n = index[a["image_id"]]
        t = tracks.setdefault(
            a["track_id"],
            {"video_id": vid, "category_id": a["category_id"], "segmentations": [None] * n},
        )
        t["segmentations"][k] = a["segmentation"]
    anns = [dict(t, id=i + 1, iscrowd=0) for i, t in enumerate(tracks.values())]
    videos = [{"id": v} for v in frames]
    (root / "val/annotations/ytvis.json").write_text(
        json.dumps({"videos": videos, "annotations": anns, "categories": coco["categories"]})
    )


@pytest.fixture
def tiny_ckpt(tmp_path):
    model = build_vis("tiny")
    ckpt = {
        "vis_config": vis_config_dict(model),
        "model": model.state_dict(),
        "ema": None,
        "stage": "image",
        "iteration": 0,
        "best": -1.0,
        "args": {"input_size": [64, 96], "variant": "tiny", "seed": 0, "command": "test"},
    }
    path = tmp_path / "last.pt"
    torch.save(ckpt, path)
    return path


def test_export_then_eval_both_modes(tiny_ckpt, vis_data, tmp_path, capsys):
    out = tmp_path / "models" / "vis_tiny"
    assert main(["vis-export", "--checkpoint", str(tiny_ckpt), "--out", str(out)]) == 0
    manifest = json.loads((tmp_path / "models" / "vis_tiny_key.json").read_text())
    assert manifest["task"] == "vis" and manifest["input_size"] == [64, 96]
    assert manifest["mask_margin"] == 0.0  # trained without a margin: the box itself
    assert manifest["graphs"] == {
        "key": "vis_tiny_key.onnx",
        "nonkey": "vis_tiny_nonkey.onnx",
        "head": "vis_tiny_head.onnx",
    }
    assert 0 < manifest["macs"]["ratio"] < 1 and set(manifest["parity"]) == {
        "key",
        "nonkey",
        "head",
    }
    _ytvis(vis_data)
    res_json = tmp_path / "eval.json"
    args = ["vis-eval", "--model", str(out) + "_key.onnx", "--data", str(vis_data)]
    args += ["--keyframe-interval", "2", "--json", str(res_json), "--md", str(tmp_path / "e.md")]
    assert main(args) == 0
    res = json.loads(res_json.read_text())
    assert res["frames"] == 8 and res["sequences"] == 2
    img, vid = res["modes"]["image"], res["modes"]["video"]
    assert img["key_ratio"] == 1.0 and vid["key_ratio"] == pytest.approx(0.5)
    for m in (img, vid):
        for k in (
            "frame_mask_ap",
            "frame_box_ap",
            "video_ap",
            "hota",
            "idf1",
            "mota",
            "inference_ms_mean",
        ):
            assert k in m
        assert m["inference_ms_mean"] > 0
    assert res["video_vs_image_cost"] > 0
    assert "| video | 2 |" in (tmp_path / "e.md").read_text()


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    rc = main(["vis-export", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.pt" in err[0]


def test_vis_train_is_a_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["vis-train", "--help"])
    assert exc.value.code == 0
    assert "--stage" in capsys.readouterr().out


@pytest.mark.parametrize(
    "item, says",
    [
        ("keyframe_interval=2", "use --keyframe-interval"),
        ("max_keyframe_age_s=0.5", "use --max-keyframe-age"),
        ("no_such_parameter=1", "no_such_parameter"),
        ("score_threshold", "PARAM=VALUE"),
    ],
)
def test_vis_eval_set_refuses_what_it_would_ignore(tmp_path, capsys, item, says):
    # the modes set K and the keyframe age themselves: a --set of them is refused, not dropped
    rc = main(["vis-eval", "--model", str(tmp_path / "m_key.onnx"), "--data", str(tmp_path),
               "--set", item])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0]
