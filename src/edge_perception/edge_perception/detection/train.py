"""Train the RT-DETR detector (``edge-perception det-train``, ``python -m ...detection.train``).

Single process::

    edge-perception det-train --data data/gen --out runs/det --variant small --input-size 320 320

Several processes (DDP; gloo on CPU, NCCL on GPU; one process per core / GPU)::

    torchrun --nproc_per_node 2 -m edge_perception.detection.train --data data/gen --out runs/det

The recipe (issue 11; every aid is a switch, measured in bench/det_recipe.md):

- one planned schedule: ``--iters`` fixes the run length in iterations; linear warm-up, a flat
  learning rate until ``--flat-frac`` of the run, then cosine down to 5 % (``--schedule flatcos``;
  ``cosine`` is the older warm-up + cosine). ``--max-minutes`` only stops (and saves) a run, it
  never bends the schedule, so a run split over sessions follows the same curve;
- ``--dense-o2m``: the training-only dense one-to-many head on the encoder maps;
- ``--cls-loss mal``: DEIM's Matchability-Aware Loss instead of the varifocal loss;
- ``--mosaic P`` until ``--mosaic-stop`` of the run, clean (no mosaic) after it;
- ignore-flagged objects are neither positives nor negatives (always on; see data.py).

AdamW (no weight decay on norms and biases), gradient clipping, EMA of the weights (evaluated and
exported), AMP when CUDA is available, seeded, tqdm progress. The loss normaliser (objects in the
batch) is averaged over processes so DDP gradients equal the single-process gradients of the
combined batch (the dense head's normaliser is per process).

Resuming is exact: ``last.pt`` is written every ``--save-every-min`` minutes and at every epoch end
with the position inside the epoch, the optimizer, EMA, and the torch / NumPy / Python RNG states;
the sample order of an epoch is a pure function of (seed, epoch), and the augmentations of a
sample of (seed, epoch, index), so ``--resume`` continues with the very batches an uninterrupted
run would have seen. Writes to ``--out``: ``last.pt``, ``best.pt`` (best validation mAP50:95),
``metrics.csv`` (with per-class AP), ``curves.png``, ``args.json``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import random
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from edge_perception.config import OBJECT_CLASS_NAMES
from edge_perception.datafiles import load_torch
from edge_perception.detection.criterion import SetCriterion
from edge_perception.detection.data import CocoDetection, collate
from edge_perception.detection.model import RTDETR, build_rtdetr, config_dict
from edge_perception.detection.yolox import build_yolox
from edge_perception.detection.yolox_loss import YOLOXCriterion

CLASS_NAMES = OBJECT_CLASS_NAMES
CSV_FIELDS = ["epoch", "iteration", "lr", "loss", "map", "map50", "map75", "seconds"] + [
    f"ap_{c}" for c in CLASS_NAMES
]


class EpochSampler(Sampler):
    """Indices of one epoch: a permutation that depends only on (seed, epoch), this process's
    share of it (``rank::world``), starting at batch ``start`` of the epoch (exact resume)."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _indices(self) -> List[int]:
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        per = self.n // self.world if self.world > 1 else self.n
        return perm[self.rank :: self.world][:per]

    def __iter__(self):
        return iter(self._indices()[self.start :])

    def __len__(self) -> int:
        return max(0, len(self._indices()) - self.start)


class ModelEMA:
    """Exponential moving average of a model's weights, decay ramped up over the first updates."""

    def __init__(self, model: nn.Module, decay: float = 0.9995, ramp: int = 500) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.ramp, self.updates = decay, ramp, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.ramp))
        src = model.state_dict()
        for k, v in self.module.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(src[k].detach(), alpha=1 - d)
            else:
                v.copy_(src[k])


