"""Model shapes/gradients on the tiny variant and the data set reader + augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edge_perception.lane.data import LaneDataset, augment_pair
from edge_perception.lane.model import build_model
from lane_synth import write_dataset


def test_tiny_model_shapes_and_gradients():
    torch.manual_seed(0)
    model = build_model("tiny")
    x = torch.rand(2, 3, 64, 96)
    logits = model(x)
    assert logits.shape == (2, 4, 64, 96)
    logits.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    model.deploy()
    out_logits, mask = model(x)
    assert mask.dtype == torch.uint8 and mask.shape == (2, 64, 96)
    assert torch.equal(mask.long(), out_logits.argmax(1))


def test_variants_grow_and_overrides_validate():
    n = {v: sum(p.numel() for p in build_model(v).parameters()) for v in ("tiny", "small", "base")}
    assert n["tiny"] < n["small"] < n["base"]
    wide = build_model("tiny", width=0.5)
    assert sum(p.numel() for p in wide.parameters()) > n["tiny"]
    with pytest.raises(ValueError, match="unknown lane model variant"):
        build_model("huge")
    with pytest.raises(ValueError, match="unknown UNetConfig"):
        build_model("tiny", widht=2)


def test_dataset_reads_layout(lane_dataset):
    ds = LaneDataset(str(lane_dataset), "train", size=(64, 96))
    assert len(ds) == 8
    x, y = ds[0]
    assert x.shape == (3, 64, 96) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert y.shape == (64, 96) and y.dtype == torch.int64
    assert set(np.unique(y.numpy())) == {0, 1, 2, 3}
    means = ds.class_pixel_means()
    assert means.sum() == pytest.approx(64 * 96)
    with pytest.raises(ValueError, match="multiples of 32"):
        LaneDataset(str(lane_dataset), "train", size=(60, 96))
    with pytest.raises(FileNotFoundError, match="split"):
        LaneDataset(str(lane_dataset), "test", size=(64, 96))


def test_wrong_class_table_is_rejected(tmp_path):
    import json

    root = write_dataset(tmp_path, frames=(1, 1), size=(32, 64))
    m = json.loads((root / "manifest.json").read_text())
    m["classes"]["lane"] = ["background", "road"]
    (root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="class table"):
        LaneDataset(str(root), "train", size=(32, 64))


def test_flip_keeps_lane_semantics():
    # a solid line on the left and a dashed one on the right: after a mirror they swap sides but
    # keep their class, and the image moves with the label
    img = np.zeros((32, 64, 3), np.uint8)
    mask = np.zeros((32, 64), np.uint8)
    mask[:, 10:13] = 2
    mask[::4, 50:53] = 3
    img[mask == 2] = 255
    img[mask == 3] = 128
    flipped = None
    for seed in range(50):
        rng = np.random.default_rng(seed)
        im2, m2 = augment_pair(img, mask, rng)
        cols2 = np.where((m2 == 2).any(0))[0]
        cols3 = np.where((m2 == 3).any(0))[0]
        if len(cols2) and len(cols3) and cols2.mean() > cols3.mean():
            flipped = (im2, m2)
            break
    assert flipped is not None, "no flip drawn in 50 seeds"
    im2, m2 = flipped
    assert set(np.unique(m2)) <= {0, 2, 3}
    # image and label stay aligned: solid-line pixels stay bright
    assert im2[m2 == 2].mean() > 150


def test_shrinking_keeps_thin_lines_continuous():
    from edge_perception.lane.data import resize_pair

    mask = np.ones((64, 128), np.uint8)  # drivable
    mask[:, 41] = 2  # a 1-px solid line: nearest x0.5 sampling keeps only even columns
    mask[:, 90] = 3
    img = np.zeros((64, 128, 3), np.uint8)
    _, small = resize_pair(img, mask, (32, 64))
    assert (small[:, 20] == 2).all()  # column 41 -> 20 (covers half of the 2-px footprint)
    assert (small[:, 45] == 3).all()
    assert set(np.unique(small)) == {1, 2, 3}
    assert (small == 2).sum() == 32 and (small == 3).sum() == 32  # not thickened


def test_resize_pair_interpolation_changes_the_image_only():
    import cv2
    from edge_perception.lane.data import resize_pair

    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    mask = rng.integers(0, 4, (48, 80)).astype(np.uint8)
    a_img, a_mask = resize_pair(img, mask, (30, 50))
    l_img, l_mask = resize_pair(img, mask, (30, 50), "linear")
    assert np.array_equal(a_img, cv2.resize(img, (50, 30), interpolation=cv2.INTER_AREA))
    assert np.array_equal(l_img, cv2.resize(img, (50, 30), interpolation=cv2.INTER_LINEAR))
    assert not np.array_equal(a_img, l_img) and np.array_equal(a_mask, l_mask)
