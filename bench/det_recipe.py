"""A/B of the detector's training aids at equal iterations (issue 11): one arm per switch.

Every arm trains ``small`` from scratch with the same seed, data, batch, schedule and number of
iterations, then the EMA weights are evaluated on the whole standard validation split (240 frames,
the same evaluator as ``det-eval``). Arms (each adds one change to ``base``):

- ``old``: ignore-flagged tiny objects trained as positives (the pre-issue-11 data handling);
- ``base``: ignore regions honoured, varifocal loss, no dense head, no mosaic;
- ``+dense``: the training-only dense one-to-many head;
- ``+mal``: Matchability-Aware Loss instead of VFL;
- ``+mosaic``: mosaic at p = 0.5;
- ``full``: dense + MAL + mosaic (the recipe of the long run).

Resumable (an arm whose result exists is skipped; an interrupted arm resumes exactly)::

    python bench/det_recipe.py --data data/det_train --iters 400 --threads 1

Writes ``bench/det_recipe.json`` and ``bench/det_recipe.md``; runs go under ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Dict, List

from edge_perception.config import OBJECT_CLASS_NAMES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARMS: Dict[str, List[str]] = {
    "old": ["--no-ignore"],
    "base": [],
    "+dense": ["--dense-o2m"],
    "+mal": ["--cls-loss", "mal"],
    "+mosaic": ["--mosaic", "0.5", "--mosaic-stop", "1.0"],
    "full": ["--dense-o2m", "--cls-loss", "mal", "--mosaic", "0.5", "--mosaic-stop", "1.0"],
}


def run_arm(name: str, extra: List[str], args: argparse.Namespace) -> Dict[str, object]:
    out = os.path.join(args.work, name.replace("+", "plus_"))
    cmd = [
        sys.executable,
        "-m",
        "edge_perception.detection.train",
        "--data",
        args.data,
        "--out",
        out,
        "--variant",
        "small",
        "--input-size",
        "288",
        "480",
        "--batch-size",
        str(args.batch_size),
        "--iters",
        str(args.iters),
        "--schedule",
        "flatcos",
        "--warmup-iters",
        str(max(1, args.iters // 5)),
        "--lr",
        "1e-3",
        "--ema-decay",
        "0.998",
        "--max-val-images",
        "240",
        "--threads",
        str(args.threads),
        "--seed",
        "0",
        "--no-progress",
        *extra,
    ]
    if os.path.isfile(os.path.join(out, "last.pt")):
        cmd.append("--resume")
    t0 = time.time()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    ck = os.path.join(out, "best.pt")
    import torch

    state = torch.load(ck, map_location="cpu", weights_only=False)
    m = state["val_metrics"]
    return {
        "arm": name,
        "switches": extra,
        "iterations": state["iteration"],
        "wall_s": round(time.time() - t0, 1),
        "cpu_s": round(cpu_s, 1),  # this invocation only (a resumed arm counts its last part)
        "map": m["map"],
        "map50": m["map50"],
        "map_small": m.get("map_small"),
        "per_class": m.get("per_class", {}),
        "command": " ".join(cmd[1:]),
    }


def write_tables(results: List[Dict[str, object]], args: argparse.Namespace) -> None:
    meta = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "command": "python bench/det_recipe.py " + " ".join(sys.argv[1:]),
        "iters": args.iters,
        "batch_size": args.batch_size,
        "note": "arms ran beside other work at low priority: wall_s is not a speed figure; "
        "cpu_s = user + system seconds of the training process, validation included",
    }
    with open(os.path.join(ROOT, "bench", "det_recipe.json"), "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    lines = [
        "# Detector training aids, A/B at equal iterations",
        "",
        f"`{meta['command']}` -- `small` at 288x480 from scratch, batch {args.batch_size}, "
        f"{args.iters} iterations each (flat-cosine, seed 0), EMA weights on the standard "
        "240-frame val split. Machine: " + meta["machine"] + ".",
        "",
        "| arm | mAP50:95 | mAP50 | mAP small | " + " | ".join(OBJECT_CLASS_NAMES) + " |",
        "|---|---|---|---|" + "---|" * len(OBJECT_CLASS_NAMES),
    ]
    for r in results:
        pc = r["per_class"]
        lines.append(
            f"| {r['arm']} | {r['map']:.4f} | {r['map50']:.4f} | "
            f"{(r['map_small'] or 0):.4f} | "
            + " | ".join(f"{pc.get(c, float('nan')):.3f}" for c in OBJECT_CLASS_NAMES)
            + " |"
        )
    with open(os.path.join(ROOT, "bench", "det_recipe.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--work", default=os.path.join(ROOT, "out", "det_recipe"))
    p.add_argument("--iters", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--arms", nargs="*", default=list(ARMS), choices=list(ARMS))
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    cache = os.path.join(args.work, "results.json")
    done: Dict[str, Dict[str, object]] = {}
    if os.path.isfile(cache):
        with open(cache, encoding="utf-8") as f:
            done = {r["arm"]: r for r in json.load(f)}
    for name in args.arms:
        if name not in done or done[name].get("iterations") != args.iters:
            done[name] = run_arm(name, ARMS[name], args)
            with open(cache, "w", encoding="utf-8") as f:
                json.dump(list(done.values()), f, indent=2)
        print(f"{name}: mAP50:95 {done[name]['map']:.4f} mAP50 {done[name]['map50']:.4f}")
    write_tables([done[n] for n in args.arms if n in done], args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