def lr_factor(
    it: int,
    total: int,
    warmup: int,
    final: float = 0.05,
    time_fraction: float = 0.0,
    flat: float = 0.0,
) -> float:
    """Linear warm-up to 1 over ``warmup`` iterations, flat until ``flat`` of ``total``, then
    cosine down to ``final``.

    ``time_fraction`` (elapsed / ``--max-minutes``; only without ``--iters``) advances the
    cosine when the time budget, not the iteration count, will end the run.
    """
    if it < warmup:
        return (it + 1) / warmup
    start = max(warmup, int(flat * total))
    if it < start:
        return 1.0
    t = min(1.0, max((it - start) / max(1, total - start), time_fraction))
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t))


def param_groups(model: nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or "embed" in name else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def to_device(targets: List[Dict[str, Any]], device: torch.device) -> List[Dict[str, Tensor]]:
    keys = ("labels", "boxes", "ignore_boxes")
    return [{k: t[k].to(device) for k in keys if k in t} for t in targets]


def compute_loss(
    model: nn.Module,
    criterion: SetCriterion,
    images: Tensor,
    targets: List[Dict[str, Tensor]],
) -> Tuple[Tensor, Dict[str, float]]:
    """Forward + loss of one (local) batch. Under torch.distributed the normaliser is the mean
    object count per process, so that averaged DDP gradients equal the combined-batch gradient."""
    num_boxes = torch.tensor(float(sum(int(t["labels"].numel()) for t in targets)))
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(num_boxes)
        num_boxes = num_boxes / dist.get_world_size()
    outputs = model(images, targets)
    losses = criterion(outputs, targets, num_boxes=max(float(num_boxes), 1e-6))
    total = sum(losses.values())
    return total, {k: float(v.detach()) for k, v in losses.items()}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def plot_curves(csv_path: str, png_path: str) -> None:
    """Loss and validation mAP against epoch from ``metrics.csv``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    it = [float(r["iteration"]) for r in rows]
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    ax[0].plot(it, [float(r["loss"]) for r in rows])
    ax[0].set(xlabel="iteration", ylabel="train loss", title="loss")
    for key in ("map", "map50"):
        pts = [(e, float(r[key])) for e, r in zip(it, rows) if r.get(key) not in ("", "nan", None)]
        if pts:
            ax[1].plot(*zip(*pts), marker="o", label=key)
    ax[1].set(xlabel="iteration", ylabel="COCO AP (val)", title="validation")
    for c in CLASS_NAMES:
        key = f"ap_{c}"
        pts = [(e, float(r[key])) for e, r in zip(it, rows) if r.get(key) not in ("", "nan", None)]
        if pts:
            ax[2].plot(*zip(*pts), marker=".", label=c)
    ax[2].set(xlabel="iteration", ylabel="AP50:95 (val)", title="per class")
    for a in ax[1:]:
        if a.lines:
            a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edge-perception det-train``."""
    p = parser
    p.add_argument("--data", required=True, help="carla_bridge data set root")
    p.add_argument("--out", required=True, help="run folder (checkpoints, CSV, curves)")
    p.add_argument(
        "--variant",
        default="small",
        help="tiny | small | small_s2 | ref_v2s, or yolox_nano (the dense YOLOX baseline)",
    )
    p.add_argument("--input-size", type=int, nargs=2, default=[320, 320], metavar=("H", "W"))
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=8, help="per process")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup-iters", type=int, default=200)
    p.add_argument("--clip-grad", type=float, default=0.1)
    p.add_argument("--ema-decay", type=float, default=0.9995)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per process")
    p.add_argument("--cache", action="store_true", help="keep decoded images in memory")
    p.add_argument("--max-train-images", type=int, default=None)
    p.add_argument("--max-val-images", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=1, help="epochs between validations")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this")
    p.add_argument(
        "--iters",
        type=int,
        default=None,
        help="planned run length in iterations (overrides --epochs; the schedule follows it)",
    )
    p.add_argument("--schedule", choices=("cosine", "flatcos"), default="cosine")
    p.add_argument("--flat-frac", type=float, default=0.5, help="flatcos: flat until this")
    p.add_argument("--cls-loss", choices=("vfl", "mal"), default="vfl")
    p.add_argument("--dense-o2m", action="store_true", help="training-only dense o2m head")
    p.add_argument("--dense-weight", type=float, default=1.0)
    p.add_argument("--mosaic", type=float, default=0.0, help="mosaic probability")
    p.add_argument(
        "--mosaic-stop", type=float, default=0.75, help="no mosaic after this run fraction"
    )
    p.add_argument(
        "--no-ignore",
        action="store_true",
        help="train ignore-flagged objects as positives (old behaviour; for A/B runs)",
    )
    p.add_argument(
        "--stop-after-iters",
        type=int,
        default=None,
        help="stop (and save last.pt) after this many iterations of this invocation",
    )
    p.add_argument("--save-every-min", type=float, default=10.0, help="mid-epoch last.pt")
    p.add_argument(
        "--eval-every-iters", type=int, default=0, help="validate every N iterations too"
    )
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument("--override", default="{}", help="JSON of model config overrides")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=main)


