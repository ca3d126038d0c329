"""det_small vs YOLOX-nano at equal iterations of the same long-run schedule (issue 11).

    python bench/det_vs_dense_long.py [--det out/det_long/metrics.csv] \\
        [--yolox out/yolox_long/metrics.csv] [--out bench/results/det_vs_dense_long.md]

Both runs (``scripts/det_long_run.sh``, ``scripts/yolox_long_run.sh``) use the same data, batch 8,
2 threads, planned 30k-iteration flat-cosine schedule, warm-up, EMA and mosaic, and validate every
1000 iterations on ``data/det_train27k``'s val split (the 2 fps rendering of the val seeds; see
bench/det_heldout.md). This table puts their rows side by side where both have one, and copies the
YOLOX metrics next to it so it can be re-made from the repository.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
from typing import Dict, List

CLASSES = ["car", "truck", "bus", "motorcycle", "bicycle", "pedestrian", "traffic_sign"]


def rows_by_iteration(path: str) -> Dict[int, Dict[str, str]]:
    """Validated rows of a det-train metrics.csv, keyed by iteration."""
    with open(path, encoding="utf-8") as f:
        return {int(r["iteration"]): r for r in csv.DictReader(f) if r.get("map")}


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--det", default="models/checkpoints/det_long_metrics.csv")
    p.add_argument("--yolox", default="out/yolox_long/metrics.csv")
    p.add_argument("--out", default="bench/results/det_vs_dense_long.md")
    args = p.parse_args(argv)
    for path in (args.det, args.yolox):
        if not os.path.isfile(path):
            raise SystemExit(f"no such metrics file: {path}")
    det, yolox = rows_by_iteration(args.det), rows_by_iteration(args.yolox)
    common = sorted(set(det) & set(yolox))
    if not common:
        raise SystemExit("the two runs have no validated iteration in common yet")
    head = "| iteration | model | mAP50:95 | mAP50 | " + " | ".join(CLASSES) + " |"
    lines = [
        "# det_small vs YOLOX-nano at equal iterations of the long-run schedule",
        "",
        "Command: `python bench/det_vs_dense_long.py " + " ".join(sys.argv[1:]) + "`  ",
        f"Runs: `{args.det}` (scripts/det_long_run.sh), `{args.yolox}` "
        "(scripts/yolox_long_run.sh); same data, batch, threads, schedule; val = "
        "data/det_train27k's val split (2 fps rendering of the val seeds), EMA weights, "
        "per-class AP50:95.",
        "",
        head,
        "|" + "---|" * (4 + len(CLASSES)),
    ]
    for it in common:
        for name, r in (("det_small", det[it]), ("YOLOX-nano", yolox[it])):
            cells = [f"{float(r['map']):.3f}", f"{float(r['map50']):.3f}"]
            cells += [f"{float(r['ap_' + c]):.3f}" for c in CLASSES]
            lines.append(f"| {it} | {name} | " + " | ".join(cells) + " |")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    shutil.copyfile(args.yolox, os.path.splitext(args.out)[0] + "_yolox_metrics.csv")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
