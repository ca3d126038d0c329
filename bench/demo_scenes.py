"""Detection AP of the bundled detector on each clip (seed) of the demo's default scenario.

The closed-loop demo scores what the detection node publishes against the scenario's ground
truth. One 30-frame clip is one scene (one street, one time of day, a handful of objects), so a
one-clip score says more about that scene than about the detector. This script renders the
clips of ``config/scenarios/default.yaml`` for several seeds and scores every frame offline with
the node's own pipeline (same pre- and post-processing, score threshold, tracker off) and the
closed-loop evaluator's scoring, per clip and over all of them::

    python bench/demo_scenes.py --seeds 0-5

Writes ``bench/results/<name>.{json,md}`` (default ``demo_scenes``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import environment, markdown_table, publish_results  # noqa: E402


def _seeds(text: str) -> List[int]:
    try:
        if "-" in text:
            lo, hi = (int(v) for v in text.split("-"))
            return list(range(lo, hi + 1))
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 0-5 or 0,2,7, got {text!r}") from None


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--onnx", default="models/det_small.onnx")
    ap.add_argument("--scenario", default="config/scenarios/default.yaml")
    ap.add_argument("--seeds", type=_seeds, default=_seeds("0-5"), help="e.g. 0-5 or 0,2,7")
    ap.add_argument("--thresholds", default="0.5,0.05", help="score thresholds (node: 0.5)")
    ap.add_argument("--name", default="demo_scenes")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    args = ap.parse_args(argv)

    from carla_bridge.classes import OBJECT_CLASSES
    from carla_bridge.dataset.writer import ignore_flags
    from carla_bridge.evaluation import ClosedLoopEvaluator
    from carla_bridge.replay import load_scenario, scenario_frames
    from edge_perception.backends.factory import create_backend
    from edge_perception.runtime.detection import DetectionPipeline
    from edge_perception.runtime.results import Detections

    thresholds = [float(t) for t in args.thresholds.split(",")]
    backend = create_backend("onnxruntime", args.onnx, intra_op_threads=1)
    pipes = {t: DetectionPipeline(backend, score_threshold=t) for t in thresholds}
    overall = {t: ClosedLoopEvaluator() for t in thresholds}
    base = load_scenario(args.scenario)
    rows: List[Dict[str, Any]] = []
    for seed in args.seeds:
        per = {t: ClosedLoopEvaluator() for t in thresholds}
        meta: Dict[str, Any] = {}
        objects = 0
        for k, fr in enumerate(scenario_frames(base.replace(seed=seed))):
            meta = {"weather": fr.meta.get("weather"), "time_of_day": fr.meta.get("time_of_day")}
            h, w = fr.image.shape[:2]
            objs = fr.objects
            boxes = [[o.bbox[0], o.bbox[1], o.bbox[0] + o.bbox[2], o.bbox[1] + o.bbox[3]]
                     for o in objs]  # fmt: skip
            # score 0 = the data set's ignore flag (a crowd region), as the publisher sends it
            keep = [0.0 if ignored else 1.0 for ignored in ignore_flags(fr)]
            objects += int(sum(keep))
            gt = Detections(
                np.asarray(boxes, np.float32).reshape(-1, 4),
                np.asarray(keep, np.float32),
                np.asarray([OBJECT_CLASSES.index(o.category) for o in objs], np.int64),
            )
            stamp = seed * 1_000_000 + k
            for t in thresholds:
                pred = pipes[t].process(fr.image).result
                for ev in (per[t], overall[t]):
                    ev.add_image(stamp, h, w)
                    ev.add_ground_truth("detection", stamp, gt)
                    ev.add_prediction("detection", stamp, pred)
        row: Dict[str, Any] = {"seed": seed, **meta, "objects": objects}
        for t in thresholds:
            d = per[t].summary()["detection"] or {}
            row["frames"] = d.get("frames")
            row[f"ap50@{t:g}"], row[f"map@{t:g}"] = d.get("map50"), d.get("map")
        rows.append(row)
        print("seed %d: %s" % (seed, {k: v for k, v in row.items() if k.startswith("ap50")}),
              file=sys.stderr)  # fmt: skip
    total: Dict[str, Any] = {"seed": "all", "objects": sum(r["objects"] for r in rows)}
    for t in thresholds:
        d = overall[t].summary()["detection"] or {}
        total["frames"] = d.get("frames")
        total[f"ap50@{t:g}"], total[f"map@{t:g}"] = d.get("map50"), d.get("map")

    def num(v: Any) -> str:
        return "-" if v is None else "%.3f" % v

    header = ["seed", "weather / time", "frames", "objects"]
    for t in thresholds:
        header += [f"AP50 @{t:g}", f"mAP @{t:g}"]
    table_rows = []
    for r in rows + [total]:
        cells = [r["seed"], "%s / %s" % (r.get("weather"), r.get("time_of_day"))
                 if r["seed"] != "all" else "", r["frames"], r["objects"]]  # fmt: skip
        for t in thresholds:
            cells += [num(r[f"ap50@{t:g}"]), num(r[f"map@{t:g}"])]
        table_rows.append(cells)
    cmd = "python bench/demo_scenes.py " + " ".join(sys.argv[1:] if argv is None else argv)
    data = {"command": cmd, "onnx": args.onnx, "scenario": args.scenario, "rows": rows,
            "all": total, "environment": environment()}  # fmt: skip
    md = "\n".join([
        "# Detection AP per clip of the demo's default scenario", "",
        f"Command: `{cmd}`  ",
        f"Model `{args.onnx}`, scenario `{args.scenario}` (one clip per seed, every frame), the "
        "detection node's pipeline (tracker off) at each score threshold, scored as the "
        "closed-loop evaluator scores (ignore-flagged objects are crowd regions). The node "
        "publishes at 0.5.", "",
        markdown_table(table_rows, header), "",
    ]) + "\n"  # fmt: skip
    publish_results(args.name, data, md, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
