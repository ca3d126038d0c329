"""Train the video instance segmentation model in stages (``python -m edge_perception.vis.train``).

Stages (``--stage``), each its own run folder, chained with ``--init`` (weights only)::

    # 1. image masks: every frame a keyframe; detector warm-started from a det-train checkpoint
    python -m edge_perception.vis.train --stage image --data data/trk --out runs/vis_image \\
        --det-checkpoint models/checkpoints/det_long_last.pt --iters 6000
    # 2. flow: only the flow net and the warping fuse learn (EPE to the data set's flow +
    #    feature matching of warped / fused maps against the full path on the same frame)
    python -m edge_perception.vis.train --stage flow --data data/trk --out runs/vis_flow \\
        --init runs/vis_image/last.pt --iters 3000
    # 3. video: joint fine-tune; key path on the clip's first frame, non-key path on the others,
    #    detection + mask losses on both, contrastive embedding loss on track ids, flow losses
    python -m edge_perception.vis.train --stage video --data data/trk --out runs/vis_video \\
        --init runs/vis_flow/last.pt --frames 3 --iters 6000
    # (optional) masks: the protonet and the per-query heads alone, on a clip's key and non-key
    #    outputs; with --mask-margin the mask loss covers the ground-truth box grown by that
    #    fraction per side (tried with 0.25 and dropped: bench/results/vis_mask_margin.md)
    python -m edge_perception.vis.train --stage masks --data data/trk --out runs/vis_masks \\
        --init runs/vis_video/last.pt --frames 5 --max-gap 1 --mask-margin 0.25
    # (optional) embed: the embedding head alone (everything else frozen, in eval mode), the
    #    contrastive loss on the key path's and the non-key path's matched queries of a clip
    python -m edge_perception.vis.train --stage embed --data data/trk --out runs/vis_embed \\
        --init runs/vis_video/last.pt --frames 5 --max-gap 2

AdamW, warm-up + flat + cosine schedule and EMA from the detector's trainer; gradient clipping;
seeded. ``last.pt`` (model, EMA, optimizer, iteration, RNG states, configs) is written every
``--save-every-min`` minutes and at the end; ``--resume`` continues from it (the clip order of an
epoch is a function of (seed, epoch), the clip's gaps and augmentations of (seed, epoch, index)).
``metrics.csv`` and ``curves.png`` (loss terms, validation mask AP) grow as it goes.
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
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from edge_perception.detection.model import model_from_checkpoint
from edge_perception.detection.train import ModelEMA, lr_factor, param_groups, seed_everything
from edge_perception.vis.criterion import VISCriterion, embedding_loss, flow_losses
from edge_perception.vis.data import ClipDataset, collate_clips, frames_as_images
from edge_perception.vis.model import (
    VISModel,
    build_vis,
    vis_config_dict,
    vis_from_checkpoint,
    vis_from_config,
)

STAGES = ("image", "flow", "video", "masks", "embed")
CSV_FIELDS = ["iteration", "lr", "loss", "loss_det", "loss_mask", "loss_embed", "loss_flow"]
CSV_FIELDS += ["loss_feat", "mask_ap", "mask_ap50", "box_ap", "seconds"]


def _tg(targets: List[Dict[str, Any]]) -> List[Dict[str, Tensor]]:
    keys = ("labels", "boxes", "ignore_boxes", "masks", "track_ids")
    return [{k: t[k] for k in keys if k in t} for t in targets]


def _sum(losses: Dict[str, Tensor], part: Dict[str, float], name: str) -> Tensor:
    total = sum(losses.values())
    part[name] = part.get(name, 0.0) + float(total.detach())
    return total


def flow_stage_modules(model: VISModel) -> List[nn.Module]:
    """What the flow stage trains: the flow net, the fuse's own layers and the propagator."""
    mods: List[nn.Module] = [model.flow_net, model.fuse.lateral, model.fuse.block]
    if model.propagator is not None:
        mods.append(model.propagator)
    return mods


def stage_modules(model: VISModel, stage: str) -> Optional[List[nn.Module]]:
    """The modules a stage trains (None: all): the flow stage :func:`flow_stage_modules`, the
    masks stage the protonet and the per-query heads, the embed stage the embedding head."""
    if stage == "flow":
        return flow_stage_modules(model)
    if stage == "masks":
        return [model.protonet, model.query_heads]
    if stage == "embed":
        return [model.query_heads.embed]
    return None


