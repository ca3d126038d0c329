"""Issue 11's training recipe: ignore regions, MAL, the dense o2m head, mosaic, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from edge_perception.cli import main as cli
from edge_perception.detection.criterion import SetCriterion, matchability_aware_loss
from edge_perception.detection.data import CocoDetection
from edge_perception.detection.dense_head import DenseHead, dense_loss, task_aligned_assign
from edge_perception.detection.model import build_rtdetr, count_parameters
from edge_perception.detection.train import EpochSampler, lr_factor


def _add_ignore(root, split="train"):
    """Flag the first annotation of every image as ``ignore`` (tiny-object flag)."""
    path = root / split / "annotations" / "coco.json"
    coco = json.loads(path.read_text())
    seen = set()
    for a in coco["annotations"]:
        if a["image_id"] not in seen:
            a["ignore"] = 1
            seen.add(a["image_id"])
    path.write_text(json.dumps(coco))
    return coco


def test_ignore_flagged_objects_are_regions_not_positives(det_dataset):
    coco = _add_ignore(det_dataset)
    ds = CocoDetection(str(det_dataset), "train", (96, 128))
    old = CocoDetection(str(det_dataset), "train", (96, 128), ignore_regions=False)
    for i in range(len(ds)):
        _, t = ds[i]
        _, t_old = old[i]
        image_id = t["image_id"]
        n_all = sum(a["image_id"] == image_id for a in coco["annotations"])
        assert t["ignore_boxes"].shape == (1, 4)
        assert len(t["labels"]) == n_all - 1
        assert len(t_old["labels"]) == n_all and t_old["ignore_boxes"].shape == (0, 4)
    # the augmentations (crop, flip, mosaic) carry ignore regions along with the boxes
    aug = CocoDetection(str(det_dataset), "train", (96, 128), augment=True)
    aug.mosaic_prob = 1.0
    n_ign = sum(aug[i][1]["ignore_boxes"].shape[0] for i in range(len(aug)))
    assert n_ign >= 1
    for i in range(len(aug)):
        b = aug[i][1]["boxes"]
        assert ((b >= 0) & (b <= 1.0 + 1e-6)).all()


def _one_image_outputs():
    """One image, 3 queries: q0 on the object, q1 confidently inside an ignore region, q2 away."""
    logits = torch.full((1, 3, 7), -3.0)
    logits[0, 1, 2] = 3.0
    logits.requires_grad_(True)
    boxes = torch.tensor([[[0.3, 0.3, 0.2, 0.2], [0.75, 0.75, 0.1, 0.1], [0.1, 0.9, 0.1, 0.1]]])
    target = {"labels": torch.tensor([0]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2]])}
    return logits, boxes, target


def test_ignore_region_silences_unmatched_queries_only():
    logits, boxes, target = _one_image_outputs()
    crit = SetCriterion(7)
    plain = crit({"pred_logits": logits, "pred_boxes": boxes}, [target])
    ign_t = dict(target, ignore_boxes=torch.tensor([[0.75, 0.75, 0.3, 0.3]]))
    ign = crit({"pred_logits": logits, "pred_boxes": boxes}, [ign_t])
    assert float(ign["loss_vfl"].detach()) < float(plain["loss_vfl"].detach())
    assert float(ign["loss_bbox"].detach()) == pytest.approx(float(plain["loss_bbox"].detach()))
    ign["loss_vfl"].backward()
    g = logits.grad[0]
    assert torch.all(g[1] == 0)  # the query in the ignore region: no class gradient
    assert torch.any(g[0] != 0) and torch.any(g[2] != 0)


def test_mal_matches_its_definition():
    logits = torch.tensor([[0.3, -1.0], [2.0, 0.5]])
    q = torch.tensor([[0.8, 0.0], [0.0, 0.4]])
    p = logits.sigmoid()
    got = matchability_aware_loss(logits, q, alpha=0.75, gamma=1.5)
    # positive: -(q^g log p + (1 - q^g) log(1 - p)); negative: -alpha p^g log(1 - p)
    t = q.pow(1.5)
    pos = -(t * p.log() + (1 - t) * (1 - p).log())
    neg = -0.75 * p.pow(1.5) * (1 - p).log()
    want = torch.where(q > 0, pos, neg)
    assert torch.allclose(got, want, atol=1e-6)
    # unlike VFL (weight q), a positive's weight is 1: d/dlogit = p - q^gamma, whatever q
    lg = torch.zeros(1, requires_grad=True)
    matchability_aware_loss(lg, torch.tensor([0.1])).sum().backward()
    assert float(lg.grad) == pytest.approx(0.5 - 0.1**1.5, abs=1e-6)


def test_task_aligned_assignment_covers_small_objects_and_resolves_overlaps():
    torch.manual_seed(0)
    head = DenseHead(16, 7)
    feats = [torch.randn(1, 16, 12, 20), torch.randn(1, 16, 6, 10), torch.randn(1, 16, 3, 5)]
    out = head(feats)
    assert out["logits"].shape == (1, 12 * 20 + 6 * 10 + 15, 7)
    # a 4 px-wide object at 96x160 (smaller than a stride-8 cell) and two overlapping ones
    gt = torch.tensor([[0.5, 0.5, 4 / 160, 4 / 96], [0.25, 0.5, 0.3, 0.5], [0.3, 0.5, 0.3, 0.5]])
    labels = torch.tensor([5, 0, 1])
    gi, score, iou = task_aligned_assign(
        out["logits"][0].detach(),
        out["boxes"][0].detach(),
        out["points"],
        out["strides"],
        labels,
        gt,
    )
    for j in range(3):
        assert int((gi == j).sum()) >= 1, f"object {j} got no positive cell"
    assert (score[gi < 0] == 0).all() and (score >= 0).all() and (score <= 1).all()
    assert torch.all(iou[gi >= 0] >= 0)
    # the loss runs, is finite and gives gradient to the head
    loss = dense_loss(out, [{"labels": labels, "boxes": gt}], lambda x, t: (x - t) ** 2, {})
    total = sum(loss.values())
    total.backward()
    assert torch.isfinite(total) and head.cls.weight.grad.abs().sum() > 0


def test_dense_head_is_training_only():
    torch.manual_seed(0)
    plain = build_rtdetr("tiny")
    torch.manual_seed(0)
    dense = build_rtdetr("tiny", dense_head=True)
    assert count_parameters(plain) == count_parameters(dense)
    missing = dense.load_state_dict(plain.state_dict(), strict=False)
    assert all(k.startswith("dense_head.") for k in missing.missing_keys)
    x = torch.rand(1, 3, 64, 96)
    plain.deploy()
    dense.deploy()
    with torch.no_grad():
        a, b = plain(x), dense(x)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    dense.deploy(False).train()
    out = dense(x, [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}])
    assert "dense_outputs" in out


def test_schedule_and_sampler():
    total, warm = 100, 10
    f = [lr_factor(i, total, warm, 0.05, flat=0.5) for i in range(total)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(v == 1.0 for v in f[10:50]) and f[99] < 0.06 and f[75] < 1.0
    s = EpochSampler(10, seed=3)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start=4)
    assert list(s) == full[4:] and len(s) == 6
    s.set_epoch(3)
    assert sorted(list(s)) == list(range(10)) and list(s) != full
    shards = []
    for r in range(2):
        sh = EpochSampler(10, seed=3, rank=r, world=2)
        sh.set_epoch(2)
        shards.append(list(sh))
    assert sorted(shards[0] + shards[1]) == list(range(10))


def test_resume_is_exact(det_dataset, tmp_path):
    _add_ignore(det_dataset)
    base = [
        "det-train",
        "--data",
        str(det_dataset),
        "--variant",
        "tiny",
        "--input-size",
        "64",
        "96",
        "--batch-size",
        "2",
        "--iters",
        "7",
        "--schedule",
        "flatcos",
        "--warmup-iters",
        "2",
        "--dense-o2m",
        "--cls-loss",
        "mal",
        "--mosaic",
        "0.5",
        "--max-val-images",
        "0",
        "--threads",
        "1",
        "--no-progress",
        "--seed",
        "5",
    ]
    torch.set_num_threads(1)
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(base + ["--out", str(a)]) == 0
    # 3 epochs of 3 batches: stop inside the first epoch, then inside the second, then finish
    assert cli(base + ["--out", str(b), "--stop-after-iters", "2"]) == 0
    mid = torch.load(b / "last.pt", weights_only=False)
    assert mid["iteration"] == 2 and mid["batch_in_epoch"] == 2
    assert cli(base + ["--out", str(b), "--stop-after-iters", "2", "--resume"]) == 0
    assert cli(base + ["--out", str(b), "--resume"]) == 0
    ca = torch.load(a / "last.pt", weights_only=False)
    cb = torch.load(b / "last.pt", weights_only=False)
    assert ca["iteration"] == cb["iteration"] == 7
    for key in ("model", "ema"):
        for name, va in ca[key].items():
            assert torch.equal(va, cb[key][name]), f"{key}.{name} differs after resuming"
    assert np.array_equal(ca["rng"].numpy(), cb["rng"].numpy())


def test_compact_checkpoint_round_trip(det_dataset, tmp_path):
    from edge_perception.detection.checkpoint import compact, expand

    out = tmp_path / "run"
    args = ["det-train", "--data", str(det_dataset), "--out", str(out), "--variant", "tiny"]
    args += ["--input-size", "64", "96", "--batch-size", "2", "--iters", "3", "--no-progress"]
    assert cli(args + ["--max-val-images", "0", "--threads", "1"]) == 0
    size = compact(str(out / "last.pt"), str(tmp_path / "c.pt"))
    assert size < (out / "last.pt").stat().st_size
    expand(str(tmp_path / "c.pt"), str(tmp_path / "e.pt"))
    a = torch.load(out / "last.pt", weights_only=False)
    e = torch.load(tmp_path / "e.pt", weights_only=False)
    for k, v in a["model"].items():
        assert torch.equal(v, e["model"][k])  # weights and EMA exact
    for k, v in a["ema"].items():
        assert torch.equal(v, e["ema"][k])
    for pid, st in a["optimizer"]["state"].items():
        m, m2 = st["exp_avg"], e["optimizer"]["state"][pid]["exp_avg"]
        assert m2.dtype == torch.float32
        assert torch.allclose(m, m2, rtol=2**-7, atol=0)  # bfloat16: 8 significant bits
    # a resume from the expanded checkpoint runs
    (out / "last.pt").unlink()
    (tmp_path / "e.pt").rename(out / "last.pt")
    args[args.index("3")] = "4"
    assert cli(args + ["--max-val-images", "0", "--threads", "1", "--resume"]) == 0
