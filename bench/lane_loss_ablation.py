"""Loss ablation for the lane U-Net: BCE / Dice / BCE+Dice / class-balanced BCE+Dice (+ CE).

Short, identical trainings (same seed, data subset, schedule) that differ only in the loss; the
table reports the best validation epoch of each. Run from the repository root::

    python bench/lane_loss_ablation.py --data data/lane_v1 --epochs 4 --limit-train 160 \
        --limit-val 60 --size 192 320

Writes ``bench/lane_loss_ablation.json`` and ``bench/lane_loss_ablation.md``. Short runs rank
losses by how fast they learn the thin line classes; they are not converged accuracies.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch
from edge_perception.export import atomic_write_bytes, write_json
from edge_perception.lane import LANE_CLASSES
from edge_perception.lane.train import cli as train_cli

HERE = Path(__file__).resolve().parent
CONFIGS = {
    "CE (softmax baseline)": ["--loss", "ce"],
    "BCE (one-vs-rest)": ["--loss", "bce"],
    "Dice": ["--loss", "dice"],
    "BCE + Dice": ["--loss", "bce_dice"],
    "BCE + Dice, class-balanced": ["--loss", "bce_dice", "--class-balanced"],
}


def main(argv: List[str] = None) -> int:  # type: ignore[assignment]
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", required=True)
    p.add_argument("--variant", default="small")
    p.add_argument("--size", type=int, nargs=2, default=[192, 320])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit-train", type=int, default=160)
    p.add_argument("--limit-val", type=int, default=60)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", nargs="*", default=None, help="subset of config names")
    p.add_argument("--out", default=str(HERE / "lane_loss_ablation"))
    a = p.parse_args(argv)
    common = [
        "--data",
        a.data,
        "--variant",
        a.variant,
        "--size",
        *map(str, a.size),
        "--epochs",
        str(a.epochs),
        "--batch-size",
        str(a.batch_size),
        "--limit-train",
        str(a.limit_train),
        "--limit-val",
        str(a.limit_val),
        "--threads",
        str(a.threads),
        "--seed",
        "0",
        "--quiet",
    ]
    rows: Dict[str, Dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, extra) in enumerate(CONFIGS.items()):
            if a.only and name not in a.only:
                continue
            out = os.path.join(tmp, str(k))
            t0 = time.perf_counter()
            train_cli(["--out", out, *common, *extra])
            ck = torch.load(os.path.join(out, "best.pt"), weights_only=False)
            m = ck["metrics"]
            rows[name] = {
                "args": extra,
                "best_epoch": ck["epoch"] + 1,
                "miou": m["miou"],
                "iou": m["iou"],
                "line_f1": m["line_f1"],
                "train_seconds": time.perf_counter() - t0,
            }
            print(f"{name}: mIoU {m['miou']:.4f} line F1 {m['line_f1']:.4f}", flush=True)
    cmd = "python bench/lane_loss_ablation.py " + " ".join(sys.argv[1:] if argv is None else argv)
    res = {"command": cmd, "settings": vars(a), "rows": rows}
    write_json(a.out + ".json", res)
    atomic_write_bytes(a.out + ".md", markdown(res).encode("utf-8"))
    print(markdown(res))
    return 0


def markdown(res: Dict[str, object]) -> str:
    s = res["settings"]  # type: ignore[index]
    head = ["loss", "mIoU"] + [f"IoU {c}" for c in LANE_CLASSES] + ["line F1", "best epoch"]
    lines = [
        "# Lane loss ablation (short trainings)",
        "",
        f"Command: `{res['command']}`  ",
        f"Model `{s['variant']}` at {s['size'][0]}x{s['size'][1]}, {s['epochs']} epochs on the "  # type: ignore[index]
        f"first {s['limit_train']} train frames, validation on the first {s['limit_val']} val "  # type: ignore[index]
        "frames, seed 0, AdamW + cosine; only the loss differs.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]

    def f(v: object) -> str:
        return "n/a" if v is None else f"{float(v):.4f}"  # type: ignore[arg-type]

    for name, r in res["rows"].items():  # type: ignore[union-attr]
        cells = [name, f(r["miou"])] + [f(r["iou"][c]) for c in LANE_CLASSES]
        cells += [f(r["line_f1"]), str(r["best_epoch"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