def set_trainable(model: VISModel, stage: str) -> None:
    """Flow / masks / embed stage: only :func:`stage_modules` learn (BN of the rest frozen)."""
    mods = stage_modules(model, stage)
    for p in model.parameters():
        p.requires_grad_(mods is None)
    for mod in mods or []:
        for p in mod.parameters():
            p.requires_grad_(True)


def train_mode(model: VISModel, stage: str) -> None:
    mods = stage_modules(model, stage)
    model.train(mods is None)
    for mod in mods or []:
        mod.train()


def deployed_outputs(model: VISModel, images: Tensor) -> Iterator[Dict[str, Any]]:
    """A clip [B, T, 3, H, W] as deployed: the key path on its first frame, the non-key path
    against that keyframe on the others (the masks / embed stages; the frozen parts run in eval
    mode there)."""
    out = model.forward_key(images[:, 0])
    key = model.key_state(out)
    yield out
    for t in range(1, int(images.shape[1])):
        yield model.forward_nonkey(images[:, t], key)


def stage_loss(
    model: VISModel, criterion: VISCriterion, batch: Dict[str, Any], stage: str, args: Any
) -> Dict[str, Any]:
    """Loss of one clip batch for ``stage``; returns ``{"loss": Tensor, "parts": {...}}``."""
    parts: Dict[str, float] = {}
    if stage == "image":
        images, targets = frames_as_images(batch)
        tg = _tg(targets)
        out = model.forward_key(images, tg)
        losses = criterion(out, tg)
        det = {k: v for k, v in losses.items() if "mask" not in k and "dice" not in k}
        _sum(det, parts, "loss_det")
        _sum({k: v for k, v in losses.items() if k not in det}, parts, "loss_mask")
        return {"loss": sum(losses.values()), "parts": parts}
    images = batch["images"]
    t_frames = images.shape[1]
    tgs = [_tg(t) for t in batch["targets"]]
    if stage == "masks":
        # only the mask terms of the loss train the mask heads
        total = images.new_zeros(())
        for t, out in enumerate(deployed_outputs(model, images)):
            losses = criterion(out, tgs[t])
            masks = {k: v for k, v in losses.items() if "mask" in k or "dice" in k}
            total = total + _sum(masks, parts, "loss_mask")
        return {"loss": total, "parts": parts}
    if stage == "embed":
        # the contrastive loss on the matched queries trains the embedding head
        outs = list(deployed_outputs(model, images))
        indices = [criterion.match(out, tgs[t]) for t, out in enumerate(outs)]
        embeds = [out["pred_embeds"] for out in outs]
        emb = embedding_loss(embeds, indices, tgs, args.tau) * args.weight_embed
        return {"loss": _sum({"e": emb}, parts, "loss_embed"), "parts": parts}
    if stage == "flow":
        with torch.no_grad():
            key = model.key_state(model.forward_key(images[:, 0]))
        total = images.new_zeros(())
        for t in range(1, t_frames):
            with torch.no_grad():
                full = model.key_features(images[:, t])
            nk = model.nonkey_features(images[:, t], key)
            fl = flow_losses(nk, full, batch["flows"][:, t - 1], batch["flow_valid"][:, t - 1])
            fl["loss_flow"] = fl["loss_flow"] * args.weight_flow
            fl["loss_feat"] = fl["loss_feat"] * args.weight_feat
            for k, v in fl.items():
                parts[k] = parts.get(k, 0.0) + float(v.detach())
            total = total + sum(fl.values())
            if model.propagator is not None:
                # the propagator learns from the start, on the flow it gets (detection + masks)
                hw = (int(images.shape[3]), int(images.shape[4]))
                out = model.add_heads(model.propagate(nk, key, hw), nk)
                total = total + _sum(criterion(out, tgs[t]), parts, "loss_det")
        return {"loss": total, "parts": parts}
    # video: joint fine-tune
    out0 = model.forward_key(images[:, 0], tgs[0])
    losses = criterion(out0, tgs[0])
    total = _sum(losses, parts, "loss_det")
    embeds, indices = [out0["pred_embeds"]], [out0["indices"]]
    key = model.key_state(out0)
    for t in range(1, t_frames):
        out = model.forward_nonkey(images[:, t], key, tgs[t])
        total = total + _sum(criterion(out, tgs[t]), parts, "loss_det")
        embeds.append(out["pred_embeds"])
        indices.append(out["indices"])
        if args.weight_distill > 0:
            dl = distill_loss(model, images[:, t], out) * args.weight_distill
            total = total + _sum({"d": dl}, parts, "loss_feat")
        if args.weight_flow > 0:
            fl = flow_losses(
                out["features"], None, batch["flows"][:, t - 1], batch["flow_valid"][:, t - 1]
            )
            total = total + _sum({"f": fl["loss_flow"] * args.weight_flow}, parts, "loss_flow")
    emb = embedding_loss(embeds, indices, tgs, args.tau) * args.weight_embed
    total = total + _sum({"e": emb}, parts, "loss_embed")
    return {"loss": total, "parts": parts}


