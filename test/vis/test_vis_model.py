"""VIS model (tiny): paths, warping, losses, keyframe policy, MACs, ONNX export parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edge_perception.export import ort_session
from edge_perception.vis import export as vx
from edge_perception.vis.criterion import VISCriterion, embedding_loss, flow_losses, mask_cost
from edge_perception.vis.flow import FeatFlowNet, local_correlation, warp
from edge_perception.vis.keyframe import KeyframePolicy, KeyframePolicyConfig
from edge_perception.vis.model import build_vis


def _targets(b=2, h=64, w=96):
    out = []
    for i in range(b):
        m = torch.zeros(2, h, w, dtype=torch.uint8)
        m[0, 8:24, 8:40] = 1
        m[1, 30:60, 50:90] = 1
        boxes = torch.tensor([[24 / w, 16 / h, 32 / w, 16 / h], [70 / w, 45 / h, 40 / w, 30 / h]])
        out.append(
            {
                "labels": torch.tensor([0, 1]),
                "boxes": boxes,
                "masks": m,
                "track_ids": torch.tensor([5 + i, 7]),
                "ignore_boxes": torch.zeros(0, 4),
            }
        )
    return out


def test_warp_follows_the_flow():
    feat = torch.zeros(1, 1, 8, 12)
    feat[0, 0, 3, 4] = 1.0
    flow = torch.zeros(1, 2, 8, 12)
    flow[:, 0] = 2 * 8.0  # +2 cells in x at stride 8 (input 64x96)
    out = warp(feat, flow, (64, 96))
    assert out[0, 0, 3, 2] == pytest.approx(1.0) and out.sum() == pytest.approx(1.0)


def test_paths_and_losses_backpropagate():
    model = build_vis("tiny")
    x = torch.rand(2, 3, 64, 96)
    tg = _targets()
    model.eval()
    with torch.no_grad():
        key = model.forward_key(x)
        nk = model.forward_nonkey(x, model.key_state(key))
    # untrained flow net = identity warp and zero scale / bias: the keyframe's maps come back
    assert torch.allclose(nk["features"]["p4"], key["features"]["p4"], atol=1e-6)
    assert nk["protos"].shape == (2, model.cfg.num_protos, 16, 24)
    model.train()
    crit = VISCriterion(model.num_classes)
    out = model.forward_key(x, tg)
    losses = crit(out, tg)
    assert {"loss_mask", "loss_dice", "loss_mask_aux0", "loss_semantic", "loss_vfl"} <= set(losses)
    out2 = model.forward_nonkey(x, model.key_state(out), tg)
    l2 = crit(out2, tg)
    emb = embedding_loss(
        [out["pred_embeds"], out2["pred_embeds"]], [out["indices"], out2["indices"]], [tg, tg]
    )
    flow = torch.zeros(2, 2, 64, 96)
    fl = flow_losses(
        out2["features"], out["features"], flow, torch.ones(2, 64, 96, dtype=torch.bool)
    )
    total = sum(losses.values()) + sum(l2.values()) + emb + sum(fl.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.protonet.out.weight.grad.abs().sum() > 0
    assert model.flow_net.head16.flow.weight.grad is not None
    assert model.query_heads.embed[0].weight.grad.abs().sum() > 0


def test_mask_cost_prefers_the_right_mask():
    t = torch.zeros(2, 16)
    t[0, :8] = 1
    t[1, 8:] = 1
    region = torch.ones(2, 16)
    logits = torch.stack([t[0] * 8 - 4, t[1] * 8 - 4])  # query 0 ~ mask 0, query 1 ~ mask 1
    bce, dice = mask_cost(logits, t, region)
    assert bce[0, 0] < bce[0, 1] and bce[1, 1] < bce[1, 0]
    assert dice[0, 0] < 0.1 and dice[0, 1] > 0.9


def test_embedding_loss_prefers_consistent_tracks():
    tg = [[{"track_ids": torch.tensor([1, 2])}], [{"track_ids": torch.tensor([1, 2])}]]
    idx = [[(torch.tensor([0, 1]), torch.tensor([0, 1]))]] * 2
    e = torch.eye(2)[None]
    good = embedding_loss([e, e], idx, tg)
    bad = embedding_loss([e, e.flip(1)], idx, tg)
    assert good < bad


def test_keyframe_policy():
    pol = KeyframePolicy(
        KeyframePolicyConfig(
            keyframe_interval=3,
            max_keyframe_age_s=1.0,
            max_stamp_gap_s=0.3,
            max_mean_flow_px=10.0,
            max_lost_tracks=2,
        )
    )
    t = 0.0
    reasons = []
    for _ in range(5):
        reasons.append(pol.decide(t)[1])
        t += 0.1
    assert reasons == ["first", "", "", "interval", ""]
    assert pol.decide(t + 0.5) == (True, "stamp_gap")
    t += 0.6
    pol.observe(mean_flow_px=15.0)
    assert pol.decide(t) == (True, "flow")
    pol.observe(lost_tracks=3)
    assert pol.decide(t + 0.1) == (True, "lost_tracks")
    pol.reset()
    assert pol.decide(t + 0.2) == (True, "reset")
    assert pol.decide(t + 0.1) == (True, "reset")  # time went backwards
    slow = KeyframePolicy(
        KeyframePolicyConfig(keyframe_interval=100, max_keyframe_age_s=0.25, max_stamp_gap_s=None)
    )
    got = [slow.decide(i * 0.1)[0] for i in range(7)]
    assert got == [True, False, False, True, False, False, True]  # by time


def test_path_costs_nonkey_cheaper():
    c = vx.path_costs(build_vis("tiny"), (64, 96))
    assert 0 < c["nonkey_path"]["macs"] < c["key_path"]["macs"]
    assert "det.encoder" in c["key"]["by_module"] and "flow_net" in c["nonkey"]["by_module"]
    assert "protonet" in c["head"]["by_module"]


def test_export_batch_one_static_by_default(tmp_path):
    """Default export: every input / output shape static (batch 1), so ONNX Runtime folds the
    shape arithmetic; ``dynamic_batch`` keeps a symbolic batch dimension."""
    import onnx

    torch.manual_seed(0)
    model = build_vis("tiny", nonkey_propagate=True, flow_corr_radius=1)

    def dims(path):
        g = onnx.load(path).graph
        return {
            v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(g.input) + list(g.output)
        }

    static = vx.export_vis(model, str(tmp_path / "s"), (64, 96), parity=False)["paths"]
    dynamic = vx.export_vis(
        model, str(tmp_path / "d"), (64, 96), parity=False, dynamic_batch=True
    )["paths"]
    for g in ("key", "nonkey", "head"):
        s, d = dims(static[g]), dims(dynamic[g])
        assert set(s) == set(d)
        for name in s:
            assert s[name][0] == 1 and all(isinstance(x, int) and x > 0 for x in s[name])
            assert d[name][0] == "N"


@pytest.mark.parametrize(
    "propagate,corr", [(False, 0), (True, 0), (True, 2)], ids=["select", "propagate", "corr"]
)
def test_export_three_graphs_with_ort_parity(tmp_path, propagate, corr):
    torch.manual_seed(0)
    model = build_vis("tiny", nonkey_propagate=propagate, flow_corr_radius=corr)
    if corr:  # a cost volume that matters (its projection starts at zero)
        torch.nn.init.normal_(model.flow_net.corr_proj.weight, std=0.5)
    info = vx.export_vis(model, str(tmp_path / "vis_tiny"), (64, 96))
    assert all(r["ok"] for r in info["parity"].values())
    nonkey_in = vx.NONKEY_INPUTS + (["key_queries", "key_boxes"] if propagate else [])
    assert vx.nonkey_inputs(model) == nonkey_in
    io = {
        "key": (vx.KEY_INPUTS, vx.KEY_OUTPUTS),
        "nonkey": (nonkey_in, vx.NONKEY_OUTPUTS),
        "head": (vx.HEAD_INPUTS, vx.HEAD_OUTPUTS),
    }
    sess = {k: ort_session(p) for k, p in info["paths"].items()}
    for name, (ins, outs) in io.items():
        assert [i.name for i in sess[name].get_inputs()] == ins
        assert [o.name for o in sess[name].get_outputs()] == outs
    # chain key -> head and key -> nonkey -> head in ONNX Runtime against PyTorch
    rng = np.random.default_rng(0)
    f0 = rng.random((1, 3, 64, 96), dtype=np.float32)
    f1 = np.clip(f0 + 0.02 * rng.random(f0.shape, dtype=np.float32), 0, 1)
    k = dict(zip(vx.KEY_OUTPUTS, sess["key"].run(None, {"images": f0})))
    feeds = {"images": f1, **{n: k[n] for n in ("key_p4", "key_p5", "key_flow_feat")}}
    if propagate:
        feeds.update(key_queries=k["queries"], key_boxes=k["query_boxes"])
    nk = dict(zip(vx.NONKEY_OUTPUTS, sess["nonkey"].run(None, feeds)))
    head = dict(zip(vx.HEAD_OUTPUTS, sess["head"].run(None, {n: nk[n] for n in vx.HEAD_INPUTS})))
    model.eval()
    kk = model.cfg.num_top
    with torch.no_grad():
        ko = model.forward_key(torch.from_numpy(f0))
        nko = model.forward_nonkey(torch.from_numpy(f1), model.key_state(ko))
        ref = vx.HeadGraph(model)(*vx._head_inputs(nko, kk))
    assert ko["pred_queries"].shape[1] == model.det.cfg.num_queries
    if propagate:
        # the non-key decoder refines exactly the keyframe's num_top queries
        assert nko["pred_queries"].shape[1] == kk
    else:
        # it selects only nonkey_queries at inference; both paths hand the head num_top
        assert nko["pred_queries"].shape[1] == model.cfg.nonkey_queries
        assert model.cfg.nonkey_queries < model.det.cfg.num_queries
    assert k["queries"].shape[1] == nk["queries"].shape[1] == kk
    assert head["masks"].shape == (1, kk, 16, 24) and head["labels"].dtype == np.int64
    assert head["embeddings"].shape == (1, kk, model.cfg.embed_dim)
    np.testing.assert_allclose(head["boxes"], ref[0].numpy(), atol=1e-3)
    np.testing.assert_allclose(head["masks"], ref[3].numpy(), atol=1e-3)
    assert np.all(np.diff(head["scores"], axis=1) <= 1e-7)


def test_propagated_boxes_follow_the_flow():
    from edge_perception.vis.propagate import move_boxes

    boxes = torch.tensor([[[0.25, 0.5, 0.1, 0.2], [0.75, 0.25, 0.3, 0.1]]])
    flow = torch.zeros(1, 2, 4, 6)  # stride 16 of a 64x96 input
    flow[:, 0, :, :3] = 9.6  # left half: the keyframe point lies 9.6 px (0.1 W) to the right
    flow[:, 1, :, 3:] = -6.4  # right half: 6.4 px (0.1 H) above
    moved = move_boxes(boxes, flow, (64, 96))
    expect = torch.tensor([[[0.15, 0.5, 0.1, 0.2], [0.75, 0.35, 0.3, 0.1]]])
    assert torch.allclose(moved, expect, atol=1e-6)


def test_propagator_starts_as_the_last_decoder_layer_and_learns():
    model = build_vis("tiny")
    dec, prop = model.det.decoder, model.propagator
    assert prop is not None
    for a, b in zip(dec.layers[-1].parameters(), prop.layer.parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()  # a copy, not shared
    x = torch.rand(2, 3, 64, 96)
    tg = _targets()
    model.train()
    crit = VISCriterion(model.num_classes)
    out = model.forward_key(x, tg)
    key = model.key_state(out)
    assert key["queries"].shape == (2, model.cfg.num_top, model.det.cfg.hidden_dim)
    assert not key["queries"].requires_grad
    nk = model.forward_nonkey(x, key, tg)
    assert nk["pred_boxes"].shape == (2, model.cfg.num_top, 4)
    losses = crit(nk, tg)
    sum(losses.values()).backward()
    assert prop.bbox_head.layers[-1].weight.grad.abs().sum() > 0  # (zero-initialised layer)
    assert prop.layer.cross_attn.value_proj.weight.grad.abs().sum() > 0
    # the keyframe's decoder gets nothing from the non-key loss (its queries are detached)
    assert all(p.grad is None for p in dec.layers[-1].parameters())


def test_warp_equals_grid_sample_with_border_padding():
    # warp() (zero-padded sampling at coordinates clamped to the map, the fast GridSample mode
    # of ONNX Runtime) must stay grid_sample with border padding (bilinear,
    # align_corners=False), also for flows that leave the map
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(1)
    for b, c, h, w in [(2, 5, 9, 15), (1, 3, 18, 30)]:
        feat = torch.randn(b, c, h, w, generator=g)
        flow = torch.randn(b, 2, h, w, generator=g) * 40
        hw = (h * 16, w * 16)
        ys = (torch.arange(h) + 0.5) * (2.0 / h) - 1.0
        xs = (torch.arange(w) + 0.5) * (2.0 / w) - 1.0
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        scale = torch.tensor([2.0 / hw[1], 2.0 / hw[0]])
        grid = torch.stack([gx, gy], -1)[None] + flow.permute(0, 2, 3, 1) * scale
        ref = F.grid_sample(feat, grid, "bilinear", padding_mode="border", align_corners=False)
        assert torch.allclose(warp(feat, flow, hw), ref, atol=1e-5)


def test_head_keeps_the_best_query_class_pairs():
    # like the detector's postprocess: an ambiguous query keeps both labels, each with its own
    # score; the pair's mask and box are its query's
    model = build_vis("tiny").eval()
    kk, c = model.cfg.num_top, model.num_classes
    g = torch.Generator().manual_seed(0)
    p3 = torch.rand(1, model.det.cfg.hidden_dim, 8, 12, generator=g)
    s2 = torch.rand(1, model.det.backbone.out_channels[0], 16, 24, generator=g)
    queries = torch.randn(1, kk, model.det.cfg.hidden_dim, generator=g)
    boxes = torch.rand(1, kk, 4, generator=g) * 0.4 + 0.1
    logits = torch.full((1, kk, c), -8.0)
    logits[0, 3, 1], logits[0, 3, 2] = 2.0, 1.0  # query 3: truck 0.88, bus 0.73
    logits[0, 5, 0] = 1.5  # query 5: car 0.82
    with torch.no_grad():
        out_boxes, scores, labels, masks, emb = vx.HeadGraph(model)(p3, s2, queries, boxes, logits)
    assert labels[0, :3].tolist() == [1, 0, 2]
    assert torch.allclose(scores[0, :3], torch.sigmoid(torch.tensor([2.0, 1.5, 1.0])))
    assert torch.equal(out_boxes[0, 0], out_boxes[0, 2]) and torch.equal(masks[0, 0], masks[0, 2])
    assert torch.equal(emb[0, 0], emb[0, 2]) and not torch.equal(emb[0, 0], emb[0, 1])
    assert scores.shape == (1, kk) and bool(torch.all(scores[0, :-1] >= scores[0, 1:]))


def test_propagator_layer_equals_the_decoder_layer():
    # sample-then-project is the same function of the same weights as the decoder layer over the
    # flattened memory (value projection first), also near and past the map borders
    from edge_perception.vis.propagate import QueryPropagator

    torch.manual_seed(0)
    model = build_vis("tiny").eval()
    prop = QueryPropagator(model.det.decoder).eval()
    ca = prop.layer.cross_attn
    with torch.no_grad():  # random (not zero-initialised) offsets, weights and biases
        for lin in (ca.sampling_offsets, ca.attention_weights, ca.value_proj):
            lin.weight.normal_(0, 0.3)
            lin.bias.normal_(0, 0.5)
    c = model.det.cfg.hidden_dim
    feats = [torch.randn(2, c, h, w) for h, w in ((8, 12), (4, 6), (2, 3))]
    shapes = [(int(f.shape[2]), int(f.shape[3])) for f in feats]
    memory = torch.cat([f.flatten(2).transpose(1, 2) for f in feats], dim=1)
    x, pos = torch.randn(2, 10, c), torch.randn(2, 10, c)
    ref = torch.rand(2, 10, 4)
    ref[:, :3, :2] = torch.tensor([0.0, 0.99])  # at the border
    with torch.no_grad():
        want = prop.layer(x, pos, ref, memory, shapes)
        got = prop.layer_forward(x, pos, ref, feats)
    assert torch.allclose(got, want, atol=1e-4), float((got - want).abs().max())


def test_local_correlation_matches_a_loop_over_displacements():
    g = torch.Generator().manual_seed(0)
    cur, key = torch.randn(2, 5, 4, 7, generator=g), torch.randn(2, 5, 4, 7, generator=g)
    r = 2
    got = local_correlation(cur, key, r)
    assert got.shape == (2, 25, 4, 7)
    want = torch.zeros_like(got)
    k = 0
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            for y in range(4):
                for x in range(7):
                    if 0 <= y + dy < 4 and 0 <= x + dx < 7:
                        want[:, k, y, x] = (cur[:, :, y, x] * key[:, :, y + dy, x + dx]).sum(1)
            k += 1
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # a key map shifted by (+1, -2) cells: the best match of an inner cell is that displacement
    # (unit vectors per cell, as the flow net feeds it: cosine similarity, 1 at the match)
    cur = torch.nn.functional.normalize(cur, dim=1)
    shifted = torch.roll(cur, shifts=(1, -2), dims=(2, 3))
    best = local_correlation(cur, shifted, r)[:, :, 1, 2].argmax(1)
    assert best.tolist() == [(1 + r) * (2 * r + 1) + (-2 + r)] * 2


def test_cost_volume_starts_as_a_no_op_and_learns():
    torch.manual_seed(0)
    plain = FeatFlowNet(12, 16, reduce=8, hidden=8)
    torch.manual_seed(0)
    corr = FeatFlowNet(12, 16, reduce=8, hidden=8, corr_radius=2)
    # same weights elsewhere (the cost volume's projection is extra and starts at zero)
    missing, unexpected = corr.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("corr_proj.") for k in missing) and missing
    for m in (plain, corr):  # non-zero flow heads, so the outputs depend on the input
        torch.nn.init.normal_(m.head16.flow.weight, std=0.1)
    corr.head16.load_state_dict(plain.head16.state_dict())
    plain.eval(), corr.eval()
    g = torch.Generator().manual_seed(1)
    cur, key = torch.randn(1, 8, 12, 20, generator=g), torch.randn(1, 8, 12, 20, generator=g)
    with torch.no_grad():
        a, b = plain(cur, key), corr(cur, key)
    torch.testing.assert_close(a["flow16"], b["flow16"])
    corr.train()
    b = corr(cur, key)
    b["flow16"].square().mean().backward()
    assert corr.corr_proj.weight.grad.abs().sum() > 0  # it gets gradient from the start
    with pytest.raises(ValueError, match="corr_radius"):
        FeatFlowNet(12, 16, corr_radius=-1)


def test_fold_input_std_keeps_every_output():
    """Folding 1/std into the stem conv (export) changes no output of either path, border cells
    included (zero padding of x - m equals zero padding of (x - m) / s)."""
    import copy

    torch.manual_seed(0)
    model = build_vis("tiny", nonkey_propagate=True, flow_corr_radius=1).eval()
    folded = copy.deepcopy(model)
    folded.fold_input_std()
    folded.fold_input_std()  # idempotent
    assert folded.std_folded and not model.std_folded
    assert not torch.equal(
        folded.det.backbone.stem[0][0].weight, model.det.backbone.stem[0][0].weight
    )
    g = torch.Generator().manual_seed(1)
    f0, f1 = torch.rand(1, 3, 64, 96, generator=g), torch.rand(1, 3, 64, 96, generator=g)
    outs = []
    with torch.no_grad():
        for m in (model, folded):
            ko = m.forward_key(f0)
            outs.append((ko, m.forward_nonkey(f1, m.key_state(ko))))
    for a, b in zip(outs[0], outs[1]):
        for name in ("pred_boxes", "pred_logits", "protos"):
            torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=1e-4)


def test_in_map_share_is_grid_sample_of_ones():
    """The closed form of the zero-padded bilinear in-map weight (the propagator's bias term)
    equals grid_sample of a ones map, at points inside, on and beyond every edge."""
    import torch.nn.functional as F
    from edge_perception.vis.propagate import in_map_share

    g = torch.Generator().manual_seed(2)
    feats = [torch.zeros(1, 3, h, w) for h, w in ((6, 10), (3, 5), (2, 2))]
    grids = torch.rand(1, 7, 4, len(feats), 5, 2, generator=g) * 2.6 - 1.3  # beyond the map too
    grids[0, 0, 0, :, 0] = torch.tensor([-1.0, 1.0])  # exactly on the outer edges
    share = in_map_share(grids, feats)
    for lvl, f in enumerate(feats):
        gl = grids[:, :, :, lvl].reshape(1, -1, 5, 2)
        ref = F.grid_sample(torch.ones_like(f[:, :1]), gl, "bilinear", "zeros", False)
        torch.testing.assert_close(share[:, :, :, lvl].reshape(ref.shape), ref, atol=1e-6, rtol=0)
    assert (share > 0).any() and (share == 0).any() and ((share > 0) & (share < 1)).any()


def test_sample_then_project_is_the_decoders_cross_attention():
    """The propagator's cross-attention (value projection after sampling, closed-form in-map
    bias weight) computes the detector's deformable attention of the same weights, with boxes
    whose sampling points fall off the maps too."""
    from edge_perception.vis.propagate import sample_then_project

    torch.manual_seed(3)
    model = build_vis("tiny").eval()
    attn = model.det.decoder.layers[-1].cross_attn
    with torch.no_grad():
        torch.nn.init.normal_(attn.value_proj.bias, std=1.0)  # the bias term matters
        torch.nn.init.normal_(attn.sampling_offsets.bias, std=2.0)  # points beyond the boxes
    c = attn.dim
    feats = [torch.randn(2, c, h, w) for h, w in ((8, 12), (4, 6), (2, 3))]
    query = torch.randn(2, 6, c)
    boxes = torch.rand(2, 6, 4) * torch.tensor([1.2, 1.2, 0.8, 0.8]) - 0.1  # some near edges
    memory = torch.cat([f.flatten(2).transpose(1, 2) for f in feats], 1)
    shapes = [(int(f.shape[2]), int(f.shape[3])) for f in feats]
    with torch.no_grad():
        ref = attn(query, boxes, memory, shapes)
        out = sample_then_project(attn, query, boxes, feats)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_mask_loss_margin_supervises_the_ring_around_the_box():
    from edge_perception.vis.criterion import mask_loss
    from edge_perception.vis.heads import expand_boxes

    boxes = torch.tensor([[0.5, 0.5, 0.25, 0.25]])
    assert torch.allclose(expand_boxes(boxes, 0.5), torch.tensor([[0.5, 0.5, 0.5, 0.5]]))
    assert expand_boxes(boxes, 0.0) is boxes
    # the object fills its box exactly; a prediction that also covers the ring around the box
    # is free without a margin and penalised with one
    masks = torch.zeros(1, 32, 32)
    masks[0, 12:20, 12:20] = 1
    tgt = [{"boxes": boxes, "masks": masks}]
    idx = [(torch.tensor([0]), torch.tensor([0]))]
    # one prototype at stride 2: logit +10 on the box and its ring (cells 4..11), -10 elsewhere
    spread = torch.full((1, 1, 16, 16), -10.0)
    spread[0, 0, 4:12, 4:12] = 10.0
    c = torch.ones(1, 1, 1)
    bce0, dice0 = mask_loss(c, spread, tgt, idx, 1.0)
    bce1, dice1 = mask_loss(c, spread, tgt, idx, 1.0, margin=0.5)
    assert bce0 < 1e-3 and dice0 < 1e-2
    assert bce1 > 1.0 and dice1 > 0.2
