"""Latency of ONNX models side by side, interleaved so that machine drift hits them alike.

    python bench/onnx_latency_ab.py OLD.onnx NEW.onnx [--names old new] [--rounds 5] \\
        [--runs 30] [--threads 1] [--name det_latency_ab]

Each round times every model once in a fresh process (:func:`edge_perception.quant.measure.
measure_in_subprocess`, ``--runs`` calls after warm-up, at the model's own static input shape);
the table reports the median over rounds of each round's median, and each model's ratio to the
first. Writes ``bench/results/<name>.json`` and ``.md``. Used for the detector's "stays within
1.1x of the latency it had when the issue was filed" check (issue 11).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import environment, markdown_table, write_results  # noqa: E402


def input_shape(path: str) -> List[int]:
    """The static shape of the model's first input (batch 1 where dynamic)."""
    import onnx

    dims = onnx.load(path, load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.dim_value > 0 else 1 for d in dims]
    if len(shape) != 4:
        raise SystemExit(f"{path}: expected an NCHW image input, got {shape}")
    return shape


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="ONNX files (the first is the reference)")
    p.add_argument("--names", nargs="+", default=None, help="labels (default: file names)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="onnx_latency_ab", help="result file name")
    p.add_argument("--note", action="append", default=[], help="provenance line (repeat)")
    args = p.parse_args(argv)
    from edge_perception.quant.measure import measure_in_subprocess

    names = args.names or [os.path.basename(m) for m in args.models]
    if len(names) != len(args.models):
        raise SystemExit("--names needs one label per model")
    missing = [m for m in args.models if not os.path.isfile(m)]
    if missing:
        raise SystemExit(f"no such model: {', '.join(missing)}")
    shapes = [input_shape(m) for m in args.models]
    per: Dict[str, List[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name, path, shape in zip(names, args.models, shapes):
            res = measure_in_subprocess(path, shape, runs=args.runs, threads=args.threads)
            per[name].append(res["latency_ms_median"])
        print(
            f"round {r + 1}/{args.rounds}: "
            + ", ".join(f"{n} {v[-1]:.1f} ms" for n, v in per.items())
        )
    ref = statistics.median(per[names[0]])
    rows: List[List[Any]] = []
    for name, shape in zip(names, shapes):
        med = statistics.median(per[name])
        rows.append(
            [
                name,
                f"{shape[2]}x{shape[3]}",
                f"{med:.1f}",
                f"{min(per[name]):.1f}",
                f"{max(per[name]):.1f}",
                f"{med / ref:.3f}",
            ]
        )
    env = environment()
    cmd = "python bench/onnx_latency_ab.py " + " ".join(argv if argv is not None else sys.argv[1:])
    md = [
        f"# ONNX Runtime latency, side by side ({args.name})",
        "",
        f"Command: `{cmd}`  ",
        f"Machine: {env['cpu']}, {env['cpu_count']} CPUs, load {env['load_avg_1m']} at the start; "
        f"ONNX Runtime {env['onnxruntime']}, {args.threads} intra-op thread(s), "
        f"batch 1; {args.rounds} interleaved rounds, each a fresh process per model with "
        f"{args.runs} timed calls.",
        *[f"{n}  " for n in args.note],
        "",
        markdown_table(
            rows, ["model", "input", "median of round medians (ms)", "min", "max", "ratio"]
        ),
    ]
    data = {
        "env": env,
        "settings": vars(args),
        "rounds_ms": per,
        "models": dict(zip(names, args.models)),
    }
    paths = write_results(args.name, data, "\n".join(md))
    print(f"wrote {paths['md']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
