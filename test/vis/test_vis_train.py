"""Staged VIS training (tiny, a few iterations): image -> flow -> video, resume, curves."""

from __future__ import annotations

import csv
import os

import torch
from edge_perception.vis.train import cli


def _run(data, out, stage, *extra):
    args = [
        "--stage",
        stage,
        "--data",
        str(data),
        "--out",
        str(out),
        "--variant",
        "tiny",
        "--input-size",
        "64",
        "96",
        "--batch-size",
        "2",
        "--warmup-iters",
        "1",
        "--max-val-images",
        "2",
        "--eval-every",
        "2",
        "--log-every",
        "1",
        *extra,
    ]
    assert cli(args) == 0


def test_stages_resume_and_curves(vis_data, tmp_path):
    a, b, c = tmp_path / "image", tmp_path / "flow", tmp_path / "video"
    # the image stage without the propagating non-key decoder; the flow stage adds it (a copy of
    # the trained decoder's last layer) and trains it with the flow net and the fuse
    _run(
        vis_data,
        a,
        "image",
        "--iters",
        "2",
        "--nonkey-propagate",
        "off",
        "--flow-corr-radius",
        "0",
    )
    assert (a / "curves.png").is_file() and (a / "best.pt").is_file()
    rows = list(csv.DictReader(open(a / "metrics.csv")))
    assert len(rows) == 2 and rows[-1]["mask_ap"] != ""
    ck = torch.load(a / "last.pt", weights_only=False)
    assert ck["iteration"] == 2 and ck["stage"] == "image"
    before = {k: v.clone() for k, v in ck["ema"].items()}  # --init starts from the EMA
    assert not any(k.startswith(("propagator.", "flow_net.corr_proj.")) for k in before)
    _run(
        vis_data,
        b,
        "flow",
        "--init",
        str(a / "last.pt"),
        "--iters",
        "2",
        "--max-val-images",
        "0",
        "--nonkey-propagate",
        "on",
        "--flow-corr-radius",
        "1",
    )
    flow_ck = torch.load(b / "last.pt", weights_only=False)
    assert flow_ck["vis_config"]["vis"]["nonkey_propagate"] is True
    # the cost volume was added (zero-initialised) and trained with the rest of the flow net
    assert flow_ck["vis_config"]["vis"]["flow_corr_radius"] == 1
    assert flow_ck["model"]["flow_net.corr_proj.weight"].abs().sum() > 0
    after = flow_ck["model"]
    changed = {k for k in after if k not in before or not torch.equal(before[k], after[k])}
    assert changed and all(
        k.startswith(("flow_net.", "fuse.lateral", "fuse.block", "propagator.")) for k in changed
    )
    last = "det.decoder.layers.%d.ffn.0.weight" % (ck["vis_config"]["det"]["decoder_layers"] - 1)
    prop = after["propagator.layer.ffn.0.weight"]
    # started as the copy of the trained last layer, then learnt (2 steps)
    assert prop.shape == before[last].shape and not torch.equal(prop, before[last])
    assert (prop - before[last]).abs().max() < 0.05
    _run(
        vis_data,
        c,
        "video",
        "--init",
        str(b / "last.pt"),
        "--frames",
        "3",
        "--max-gap",
        "1",
        "--iters",
        "3",
        "--stop-after-iters",
        "1",
        "--max-val-images",
        "0",
        "--weight-distill",
        "1",
    )
    assert torch.load(c / "last.pt", weights_only=False)["iteration"] == 1
    _run(
        vis_data,
        c,
        "video",
        "--init",
        str(b / "last.pt"),
        "--frames",
        "3",
        "--max-gap",
        "1",
        "--iters",
        "3",
        "--resume",
        "--max-val-images",
        "0",
        "--weight-distill",
        "1",
    )
    assert torch.load(c / "last.pt", weights_only=False)["iteration"] == 3
    video_rows = list(csv.DictReader(open(c / "metrics.csv")))
    assert len(video_rows) == 3
    assert all(float(r["loss_feat"]) > 0 for r in video_rows)  # the distillation term
    assert os.path.isfile(c / "curves.png")
    # a flow stage started from a video checkpoint keeps its trained propagator (only an image
    # checkpoint's untrained copy is replaced by the decoder's last layer); lr 0: no update
    d = tmp_path / "flow2"
    _run(vis_data, d, "flow", "--init", str(c / "last.pt"), "--iters", "1", "--lr", "0",
         "--max-val-images", "0")  # fmt: skip
    video_w = torch.load(c / "last.pt", weights_only=False)["ema"]
    flow2_w = torch.load(d / "last.pt", weights_only=False)["model"]
    key = "propagator.layer.ffn.0.weight"
    assert torch.equal(flow2_w[key], video_w[key])
    assert not torch.equal(flow2_w[key], video_w[last])


