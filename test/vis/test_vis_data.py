"""Clip data: masks, track ids and flow chained to the keyframe (known answers)."""

from __future__ import annotations

import numpy as np
import torch
from edge_perception.vis.data import (
    ClipDataset,
    chain_flows,
    collate_clips,
    flow_to_input,
    frames_as_images,
)


def test_chain_flows_composes_translations():
    h, w = 20, 30
    f1 = np.zeros((h, w, 2), np.float32)
    f1[..., 0] = -2.0  # frame c: everything moved +2 px in x since c-1
    f2 = np.zeros((h, w, 2), np.float32)
    f2[..., 1] = -1.0  # frame c-1: +1 px in y since c-2
    v = np.ones((h, w), bool)
    acc, valid = chain_flows([(f1, v), (f2, v)])
    assert np.allclose(acc[5:15, 5:25], [-2.0, -1.0])
    assert not valid[:, :2].any()  # chained positions left the image
    assert valid[5:15, 5:25].all()


def test_flow_to_input_scales_vectors_and_places_them_at_the_offset():
    flow = np.zeros((4, 8, 2), np.float32)
    flow[..., 0], flow[..., 1] = 4.0, -2.0  # a uniform motion, camera pixels
    valid = np.ones((4, 8), bool)
    valid[:, :4] = False  # the left half unknown
    fl, va = flow_to_input(flow, valid, (6, 10), (0.5, 1.0), (3, 1))
    assert fl.shape == (6, 10, 2) and va.shape == (6, 10)
    # the content is 4 x 4 at x 3..6, y 1..4; the vectors follow the per-axis scale
    assert np.allclose(fl[1:5, 3:7, 0], 2.0) and np.allclose(fl[1:5, 3:7, 1], -2.0)
    assert not fl[0].any() and not fl[5].any() and not fl[:, :3].any() and not fl[:, 7:].any()
    assert va[1:5, 5:7].all() and not va[1:5, 3:5].any() and va.sum() == 8


def test_clip_items(vis_data):
    ds = ClipDataset(str(vis_data), "train", (64, 96), frames=3, max_gap=1)
    assert len(ds) == 2 * 2  # 2 sequences x (4 - 3 + 1)
    clip = ds[0]
    assert len(clip) == 3
    t0, t2 = clip[0]["target"], clip[2]["target"]
    assert t0["masks"].shape == (2, 64, 96) and t0["masks"].dtype == torch.uint8
    assert t0["track_ids"].tolist() == t2["track_ids"].tolist() == [1, 2]
    assert int(t0["masks"][0].sum()) == 24 * 16
    # flow of frame 2 to the keyframe: the chain of two -v steps inside the object
    fl = clip[2]["flow"].numpy()
    y, x = 10, 8 + 2 * 3 + 5  # inside track 1 at frame 2
    assert np.allclose(fl[:, y, x], [-6.0, 0.0])
    # warping the keyframe's mask with the flow gives the frame-2 mask
    m0 = t0["masks"][0].numpy()
    ys, xs = np.nonzero(t2["masks"][0].numpy())
    src = m0[ys + fl[1, ys, xs].astype(int), xs + fl[0, ys, xs].astype(int)]
    assert src.all()
    batch = collate_clips([ds[0], ds[1]])
    assert batch["images"].shape == (2, 3, 3, 64, 96)
    assert batch["flows"].shape == (2, 2, 2, 64, 96)
    images, targets = frames_as_images(batch)
    assert images.shape[0] == 6 and len(targets) == 6


def test_flip_keeps_flow_consistent(vis_data):
    ds = ClipDataset(str(vis_data), "train", (64, 96), frames=2, max_gap=1, augment=True)
    flipped = None
    for epoch in range(8):
        ds.set_epoch(epoch)
        clip = ds[0]
        m = clip[1]["target"]["masks"][0].numpy()
        if m[:, -20:].any() and not m[:, :20].any():  # track 1 (starts left) now on the right
            flipped = clip
            break
    assert flipped is not None
    fl = flipped[1]["flow"].numpy()
    ys, xs = np.nonzero(flipped[1]["target"]["masks"][0].numpy())
    assert np.allclose(fl[0, ys, xs], 3.0)  # u negated: the object moves left
