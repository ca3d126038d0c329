"""DDP with 2 real gloo processes gives the same gradients as one process on the whole batch."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from edge_perception.detection.criterion import SetCriterion
from edge_perception.detection.model import build_rtdetr
from edge_perception.detection.train import compute_loss


def _model():
    torch.manual_seed(0)
    # no denoising (its random groups depend on the local batch) and frozen BatchNorm statistics
    # (per-process batch statistics differ from whole-batch ones by design)
    m = build_rtdetr("tiny", num_denoising=0).train()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.eval()
    return m


def _batch():
    g = torch.Generator().manual_seed(1)
    images = torch.rand(4, 3, 64, 64, generator=g)
    counts = [2, 0, 3, 1]  # uneven objects per process (2 vs 4): tests the normaliser
    targets = []
    for n in counts:
        boxes = torch.rand(n, 4, generator=g) * 0.4 + 0.3
        targets.append({"labels": torch.randint(0, 7, (n,), generator=g), "boxes": boxes})
    return images, targets


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _worker(rank, world, store_file, out_dir):
    # A FileStore, not the default TCPStore: c10d formats every peer address of its store's
    # sockets with getnameinfo, and for the IPv4-mapped / IPv6 addresses its dual-stack sockets
    # use, the C library asks the DNS server (PTR 1.0.0.127.in-addr.arpa) on the non-loopback
    # interface, which the network rule forbids (issue 12; /etc/hosts answers only plain
    # 127.0.0.1). Gloo's own pairs on the loopback interface make no such lookup.
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{store_file}", rank=rank, world_size=world
    )
    try:
        images, targets = _batch()
        model = _model()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        per = len(images) // world
        sl = slice(rank * per, (rank + 1) * per)
        loss, _ = compute_loss(ddp, SetCriterion(7), images[sl], targets[sl])
        loss.backward()
        torch.save(_grads(model), os.path.join(out_dir, f"grads{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ddp_gradients_equal_single_process(tmp_path):
    images, targets = _batch()
    model = _model()
    loss, _ = compute_loss(model, SetCriterion(7), images, targets)
    loss.backward()
    single = _grads(model)

    store = tmp_path / "store"
    mp.spawn(_worker, args=(2, str(store), str(tmp_path)), nprocs=2, join=True)
    g0 = torch.load(tmp_path / "grads0.pt")
    g1 = torch.load(tmp_path / "grads1.pt")
    assert set(g0) == set(single)
    worst = 0.0
    for name, ref in single.items():
        assert torch.equal(g0[name], g1[name]), name  # all-reduced: identical on both ranks
        scale = ref.abs().max().item() + 1e-8
        worst = max(worst, (g0[name] - ref).abs().max().item() / scale)
    assert worst < 1e-4
    # a sanity check that the comparison can fail: one process alone gives other gradients
    model.zero_grad()
    compute_loss(model, SetCriterion(7), images[:2], targets[:2])[0].backward()
    assert any(
        not torch.allclose(p.grad, single[n], rtol=1e-3, atol=1e-6)
        for n, p in model.named_parameters()
        if p.grad is not None and n in single
    )


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
