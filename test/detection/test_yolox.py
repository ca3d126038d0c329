"""The YOLOX-nano dense baseline: shapes, size, SimOTA, ignore regions, training, ONNX, CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from edge_perception.cli import main as cli
from edge_perception.detection.box_ops import box_iou
from edge_perception.detection.export import export_detector
from edge_perception.detection.model import model_from_checkpoint
from edge_perception.detection.yolox import YOLOX, build_yolox, matrix_greedy_nms
from edge_perception.detection.yolox_loss import YOLOXCriterion, simota_assign
from edge_perception.export import ort_session


def _targets():
    return [
        {
            "labels": torch.tensor([0, 2]),
            "boxes": torch.tensor([[0.3, 0.4, 0.25, 0.3], [0.7, 0.6, 0.3, 0.4]]),
            "ignore_boxes": torch.tensor([[0.5, 0.1, 0.2, 0.15]]),
        },
        {
            "labels": torch.tensor([1]),
            "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.5]]),
            "ignore_boxes": torch.zeros(0, 4),
        },
    ]


def _calibrated(seed: int = 0) -> YOLOX:
    """A nano whose BatchNorm statistics fit random images and whose predictions are moderate
    (an untrained model's eval-mode activations explode or vanish, and saturated scores tie)."""
    torch.manual_seed(seed)
    model = build_yolox("nano")
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.momentum = 1.0
        model.train()(torch.rand(4, 3, 64, 96))
        for bn in bns:
            bn.momentum = 0.03
        for conv in list(model.head.cls_preds) + list(model.head.obj_preds):
            conv.weight.mul_(0.02)
            conv.bias.zero_()
        for conv in model.head.reg_preds:
            conv.weight.mul_(0.002)
            conv.bias.zero_()
    return model.eval()


def test_shapes_and_size():
    torch.manual_seed(0)
    model = build_yolox("nano")
    assert model.cfg.num_classes == 7
    # the paper's 0.91 M is with 80 classes; 7 classes make the class predictors smaller
    assert 0.91e6 < sum(p.numel() for p in build_yolox("nano", 80).parameters()) < 0.915e6
    assert 0.88e6 < sum(p.numel() for p in model.parameters()) < 0.91e6
    x = torch.rand(2, 3, 64, 96)
    out = model.train()(x, _targets())
    cells = 8 * 12 + 4 * 6 + 2 * 3
    assert out["boxes"].shape == (2, cells, 4) and out["obj"].shape == (2, cells)
    assert out["cls"].shape == (2, cells, 7) and out["centers"].shape == (cells, 2)
    assert out["strides"][:96].eq(8).all() and out["strides"][-6:].eq(32).all()
    model.deploy()
    with torch.no_grad():
        boxes, scores, labels = model(x)
    k = model.cfg.num_top
    assert boxes.shape == (2, k, 4) and scores.shape == (2, k) and labels.dtype == torch.int64
    assert torch.all(scores[:, :-1] >= scores[:, 1:])
    with pytest.raises(ValueError, match="unknown YOLOX variant"):
        build_yolox("huge")


def _cells(n: int = 4, stride: float = 8.0):
    ys, xs = torch.meshgrid(torch.arange(n).float(), torch.arange(n).float(), indexing="ij")
    centers = (torch.stack([xs.flatten(), ys.flatten()], -1) + 0.5) * stride
    return centers, torch.full((n * n,), stride)


def test_simota_hand_case():
    centers, strides = _cells()  # 4x4 cells of stride 8, centres 4, 12, 20, 28
    gt = torch.tensor([[16.0, 16.0, 16.0, 16.0]])  # x, y in (8, 24): cells 5, 6, 9, 10 inside
    far = torch.tensor([100.0, 100.0, 4.0, 4.0])
    boxes = far.repeat(16, 1)
    boxes[5] = gt[0]  # IoU 1
    boxes[10] = gt[0]  # IoU 1
    boxes[6] = torch.tensor([20.0, 16.0, 16.0, 16.0])  # IoU 0.6
    obj, cls = torch.zeros(16), torch.zeros(16, 3)
    asg = simota_assign(boxes, obj, cls, centers, strides, gt, torch.tensor([1]))
    # dynamic k = int(1 + 1 + 0.6) = 2: the two exact predictions, not the IoU-0.6 one
    assert asg.fg.nonzero().flatten().tolist() == [5, 10]
    assert asg.gt_index.tolist() == [0, 0] and torch.allclose(asg.iou, torch.ones(2))
    # a cell claimed by two objects goes to the cheaper one (here the one it predicts better)
    gt2 = torch.tensor([[16.0, 16.0, 16.0, 16.0], [14.0, 14.0, 16.0, 16.0]])
    boxes2 = far.repeat(16, 1)
    boxes2[5] = gt2[1]
    asg2 = simota_assign(boxes2, obj, cls, centers, strides, gt2, torch.tensor([0, 1]))
    assert asg2.fg[5] and asg2.gt_index[asg2.fg.nonzero().flatten().tolist().index(5)] == 1
    # cells outside both the box and the centre radius are never positives
    tiny = torch.tensor([[4.0, 4.0, 2.0, 2.0]])
    asg3 = simota_assign(boxes, obj, cls, centers, strides, tiny, torch.tensor([0]), 0.4)
    assert asg3.fg.nonzero().flatten().tolist() == [0]
    empty = simota_assign(boxes, obj, cls, centers, strides, torch.zeros(0, 4), torch.zeros(0))
    assert not empty.fg.any()


def test_ignore_regions_are_neither_positive_nor_negative():
    torch.manual_seed(0)
    model = build_yolox("nano").train()
    crit = YOLOXCriterion(7)
    x = torch.rand(1, 3, 64, 96)
    out = model(x)
    out["obj"].retain_grad()
    empty = {"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}
    region = torch.tensor([[0.25, 0.5, 0.5, 1.0]])  # the left half of the image
    loss = crit(out, [{**empty, "ignore_boxes": region}])
    loss["loss_obj"].backward(retain_graph=True)
    grad = out["obj"].grad[0]
    left = out["centers"][:, 0] <= 48  # the region's border counts as inside
    assert grad[left].abs().max() == 0 and grad[~left].abs().min() > 0
    full = crit(out, [{**empty, "ignore_boxes": torch.zeros(0, 4)}])
    assert loss["loss_obj"] < full["loss_obj"]
    # a positive cell inside an ignore region stays positive (objectness target 1)
    tg = _targets()[:1]
    tg[0]["ignore_boxes"] = tg[0]["boxes"][:1].clone()
    out2 = model(x)
    out2["obj"].retain_grad()
    crit(out2, tg)["loss_obj"].backward()
    assert (out2["obj"].grad[0] < 0).any()  # target 1 above the current probability


def test_one_training_step_reduces_loss():
    torch.manual_seed(0)
    model = build_yolox("nano").train()
    crit = YOLOXCriterion(7, use_l1=True)
    x, tg = torch.rand(2, 3, 64, 96), _targets()
    # plain gradient descent: the dynamic-k assignment (and its normaliser, the number of
    # positives) may jump after an Adam step, whose size ignores the gradient's magnitude
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)

    def total() -> torch.Tensor:
        losses = crit(model(x, tg), tg, num_boxes=3.0)
        assert set(losses) == {"loss_iou", "loss_obj", "loss_cls", "loss_l1"}
        return sum(losses.values())  # type: ignore[return-value]

    before = total()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = total()
    assert torch.isfinite(before) and float(after) < float(before.detach())


def _greedy_nms(boxes, scores, labels, thr):
    keep = []
    for i in range(len(scores)):
        if all(
            labels[j] != labels[i] or box_iou(boxes[i : i + 1], boxes[j : j + 1])[0] <= thr
            for j in keep
        ):
            keep.append(i)
    return keep


def test_matrix_nms_equals_greedy():
    g = torch.Generator().manual_seed(0)
    centres = torch.rand(6, 2, generator=g) * 100
    base = centres.repeat_interleave(10, 0) + torch.randn(60, 2, generator=g) * 4
    wh = 20 + torch.rand(60, 2, generator=g) * 10
    boxes = torch.cat([base - wh / 2, base + wh / 2], 1)
    scores = torch.rand(60, generator=g).sort(descending=True).values
    labels = torch.randint(0, 2, (60,), generator=g)
    ref = _greedy_nms(boxes, scores, labels, 0.5)
    exact = matrix_greedy_nms(boxes[None], scores[None], labels[None], 0.5, 60)[0]
    assert exact.nonzero().flatten().tolist() == ref
    four = matrix_greedy_nms(boxes[None], scores[None], labels[None], 0.5, 4)[0]
    assert four.nonzero().flatten().tolist() == ref  # short suppression chains: 4 suffice


def test_onnx_export_parity(tmp_path):
    model = _calibrated()
    path = str(tmp_path / "yolox.onnx")
    info = export_detector(model, path, (64, 96))
    assert info["parity"]["ok"] and info["params"] == sum(p.numel() for p in model.parameters())
    sess = ort_session(path)
    assert [o.name for o in sess.get_outputs()] == ["boxes", "scores", "labels"]
    x = np.random.default_rng(1).random((3, 3, 64, 96), dtype=np.float32)
    boxes, scores, labels = sess.run(None, {"images": x})
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    assert boxes.shape == (3, 100, 4) and labels.dtype == np.int64
    np.testing.assert_allclose(scores, ref[1].numpy(), atol=1e-4)
    # candidates whose scores differ by float rounding only may swap places: compare as sets
    rb, rl = ref[0].numpy(), ref[2].numpy()
    for b in range(3):
        close = np.abs(boxes[b][:, None] - rb[b][None]).max(-1) < 1e-3  # [K, K]
        found = (close & (labels[b][:, None] == rl[b][None])).any(1)
        assert found.mean() > 0.98
    assert np.mean(np.abs(boxes - rb).max(-1) < 1e-3) > 0.95


def _rows(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_cli_train_resume_export_eval(det_dataset, tmp_path):
    out = tmp_path / "run"
    common = [
        "det-train",
        "--data",
        str(det_dataset),
        "--out",
        str(out),
        "--variant",
        "yolox_nano",
        "--input-size",
        "64",
        "96",
        "--batch-size",
        "3",
        "--warmup-iters",
        "2",
        "--schedule",
        "flatcos",
        "--no-progress",
        "--seed",
        "3",
    ]
    assert cli(common + ["--epochs", "2"]) == 0
    assert [r["epoch"] for r in _rows(out / "metrics.csv")] == ["0", "1"]
    assert cli(common + ["--epochs", "3", "--resume"]) == 0
    rows = _rows(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert int(rows[2]["iteration"]) == 3 * int(rows[0]["iteration"])
    ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert ckpt["config"]["model"] == "yolox"
    assert isinstance(model_from_checkpoint(ckpt), YOLOX)

    onnx_path = tmp_path / "yolox.onnx"
    assert cli(["det-export", "--checkpoint", str(out / "last.pt"), "--out", str(onnx_path)]) == 0
    manifest = json.loads((tmp_path / "yolox.json").read_text())
    assert manifest["model"] == "yolox" and manifest["input_size"] == [64, 96]
    ev = tmp_path / "ev.json"
    data = ["--data", str(det_dataset), "--json", str(ev)]
    assert cli(["det-eval", "--onnx", str(onnx_path), *data]) == 0
    assert json.loads(ev.read_text())["num_images"] == 4
    assert cli(["det-eval", "--checkpoint", str(out / "last.pt"), *data]) == 0