def _init_distributed() -> Tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def _save(path: str, state: Dict[str, Any]) -> None:
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def _validate(
    model: nn.Module, val_ds: CocoDetection, row: Dict[str, Any], progress: bool
) -> Tuple[float, Dict[str, Any]]:
    """Evaluate ``model`` on ``val_ds``; fill ``row``; return (mAP50:95, metrics dict)."""
    from edge_perception.detection.evaluate import evaluate, torch_predictor

    m = evaluate(torch_predictor(model), val_ds, progress=progress)
    row.update(map=m.map, map50=m.map50, map75=m.map75)
    for c in CLASS_NAMES:
        row[f"ap_{c}"] = m.per_class.get(c, "")
    return (m.map if not math.isnan(m.map) else -1.0), m.as_dict()


def main(args: argparse.Namespace) -> int:
    """Train as described by ``args`` (see :func:`register`); returns the exit status."""
    torch.set_num_threads(max(1, args.threads))
    rank, world, device = _init_distributed()
    main_proc = rank == 0
    seed_everything(args.seed + rank)
    os.makedirs(args.out, exist_ok=True)
    size = (int(args.input_size[0]), int(args.input_size[1]))
    overrides = json.loads(args.override)
    if args.dense_o2m:
        overrides["dense_head"] = True

    torch.manual_seed(args.seed)  # identical initial weights on every process
    dense = args.variant.startswith("yolox")  # the dense baseline of bench/det_vs_dense.py
    build = build_yolox if dense else build_rtdetr
    model: Any = build(args.variant, **overrides).to(device)
    ema = ModelEMA(model, args.ema_decay)
    criterion: Any = (
        YOLOXCriterion(model.cfg.num_classes)
        if dense
        else SetCriterion(
            model.cfg.num_classes, cls_loss=args.cls_loss, dense_weight=args.dense_weight
        )
    )
    opt = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr)
    train_ds = CocoDetection(
        args.data,
        "train",
        size,
        augment=True,
        cache=args.cache,
        max_images=args.max_train_images,
        seed=args.seed,
        ignore_regions=not args.no_ignore,
    )
    val_ds = (
        CocoDetection(args.data, "val", size, max_images=args.max_val_images, cache=args.cache)
        if main_proc and args.max_val_images != 0
        else None
    )
    if len(train_ds) == 0:
        raise SystemExit(f"{args.data}: the train split has no images")
    sampler = EpochSampler(len(train_ds), args.seed, rank, world)
    drop_last = len(train_ds) >= args.batch_size * world
    loader = DataLoader(
        train_ds,
        args.batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=args.workers,
        drop_last=drop_last,
        persistent_workers=False,
        # its own generator: creating an epoch's iterator draws a seed from it, and drawing from
        # the global one would shift the denoising noise of a resumed run
        generator=torch.Generator().manual_seed(args.seed),
    )
    per_rank = len(sampler)
    iters_per_epoch = per_rank // args.batch_size if drop_last else -(-per_rank // args.batch_size)
    iters_per_epoch = max(1, iters_per_epoch)
    if args.iters:
        total_iters = int(args.iters)
        epochs = -(-total_iters // iters_per_epoch)
    else:
        epochs = args.epochs
        total_iters = epochs * iters_per_epoch
    flat = args.flat_frac if args.schedule == "flatcos" else 0.0
    mosaic_stop = int(args.mosaic_stop * total_iters)

    start_epoch, start_batch, iteration, best = 0, 0, 0, -1.0
    last_path = os.path.join(args.out, "last.pt")
    if args.resume:
        keys = ("model", "ema", "ema_updates", "optimizer", "iteration", "best_map", "epoch")
        ckpt = load_torch(last_path, "det-train checkpoint", "--resume", keys=keys)
        model.load_state_dict(ckpt["model"])
        ema.module.load_state_dict(ckpt["ema"])
        ema.updates = ckpt["ema_updates"]
        opt.load_state_dict(ckpt["optimizer"])
        for st in opt.state.values():
            for k, v in list(st.items()):
                if torch.is_tensor(v) and v.dtype in (torch.float16, torch.bfloat16):
                    st[k] = v.float()  # a compact (models/checkpoints) state
        iteration, best = ckpt["iteration"], ckpt["best_map"]
        if ckpt.get("batch_in_epoch") is not None:  # saved inside an epoch
            start_epoch, start_batch = ckpt["epoch"], int(ckpt["batch_in_epoch"])
        else:
            start_epoch = ckpt["epoch"] + 1
        torch.set_rng_state(ckpt["rng"])
        if "np_rng" in ckpt:
            np.random.set_state(ckpt["np_rng"])
            random.setstate(ckpt["py_rng"])
    ddp = (
        nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None
        )
        if world > 1
        else model
    )
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    csv_path = os.path.join(args.out, "metrics.csv")
    if main_proc:
        with open(os.path.join(args.out, "args.json"), "w", encoding="utf-8") as f:
            json.dump({**vars(args), "run": None, "command": " ".join(sys.argv)}, f, indent=2)
        if not args.resume or not os.path.isfile(csv_path):
            with open(csv_path, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerow(CSV_FIELDS)
    t0 = time.time()
    last_save = t0
    first_iter = iteration
    stop = False
    progress = main_proc and not args.no_progress

    def save_last(epoch: int, batch_in_epoch: Optional[int]) -> None:
        state = _state(model, ema, opt, epoch, iteration, best, args)
        state["batch_in_epoch"] = batch_in_epoch
        _save(last_path, state)

    def new_row(epoch: int, loss: float) -> Dict[str, Any]:
        row: Dict[str, Any] = {k: "" for k in CSV_FIELDS}
        row.update(
            epoch=epoch,
            iteration=iteration,
            lr=opt.param_groups[0]["lr"],
            loss=loss,
            seconds=round(time.time() - t0, 1),
        )
        return row

    def validate_keep_best(row: Dict[str, Any], epoch: int) -> None:
        """Validate the EMA weights into ``row``; a new best mAP50:95 is saved as best.pt."""
        nonlocal best
        assert val_ds is not None
        metric, md = _validate(ema.module, val_ds, row, progress)
        if metric > best:
            best = metric
            state = _state(model, ema, opt, epoch, iteration, best, args)
            state["val_metrics"] = md
            _save(os.path.join(args.out, "best.pt"), state)

    def write_row(row: Dict[str, Any]) -> None:
        with open(csv_path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, CSV_FIELDS).writerow(row)
        plot_curves(csv_path, os.path.join(args.out, "curves.png"))

    for epoch in range(start_epoch, epochs):
        if iteration >= total_iters:
            break
        skip = start_batch if epoch == start_epoch else 0
        sampler.set_epoch(epoch, skip * args.batch_size)
        train_ds.set_epoch(epoch)
        model.train()
        running, count = 0.0, 0
        bar = tqdm(
            loader,
            desc=f"det-train {epoch + 1}/{epochs}",
            disable=not progress,
            leave=False,
            initial=skip,
            total=iters_per_epoch,
        )
        batch_in_epoch = skip
        # the next batch is fetched before the loop body runs: set its mosaic probability now
        # (with --workers > 0, prefetched batches may use the previous value near the switch)
        train_ds.mosaic_prob = args.mosaic if iteration < mosaic_stop else 0.0
        for images, targets in bar:
            frac = (
                (time.time() - t0) / (args.max_minutes * 60)
                if args.max_minutes and not args.iters
                else 0.0
            )
            for g in opt.param_groups:
                g["lr"] = args.lr * lr_factor(
                    iteration, total_iters, args.warmup_iters, 0.05, frac, flat
                )
            images = images.to(device, non_blocking=True)
            tg = to_device(targets, device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                loss, parts = compute_loss(ddp, criterion, images, tg)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise SystemExit(f"loss is {loss_value} at iteration {iteration}: {parts}")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if args.clip_grad > 0:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
            scaler.step(opt)
            scaler.update()
            ema.update(model)
            iteration += 1
            batch_in_epoch += 1
            train_ds.mosaic_prob = args.mosaic if iteration < mosaic_stop else 0.0
            running += loss_value
            count += 1
            bar.set_postfix(loss=f"{running / count:.3f}", lr=f"{opt.param_groups[0]['lr']:.1e}")
            end_of_run = iteration >= total_iters
            timed_out = bool(args.max_minutes) and time.time() - t0 > args.max_minutes * 60
            timed_out |= bool(args.stop_after_iters) and iteration - first_iter >= (
                args.stop_after_iters or 0
            )
            if (
                main_proc
                and val_ds is not None
                and args.eval_every_iters
                and iteration % args.eval_every_iters == 0
                and not end_of_run
            ):
                row = new_row(epoch, running / max(count, 1))
                validate_keep_best(row, epoch)
                model.train()
                tqdm.write(f"iteration {iteration}: val mAP50:95 {row['map']:.4f}")
                write_row(row)
            if end_of_run or timed_out:
                stop = timed_out
                break
            if (
                main_proc
                and args.save_every_min
                and time.time() - last_save > (args.save_every_min * 60)
            ):
                save_last(epoch, batch_in_epoch)
                last_save = time.time()
        epoch_done = batch_in_epoch >= iters_per_epoch or iteration >= total_iters
        row = new_row(epoch, running / max(count, 1))
        last_epoch = stop or epoch == epochs - 1 or iteration >= total_iters
        if main_proc and val_ds is not None and ((epoch + 1) % args.eval_every == 0 or last_epoch):
            validate_keep_best(row, epoch)
            tqdm.write(
                f"epoch {epoch + 1}: loss {row['loss']:.4f} val mAP50:95 {row['map']:.4f} "
                f"mAP50 {row['map50']:.4f}"
            )
        if main_proc:
            save_last(epoch, None if epoch_done else batch_in_epoch)
            last_save = time.time()
            write_row(row)
        if stop:
            break
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


def _state(
    model: RTDETR,
    ema: ModelEMA,
    opt: torch.optim.Optimizer,
    epoch: int,
    it: int,
    best: float,
    args: argparse.Namespace,
) -> Dict[str, Any]:
    return {
        "model": model.state_dict(),
        "ema": ema.module.state_dict(),
        "ema_updates": ema.updates,
        "optimizer": opt.state_dict(),
        "epoch": epoch,
        "iteration": it,
        "best_map": best,
        "config": config_dict(model),
        "args": {
            **{k: v for k, v in vars(args).items() if k != "run"},
            "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
        },
        "rng": torch.get_rng_state(),
        "np_rng": np.random.get_state(),
        "py_rng": random.getstate(),
    }


def cli(argv: Optional[List[str]] = None) -> int:
    """``python -m edge_perception.detection.train`` (also what torchrun launches)."""
    parser = argparse.ArgumentParser(
        prog="det-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    register(parser)
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(cli())
