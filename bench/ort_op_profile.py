"""Where the time goes: ONNX Runtime kernel time per operator type, for one or more models.

Used to explain INT8-vs-FP32 speed on this CPU: each model runs ``--runs`` times on one seeded
input with ORT's own profiler on; kernel times (``*_kernel_time`` events) are summed per op
type and divided by the number of runs.

    python bench/ort_op_profile.py models/lane_small.onnx models/lane_small_int8.onnx \
        [--threads 1] [--runs 40] [--name lane_op_profile]

Writes ``bench/results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from typing import Any, Dict, List

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import environment, markdown_table, publish_results  # noqa: E402


def _feed(session: Any, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    feeds = {}
    for inp in session.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
        if "float" not in inp.type:
            raise SystemExit(f"{inp.name}: only float inputs are supported, got {inp.type}")
        feeds[inp.name] = rng.random(shape, dtype=np.float32)
    return feeds


def profile_model(path: str, threads: int, runs: int) -> Dict[str, Any]:
    """Per-op-type mean kernel ms per run, and the total, for one model."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tempfile.mkdtemp(prefix="ortprof_"), "p")
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feeds = _feed(session, np.random.default_rng(0))
    for _ in range(runs):
        session.run(None, feeds)
    trace = session.end_profiling()
    with open(trace, encoding="utf-8") as f:
        events = json.load(f)
    per_op: Dict[str, float] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / 1000.0 / runs
    ordered = dict(sorted(per_op.items(), key=lambda kv: -kv[1]))
    return {
        "model": path,
        "input_shapes": {k: list(v.shape) for k, v in feeds.items()},
        "total_kernel_ms": round(sum(ordered.values()), 3),
        "per_op_ms": {k: round(v, 3) for k, v in ordered.items()},
    }


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="ONNX files")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--top", type=int, default=8, help="op types per model in the table")
    ap.add_argument("--name", default="ort_op_profile", help="result file name")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    args = ap.parse_args(argv)
    for m in args.models:
        if not os.path.isfile(m):
            raise SystemExit(f"{m}: no such model")
    results = [profile_model(m, args.threads, args.runs) for m in args.models]
    rows = []
    for r in results:
        rows.append([os.path.basename(r["model"]), "**total**", r["total_kernel_ms"]])
        for op, ms in list(r["per_op_ms"].items())[: args.top]:
            rows.append(["", op, ms])
    env = environment()
    md = "\n".join(
        [
            "# ONNX Runtime kernel time per operator type",
            "",
            f"{args.runs} runs, {args.threads} thread(s), CPUExecutionProvider; machine: "
            f"{env['cpu']} ({env['cpu_count']} cores, load {env['load_avg_1m']}), "
            f"onnxruntime {env['onnxruntime']}.",
            "",
            markdown_table(rows, ["model", "op type", "ms per run"]),
            "",
            "Command: `python bench/ort_op_profile.py " + " ".join(argv or sys.argv[1:]) + "`",
        ]
    )
    data = {"benchmark": "ort_op_profile", "runs": args.runs, "threads": args.threads}
    data.update({"models": results, "environment": env})
    publish_results(args.name, data, md, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
