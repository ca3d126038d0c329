"""Choose the VIS tracker's appearance / mask-IoU weights on a tuning split (never on val).

Runs ``vis-eval`` in image mode (every frame a keyframe, so only the association changes) over a
grid of ``track_appearance_weight`` x ``track_mask_iou_weight`` at the node's other defaults, on a
split other than the standard val one, and writes the table (HOTA / IDF1 / MOTA / IDSW / video AP)
with the best row by HOTA::

    carla-bridge generate --out data/trk_tune --train-sequences 12 --seed 7
    python bench/vis_tracker_tune.py --model models/vis_small_key.onnx --data data/trk_tune \\
        --split train --out bench/results/vis_tracker_tune

Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import environment, markdown_table  # noqa: E402


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--appearance", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.6])
    p.add_argument("--mask-iou", type=float, nargs="+", default=[0.0, 0.2, 0.4])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench/results/vis_tracker_tune")
    args = p.parse_args(argv)

    from edge_perception.config import VisNodeConfig
    from edge_perception.vis.video_eval import evaluate

    manifest = os.path.join(args.data, "manifest.json")
    if os.path.isfile(manifest):
        with open(manifest, encoding="utf-8") as f:
            if json.load(f).get("standard_val") and args.split == "val":
                raise SystemExit("refusing to tune on the standard val split: use another set")
    rows: List[Dict[str, Any]] = []
    for app, miou in itertools.product(args.appearance, args.mask_iou):
        if app + miou > 1.0:
            continue
        ns = argparse.Namespace(
            model=args.model,
            data=args.data,
            split=args.split,
            modes=["image"],
            keyframe_interval=5,
            max_keyframe_age=0.0,
            score_threshold=VisNodeConfig().score_threshold,
            threads=args.threads,
            max_sequences=None,
            interpolation="area",
            set=[f"track_appearance_weight={app}", f"track_mask_iou_weight={miou}"],
        )
        m = evaluate(ns)["modes"]["image"]
        rows.append(
            {
                "appearance": app,
                "mask_iou": miou,
                "hota": m["hota"],
                "idf1": m["idf1"],
                "mota": m["mota"],
                "idsw": m["id_switches"],
                "video_ap": m["video_ap"],
            }
        )
        print(rows[-1], flush=True)
    best = max(rows, key=lambda r: (r["hota"], r["idf1"]))
    cmd = "python bench/vis_tracker_tune.py " + " ".join(sys.argv[1:] if argv is None else argv)
    res = {"command": cmd, "environment": environment(), "rows": rows, "best": best}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump(res, f, indent=2)
    table = markdown_table(
        [
            [r["appearance"], r["mask_iou"], "%.3f" % r["hota"], "%.3f" % r["idf1"],
             "%.3f" % r["mota"], r["idsw"], "%.3f" % r["video_ap"]]
            for r in rows
        ],
        ["appearance w", "mask-IoU w", "HOTA", "IDF1", "MOTA", "IDSW", "video AP"],
    )  # fmt: skip
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write(
            "# VIS tracker weights on a tuning split\n\nCommand: `%s`  \nModel: `%s`, data "
            "`%s` split `%s` (not the standard val split); image mode, the node's score "
            "threshold %.2f.\n\n%s\n\nBest by HOTA: appearance %.1f, mask IoU %.1f.\n"
            % (cmd, args.model, args.data, args.split, VisNodeConfig().score_threshold, table,
               best["appearance"], best["mask_iou"])
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