def test_distill_loss_pulls_the_nonkey_path_towards_the_key_path():
    from edge_perception.vis.model import build_vis
    from edge_perception.vis.train import distill_loss

    torch.manual_seed(0)
    model = build_vis("tiny").eval()
    img0, img1 = torch.rand(2, 1, 3, 64, 96).unbind(0)
    with torch.no_grad():  # the keyframe's maps as constants: only this frame's paths below
        key = model.key_state(model.forward_key(img0))
    out = model.forward_nonkey(img1, key)
    loss = distill_loss(model, img1, out)
    assert loss > 0
    loss.backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum()}
    # the student's side learns (the fuse, the flow net that warps p4 / p5, the protonet) ...
    assert any(n.startswith("fuse.") for n in grads)
    assert any(n.startswith("flow_net.") for n in grads)
    assert any(n.startswith("protonet.") for n in grads)
    # ... the teacher (the key path on the same frame: S4 / S5, the encoder's fusion) does not
    assert not any(n.startswith(("det.backbone.stages.2", "det.backbone.stages.3")) for n in grads)
    # zero when the non-key maps and prototypes are the key path's own
    with torch.no_grad():
        kout = model.forward_key(img1)
    assert float(distill_loss(model, img1, kout)) == 0.0


def test_masks_stage_trains_only_the_mask_heads_with_the_margin(vis_data, tmp_path):
    a, b = tmp_path / "image", tmp_path / "masks"
    _run(vis_data, a, "image", "--iters", "1", "--max-val-images", "0")
    before = torch.load(a / "last.pt", weights_only=False)["ema"]
    _run(vis_data, b, "masks", "--init", str(a / "last.pt"), "--frames", "3", "--max-gap", "1",
         "--iters", "2", "--mask-margin", "0.25", "--max-val-images", "2")  # fmt: skip
    ck = torch.load(b / "last.pt", weights_only=False)
    assert ck["stage"] == "masks" and ck["vis_config"]["vis"]["mask_margin"] == 0.25
    after = ck["model"]
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("protonet.", "query_heads.coeff")) for k in changed)
    rows = list(csv.DictReader(open(b / "metrics.csv")))
    assert float(rows[-1]["loss_mask"]) > 0 and rows[-1]["mask_ap"] != ""
    # a later stage keeps the margin without being told
    c = tmp_path / "flow"
    _run(vis_data, c, "flow", "--init", str(b / "last.pt"), "--iters", "1", "--frames", "2",
         "--max-val-images", "0")  # fmt: skip
    flow_cfg = torch.load(c / "last.pt", weights_only=False)["vis_config"]["vis"]
    assert flow_cfg["mask_margin"] == 0.25


def test_embed_stage_trains_only_the_embedding_head(vis_data, tmp_path):
    a, b = tmp_path / "image", tmp_path / "embed"
    _run(vis_data, a, "image", "--iters", "1", "--max-val-images", "0")
    before = torch.load(a / "last.pt", weights_only=False)["ema"]
    _run(vis_data, b, "embed", "--init", str(a / "last.pt"), "--frames", "3", "--max-gap", "1",
         "--iters", "2", "--max-val-images", "0")  # fmt: skip
    ck = torch.load(b / "last.pt", weights_only=False)
    assert ck["stage"] == "embed"
    after = ck["model"]
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("query_heads.embed.") for k in changed)
    rows = list(csv.DictReader(open(b / "metrics.csv")))
    assert float(rows[-1]["loss_embed"]) > 0
