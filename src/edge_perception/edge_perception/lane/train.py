"""``edge-perception lane-train`` (or ``python -m edge_perception.lane.train``): train a U-Net.

Seeded (Python, NumPy, torch, data order, augmentation), AdamW + per-step cosine learning rate
with a short linear warm-up, loss chosen by ``--loss`` (+ ``--class-balanced`` effective-number
weights), validation mIoU / line F1 after every epoch. The output folder holds:

- ``last.pt`` (every epoch; ``--resume`` continues from it with optimizer, scheduler and RNG state)
  and ``best.pt`` (best validation mIoU), both written atomically;
- ``log.csv`` (one row per epoch) and ``curves.png`` (loss and mIoU curves);
- ``config.json`` (the arguments and the data set's version).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import random
import sys
import time
from dataclasses import asdict
from typing import Dict, List, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from edge_perception.export import atomic_write_bytes, write_json
from edge_perception.lane import LANE_CLASSES
from edge_perception.lane.data import LaneDataset
from edge_perception.lane.evaluate import evaluate, torch_predictor
from edge_perception.lane.losses import LOSSES, SegLoss, class_balanced_weights
from edge_perception.lane.model import VARIANTS, build_model

LOG_FIELDS = ["epoch", "step", "lr", "train_loss", "val_miou", "val_line_f1", "seconds"] + [
    f"iou_{c}" for c in LANE_CLASSES
]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def save_checkpoint(path: str, state: Dict[str, object]) -> None:
    """``torch.save`` through a temporary file + ``os.replace`` (no half-written checkpoints)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def cosine_lambda(total_steps: int, warmup: int, floor: float = 0.01):
    """LR multiplier: linear warm-up for ``warmup`` steps, then cosine from 1 to ``floor``."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return f


def plot_curves(rows: List[Dict[str, object]], path: str) -> None:
    """Loss and validation mIoU / line F1 per epoch into a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [int(r["epoch"]) for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(ep, [float(r["train_loss"]) for r in rows], marker="o")
    a.set_xlabel("epoch")
    a.set_ylabel("train loss")
    a.grid(alpha=0.3)
    b.plot(ep, [float(r["val_miou"]) for r in rows], marker="o", label="val mIoU")
    b.plot(ep, [float(r["val_line_f1"]) for r in rows], marker="s", label="val line F1")
    b.set_xlabel("epoch")
    b.set_ylim(0, 1)
    b.legend()
    b.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _write_log(rows: List[Dict[str, object]], path: str) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOG_FIELDS)
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def train(args: argparse.Namespace) -> Dict[str, object]:
    """Run the training described by ``args`` (see :func:`register`); returns the best metrics."""
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    os.makedirs(args.out, exist_ok=True)
    size = tuple(args.size)
    train_ds = LaneDataset(
        args.data, "train", size, augment=True, limit=args.limit_train, seed=args.seed
    )
    val_ds = LaneDataset(args.data, "val", size, limit=args.limit_val)
    overrides = {k: v for k, v in (("width", args.width), ("depth", args.depth)) if v is not None}
    model = build_model(args.variant, **overrides)
    if args.init:
        from edge_perception.lane.model import load_checkpoint

        init_model, _ = load_checkpoint(args.init)
        if init_model.config != model.config:
            raise ValueError(
                f"--init {args.init} holds a {init_model.config} model, not {model.config};"
                " pass the same --variant/--width/--depth"
            )
        model.load_state_dict(init_model.state_dict())
    weights = None
    if args.class_balanced:
        weights = class_balanced_weights(train_ds.class_pixel_means(), args.cb_beta).tolist()
    criterion = SegLoss(args.loss, weights)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(train_ds) / args.batch_size)
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, cosine_lambda(total, min(args.warmup, total // 4 + 1))
    )
    rows: List[Dict[str, object]] = []
    start_epoch, best, step = 0, -1.0, 0
    last_path = os.path.join(args.out, "last.pt")
    if args.resume:
        if not os.path.isfile(last_path):
            raise FileNotFoundError(f"--resume: {last_path} not found; train without --resume")
        ck = torch.load(last_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start_epoch, best, step, rows = ck["epoch"] + 1, ck["best_miou"], ck["step"], ck["log"]
        torch.set_rng_state(ck["torch_rng"])
    data_version = train_ds.manifest.get("data_version", "unknown")
    config = {k: v for k, v in vars(args).items() if k not in ("run", "argv")}
    argv = getattr(args, "argv", None)
    if argv is None:
        argv = sys.argv[1:]
        if argv[:1] == ["lane-train"]:
            argv = argv[1:]
    command = " ".join(["edge-perception lane-train", *argv])
    config.update(data_version=data_version, class_weights=weights, command=command)
    write_json(os.path.join(args.out, "config.json"), config)
    gen = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(
        train_ds,
        batch_size=args.batch_size,
        shuffle=True,
        generator=gen,
        num_workers=0,
        drop_last=False,
    )
    for epoch in range(start_epoch, args.epochs):
        gen.manual_seed(args.seed * 1000 + epoch)  # data order depends only on (seed, epoch)
        train_ds.set_epoch(epoch)
        model.train()
        t0, losses = time.perf_counter(), []
        bar = tqdm(
            loader, desc=f"epoch {epoch + 1}/{args.epochs}", leave=False, disable=args.quiet
        )
        for x, y in bar:
            loss = criterion(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if args.max_steps and step >= args.max_steps:
                break
        metrics = evaluate(torch_predictor(model), val_ds, args.batch_size, progress=False)
        row: Dict[str, object] = {
            "epoch": epoch + 1,
            "step": step,
            "lr": opt.param_groups[0]["lr"],
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "val_miou": metrics["miou"],
            "val_line_f1": metrics["line_f1"],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        for c in LANE_CLASSES:
            row[f"iou_{c}"] = metrics["iou"][c]  # type: ignore[index]
        rows.append(row)
        if not args.quiet:
            print(
                f"epoch {epoch + 1}: loss {row['train_loss']:.4f} mIoU {metrics['miou']:.4f}"
                f" line F1 {metrics['line_f1']:.4f} ({row['seconds']} s)",
                flush=True,
            )
        state = {
            "model": model.state_dict(),
            "config": asdict(model.config),
            "variant": args.variant,
            "input_size": list(size),
            "classes": list(LANE_CLASSES),
            "epoch": epoch,
            "step": step,
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "best_miou": max(best, float(metrics["miou"])),
            "log": rows,
            "metrics": metrics,
            "torch_rng": torch.get_rng_state(),
            "seed": args.seed,
            "data_version": data_version,
            "loss": args.loss,
            "class_balanced": args.class_balanced,
        }
        if float(metrics["miou"]) > best:
            best = float(metrics["miou"])
            save_checkpoint(os.path.join(args.out, "best.pt"), state)
        save_checkpoint(last_path, state)
        _write_log(rows, os.path.join(args.out, "log.csv"))
        plot_curves(rows, os.path.join(args.out, "curves.png"))
        if args.max_steps and step >= args.max_steps:
            break
    return {"best_miou": best, "epochs": len(rows), "steps": step, "out": args.out}


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edge-perception lane-train``."""
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--data", required=True, help="carla_bridge data set root")
    parser.add_argument("--out", required=True, help="output folder (checkpoints, log, curves)")
    parser.add_argument("--variant", default="small", choices=sorted(VARIANTS))
    parser.add_argument("--width", type=float, default=None, help="override width multiplier")
    parser.add_argument("--depth", type=float, default=None, help="override depth multiplier")
    parser.add_argument("--size", type=int, nargs=2, default=[192, 320], metavar=("H", "W"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=50, help="linear warm-up steps")
    parser.add_argument("--loss", default="bce_dice", choices=LOSSES)
    parser.add_argument(
        "--class-balanced",
        action="store_true",
        help="effective-number class weights (Cui et al. 2019)",
    )
    parser.add_argument("--cb-beta", type=float, default=0.9999)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--limit-train", type=int, default=None, help="first N train frames")
    parser.add_argument("--limit-val", type=int, default=None, help="first N val frames")
    parser.add_argument("--max-steps", type=int, default=0, help="stop after N steps (0: off)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    parser.add_argument(
        "--init", default=None, help="start from this checkpoint's weights (fine-tuning stage)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar / epoch lines")
    parser.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    res = train(args)
    print(f"best val mIoU {res['best_miou']:.4f} after {res['epochs']} epochs -> {res['out']}")
    return 0


def cli(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge_perception.lane.train")
    register(p)
    args = p.parse_args(argv)
    args.argv = list(argv) if argv is not None else None
    return main(args)


if __name__ == "__main__":
    sys.exit(cli())