def distill_loss(model: VISModel, image: Tensor, out: Dict[str, Any]) -> Tensor:
    """Self-distillation of a non-key output ``out`` on ``image`` towards the key path on the
    same frame (run without gradients: the teacher is the model itself, detached): MSE of the
    warped / fused maps ``p3``, ``p4``, ``p5`` and of the prototypes. The prototypes' MSE targets
    the stride-8 fuse's share of the non-key path's mask loss (bench/results/vis_nonkey_probe.md:
    prototypes from the key path's own ``p3`` recover most of it)."""
    with torch.no_grad():
        full = model.key_features(image)
        protos = model.protonet(full["p3"], full["s2"])
    feats = out["features"]
    loss = sum(F.mse_loss(feats[k], full[k]) for k in ("p3", "p4", "p5"))
    return loss + F.mse_loss(out["protos"], protos)


def plot_curves(csv_path: str, png_path: str) -> None:
    """Loss terms and validation AP against iteration from ``metrics.csv``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for axis, keys in ((ax[0], CSV_FIELDS[2:8]), (ax[1], ("mask_ap", "mask_ap50", "box_ap"))):
        for key in keys:
            pts = [
                (float(r["iteration"]), float(r[key]))
                for r in rows
                if r.get(key) not in ("", None, "nan")
            ]
            if pts:
                axis.plot(*zip(*pts), marker=".", label=key)
        if axis.lines:
            axis.legend(fontsize=7)
    ax[0].set(xlabel="iteration", ylabel="loss", title="training loss")
    ax[1].set(xlabel="iteration", ylabel="AP (val, image mode)", title="validation")
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)


def _save(path: str, state: Dict[str, Any]) -> None:
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def register(p: argparse.ArgumentParser) -> None:
    """Arguments of the VIS trainer."""
    p.add_argument("--stage", choices=STAGES, required=True)
    p.add_argument("--data", required=True, help="carla_bridge data set root")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--variant", default="small", help="tiny | small")
    p.add_argument("--det-checkpoint", default=None, help="det-train checkpoint (warm start)")
    p.add_argument("--init", default=None, help="vis checkpoint whose weights start this stage")
    p.add_argument("--input-size", type=int, nargs=2, default=[288, 480], metavar=("H", "W"))
    p.add_argument("--frames", type=int, default=2, help="frames per clip (flow / video)")
    p.add_argument("--max-gap", type=int, default=2)
    p.add_argument("--iters", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup-iters", type=int, default=100)
    p.add_argument("--flat-frac", type=float, default=0.5)
    p.add_argument("--clip-grad", type=float, default=0.1)
    p.add_argument("--ema-decay", type=float, default=0.9995)
    p.add_argument("--weight-flow", type=float, default=1.0)
    p.add_argument("--weight-feat", type=float, default=1.0)
    p.add_argument("--weight-embed", type=float, default=1.0)
    p.add_argument(
        "--weight-distill",
        type=float,
        default=0.0,
        help="video stage: weight of the non-key maps' and prototypes' MSE to the key path run on"
        " the same frame (distill_loss; logged as loss_feat); 0 = off",
    )
    p.add_argument("--tau", type=float, default=0.1)
    p.add_argument(
        "--mask-margin",
        type=float,
        default=None,
        help="the mask loss's region: the ground-truth box grown by this fraction of its size "
        "per side (0: the box itself, YOLACT's crop); kept in the model's config, so later "
        "stages and vis-export follow it (default: the --init model's, 0 for a new one)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--max-clips", type=int, default=None)
    p.add_argument("--max-val-images", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=500, help="iterations between validations")
    p.add_argument("--log-every", type=int, default=50, help="iterations per CSV row")
    p.add_argument("--save-every-min", type=float, default=10.0)
    p.add_argument("--stop-after-iters", type=int, default=None, help="stop (and save) early")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument(
        "--nonkey-propagate",
        choices=("auto", "on", "off"),
        default="auto",
        help="non-key decoder from the keyframe's queries (auto: the variant's / --init's choice;"
        " on: add it to an --init model without one)",
    )
    p.add_argument(
        "--flow-corr-radius",
        type=int,
        default=None,
        help="the flow net's local cost volume radius in stride-16 cells (default: the variant's"
        " / --init's; N > 0 adds it, zero-initialised, to an --init model without one)",
    )


def build_model(args: Any) -> Tuple[VISModel, Optional[str]]:
    """Fresh model of ``--variant``, detector from ``--det-checkpoint``, or ``--init`` weights;
    with the ``stage`` that wrote the ``--init`` checkpoint (None without one)."""
    torch.manual_seed(args.seed)
    prop = getattr(args, "nonkey_propagate", "auto")
    corr = getattr(args, "flow_corr_radius", None)
    if corr is not None and corr < 0:
        raise SystemExit(f"--flow-corr-radius must be >= 0, got {corr}")
    if args.init:
        ckpt = torch.load(args.init, map_location="cpu", weights_only=False)
        stage = ckpt.get("stage")
        if prop == "auto" and corr is None:
            return vis_from_checkpoint(ckpt), stage
        cfg = copy.deepcopy(ckpt["vis_config"])
        if prop != "auto":
            cfg["vis"]["nonkey_propagate"] = prop == "on"
        if corr is not None:
            cfg["vis"]["flow_corr_radius"] = int(corr)
        model = vis_from_config(cfg)
        weights = ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"]
        missing, unexpected = model.load_state_dict(weights, strict=False)
        # parts the options add or remove: the propagator, the cost volume's projection
        added = ("propagator.", "flow_net.corr_proj.")
        bad = [k for k in missing + unexpected if not k.startswith(added)]
        if bad:
            raise SystemExit(f"{args.init}: weights do not fit the model: {bad[:5]}")
        if any(k.startswith("propagator.") for k in missing) and model.propagator is not None:
            model.propagator.init_from(model.det.decoder)
        return model, stage
    det = None
    if args.det_checkpoint:
        ckpt = torch.load(args.det_checkpoint, map_location="cpu", weights_only=False)
        det = model_from_checkpoint(ckpt)
    overrides: Dict[str, Any] = {} if prop == "auto" else {"nonkey_propagate": prop == "on"}
    if corr is not None:
        overrides["flow_corr_radius"] = int(corr)
    return build_vis(args.variant, det=det, **overrides), None


def main(args: argparse.Namespace) -> int:
    """Run one stage (see the module docstring); returns the exit status."""
    torch.set_num_threads(max(1, args.threads))
    seed_everything(args.seed)
    os.makedirs(args.out, exist_ok=True)
    size = (int(args.input_size[0]), int(args.input_size[1]))
    model, init_stage = build_model(args)
    if args.stage == "flow" and model.propagator is not None and not args.resume:
        if init_stage in (None, "image"):
            # the key path was trained since the propagator was copied from its last layer; a
            # flow / video checkpoint's propagator was trained itself and is kept
            model.propagator.init_from(model.det.decoder)
    if args.mask_margin is not None:
        model.cfg.mask_margin = float(args.mask_margin)
    set_trainable(model, args.stage)
    ema = ModelEMA(model, args.ema_decay)
    criterion = VISCriterion(model.num_classes, mask_margin=model.cfg.mask_margin)
    opt = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr)
    frames = 1 if args.stage == "image" else max(2, args.frames)
    ds = ClipDataset(
        args.data,
        "train",
        size,
        frames=frames,
        max_gap=args.max_gap,
        augment=True,
        with_flow=frames > 1,
        max_clips=args.max_clips,
        seed=args.seed,
    )
    if len(ds) == 0:
        raise SystemExit(f"{args.data}: no training clips")
    it, epoch, best = 0, 0, -1.0
    last_path = os.path.join(args.out, "last.pt")
    if args.resume:
        ckpt = torch.load(last_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        ema.module.load_state_dict(ckpt["ema"])
        ema.updates = ckpt["ema_updates"]
        opt.load_state_dict(ckpt["optimizer"])
        it, epoch, best = ckpt["iteration"], ckpt["epoch"], ckpt["best"]
        torch.set_rng_state(ckpt["rng"])
        np.random.set_state(ckpt["np_rng"])
        random.setstate(ckpt["py_rng"])
    csv_path = os.path.join(args.out, "metrics.csv")
    if not args.resume or not os.path.isfile(csv_path):
        with open(csv_path, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow(CSV_FIELDS)
        with open(os.path.join(args.out, "args.json"), "w", encoding="utf-8") as f:
            json.dump({**vars(args), "run": None, "command": " ".join(sys.argv)}, f, indent=2)

    def state() -> Dict[str, Any]:
        return {
            "model": model.state_dict(),
            "ema": ema.module.state_dict(),
            "ema_updates": ema.updates,
            "optimizer": opt.state_dict(),
            "iteration": it,
            "epoch": epoch,
            "best": best,
            "stage": args.stage,
            "vis_config": vis_config_dict(model),
            "args": {k: v for k, v in vars(args).items() if k != "run"},
            "rng": torch.get_rng_state(),
            "np_rng": np.random.get_state(),
            "py_rng": random.getstate(),
        }

    t0 = last_save = time.time()
    first = it
    acc: Dict[str, float] = {}
    n_acc = 0
    done = False
    while not done and it < args.iters:
        ds.set_epoch(epoch)
        g = torch.Generator().manual_seed(args.seed * 100003 + epoch)
        order = torch.randperm(len(ds), generator=g).tolist()
        skip = (it * args.batch_size) % len(ds) if args.resume and it == first else 0
        loader = DataLoader(
            [order[i] for i in range(skip, len(order))],
            args.batch_size,
            collate_fn=lambda idx: collate_clips([ds[i] for i in idx]),
            num_workers=args.workers,
        )
        for batch in loader:
            for grp in opt.param_groups:
                grp["lr"] = args.lr * lr_factor(
                    it, args.iters, args.warmup_iters, 0.05, 0.0, args.flat_frac
                )
            train_mode(model, args.stage)
            res = stage_loss(model, criterion, batch, args.stage, args)
            loss = res["loss"]
            if not math.isfinite(float(loss.detach())):
                raise SystemExit(f"loss is {float(loss)} at iteration {it}: {res['parts']}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if args.clip_grad > 0:
                nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.requires_grad], args.clip_grad
                )
            opt.step()
            ema.update(model)
            it += 1
            acc["loss"] = acc.get("loss", 0.0) + float(loss.detach())
            for k, v in res["parts"].items():
                acc[k] = acc.get(k, 0.0) + v
            n_acc += 1
            end = it >= args.iters or (
                args.stop_after_iters and it - first >= args.stop_after_iters
            )
            if it % args.log_every == 0 or end:
                row: Dict[str, Any] = {k: "" for k in CSV_FIELDS}
                row.update({k: v / n_acc for k, v in acc.items()})
                row.update(
                    iteration=it, lr=opt.param_groups[0]["lr"], seconds=round(time.time() - t0, 1)
                )
                if args.max_val_images and (it % args.eval_every == 0 or end):
                    from edge_perception.vis.evaluate import evaluate_image_mode

                    m = evaluate_image_mode(ema.module, args.data, size, args.max_val_images)
                    row.update(mask_ap=m["mask_ap"], mask_ap50=m["mask_ap50"], box_ap=m["box_ap"])
                    if m["mask_ap"] > best:
                        best = m["mask_ap"]
                        _save(os.path.join(args.out, "best.pt"), state())
                with open(csv_path, "a", newline="", encoding="utf-8") as f:
                    csv.DictWriter(f, CSV_FIELDS).writerow(row)
                plot_curves(csv_path, os.path.join(args.out, "curves.png"))
                acc, n_acc = {}, 0
            if end:
                done = True
                break
            if time.time() - last_save > args.save_every_min * 60:
                _save(last_path, state())
                last_save = time.time()
        else:
            epoch += 1
    _save(last_path, state())
    return 0


def cli(argv: Optional[List[str]] = None) -> int:
    """``python -m edge_perception.vis.train``."""
    parser = argparse.ArgumentParser(
        prog="vis-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    register(parser)
    args = parser.parse_args(argv)
    return main(args)


if __name__ == "__main__":
    sys.exit(cli())
