"""det_small (lite RT-DETR) vs a YOLOX-nano-class dense detector, side by side (issue 11).

Three steps, each resumable, run in this order (``all`` runs them in turn)::

    python bench/det_vs_dense.py latency [--runs 50]
    python bench/det_vs_dense.py train --data data/det_train [--budget-cpu-s S] [--cpu-per-iter C]
    python bench/det_vs_dense.py report

- ``latency``: ONNX Runtime, 1 intra-op thread, batch 1: the committed ``models/det_small.onnx``
  (288x480), ``small`` with random weights exported at 416x416 and at 288x480, YOLOX-nano with
  random weights at 416x416 and 288x480 (weights do not change the work of either graph; the
  YOLOX NMS is a fixed-size matrix computation). The models are timed round-robin, one call each
  per round, so that the load of a shared machine hits all of them alike; median of ``--runs``
  rounds after ``--warmup`` rounds. Parameters (inference) and GFLOPs
  (``torch.utils.flop_counter``, 2 x MACs, GridSample not counted; for YOLOX also the conv-only
  count of ``edge_perception.flops`` that model papers use);
- ``train``: the YOLOX-nano arm at equal training CPU-seconds with the RT-DETR recipe's ``full``
  arm of ``bench/det_recipe.py`` (``out/det_recipe/results.json``, ``cpu_s``; or
  ``--budget-cpu-s`` when that arm has not finished): same data, trainer, input, batch, seed,
  flat-cosine schedule (warm-up 1/5), LR, EMA, mosaic switches and validation; the iteration
  count is the budget minus the measured start-up and validation cost, divided by the measured
  CPU-seconds per iteration (two short calibration runs, 4 and 24 iterations);
- ``report``: ``bench/det_vs_dense.json`` + ``bench/det_vs_dense.md``.

Work files go under ``out/det_vs_dense/``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from edge_perception.config import OBJECT_CLASS_NAMES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from common import cpu_model, environment, summarize  # noqa: E402

WORK = os.path.join(ROOT, "out", "det_vs_dense")
# the RT-DETR "full" arm's switches that also apply to YOLOX (the dense o2m head and MAL are
# RT-DETR-only training aids)
SHARED = ["--mosaic", "0.5", "--mosaic-stop", "1.0"]
FALLBACK_BUDGET = 1.3 * 400  # CPU-s: the brief's estimate of the full arm (1.3 CPU-s/it x 400)


def _read(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write(path: str, obj: Any) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


# ----------------------------------------------------------------------------------- latency


def _gflops(model: Any, size: Tuple[int, int]) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.rand(1, 3, *size))
    return fc.get_total_flops() / 1e9


def latency(args: argparse.Namespace) -> Dict[str, Any]:
    """Export the graphs, count params / GFLOPs, time them round-robin; cache the result."""
    import numpy as np
    import torch
    from edge_perception.detection.export import export_detector
    from edge_perception.detection.model import build_rtdetr, count_parameters
    from edge_perception.detection.yolox import build_yolox
    from edge_perception.export import ort_session
    from edge_perception.flops import count_cost

    torch.set_num_threads(1)
    os.makedirs(WORK, exist_ok=True)
    rows: List[Dict[str, Any]] = []
    builders: Dict[str, Callable[[], Any]] = {
        "det_small": lambda: build_rtdetr("small"),
        "yolox_nano": lambda: build_yolox("nano"),
    }
    plan = [
        ("det_small", (288, 480), os.path.join(ROOT, "models", "det_small.onnx"), "trained"),
        ("det_small", (288, 480), None, "random"),
        ("det_small", (416, 416), None, "random"),
        ("yolox_nano", (416, 416), None, "random"),
        ("yolox_nano", (288, 480), None, "random"),
    ]
    for name, size, path, weights in plan:
        torch.manual_seed(0)
        model = builders[name]().deploy()
        if path is None:
            path = os.path.join(WORK, f"{name}_{size[0]}x{size[1]}.onnx")
            export_detector(model, path, size, parity=False)
        row = {
            "model": name,
            "input": f"{size[0]}x{size[1]}",
            "weights": weights,
            "onnx": os.path.relpath(path, ROOT),
            "params_m": round(count_parameters(model) / 1e6, 3),
            "gflops": round(_gflops(model, size), 3),
        }
        if name == "yolox_nano":
            row["gflops_conv"] = round(count_cost(model, torch.rand(1, 3, *size)).flops / 1e9, 3)
        rows.append(row)
    sessions = [ort_session(os.path.join(ROOT, r["onnx"]), threads=1) for r in rows]
    rng = np.random.default_rng(0)
    feeds = [
        {"images": rng.random((1, 3, *map(int, r["input"].split("x"))), dtype=np.float32)}
        for r in rows
    ]
    times: List[List[float]] = [[] for _ in rows]
    for i in range(args.warmup + args.runs):
        for j, (sess, feed) in enumerate(zip(sessions, feeds)):
            t0 = time.perf_counter()
            sess.run(None, feed)
            if i >= args.warmup:
                times[j].append((time.perf_counter() - t0) * 1e3)
    for r, t in zip(rows, times):
        r["latency_ms"] = summarize(t)
    result = {
        "environment": environment(),
        "runs": args.runs,
        "warmup": args.warmup,
        "threads": 1,
        "rows": rows,
    }
    _write(os.path.join(WORK, "latency.json"), result)
    for r in rows:
        print(
            f"{r['model']:<11s} {r['input']:>7s} {r['weights']:<7s} {r['params_m']:.3f} M "
            f"{r['gflops']:.2f} GFLOPs  p50 {r['latency_ms']['p50']:.1f} ms"
        )
    return result


# ------------------------------------------------------------------------------------- train


def _train_cmd(args: argparse.Namespace, out: str, iters: int, extra: List[str]) -> List[str]:
    return [
        sys.executable,
        "-m",
        "edge_perception.detection.train",
        "--data",
        args.data,
        "--out",
        out,
        "--variant",
        "yolox_nano",
        "--input-size",
        "288",
        "480",
        "--batch-size",
        "8",
        "--iters",
        str(iters),
        "--schedule",
        "flatcos",
        "--warmup-iters",
        str(max(1, iters // 5)),
        "--lr",
        "1e-3",
        "--ema-decay",
        "0.998",
        "--threads",
        "1",
        "--seed",
        "0",
        "--no-progress",
        *SHARED,
        *extra,
    ]


def _run_cpu(cmd: List[str]) -> float:
    """Run ``cmd`` at nice 5; return its user + system CPU-seconds."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["nice", "-n", "5", *cmd], check=True, cwd=ROOT)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def calibrate(args: argparse.Namespace) -> Dict[str, float]:
    """CPU-s per iteration and start-up (4- and 24-iteration runs), validation CPU-s."""
    path = os.path.join(WORK, "calibration.json")
    if os.path.isfile(path):
        return _read(path)
    cpu = {}
    for n in (4, 24):
        out = os.path.join(WORK, f"calib{n}")
        cmd = _train_cmd(args, out, 1000, ["--max-val-images", "0", "--stop-after-iters", str(n)])
        cpu[n] = _run_cpu(cmd)
    per_iter = (cpu[24] - cpu[4]) / 20
    ck = os.path.join(WORK, "calib24", "last.pt")
    ev = [sys.executable, "-m", "edge_perception.cli", "det-eval", "--checkpoint", ck]
    ev += ["--data", args.data, "--split", "val", "--threads", "1"]
    ev_cpu = _run_cpu(ev)
    startup = cpu[4] - 4 * per_iter
    res = {
        "cpu_per_iter": per_iter,
        "startup_cpu_s": startup,
        # det-eval's own start-up (imports, data index) is in the training start-up already
        "val_cpu_s": max(0.0, ev_cpu - startup),
        "runs_cpu_s": {str(k): v for k, v in cpu.items()},
        "eval_process_cpu_s": ev_cpu,
    }
    _write(path, res)
    return res


def budget(args: argparse.Namespace) -> Tuple[float, str]:
    """The RT-DETR ``full`` arm's CPU-seconds and where the number comes from."""
    path = os.path.join(ROOT, "out", "det_recipe", "results.json")
    if os.path.isfile(path):
        for r in _read(path):
            if r.get("arm") == "full":
                return float(r["cpu_s"]), "measured: out/det_recipe/results.json arm 'full'"
    if args.budget_cpu_s:
        return float(args.budget_cpu_s), "estimate given on the command line (--budget-cpu-s)"
    raise SystemExit("the 'full' arm has no result yet; pass --budget-cpu-s")


def train(args: argparse.Namespace) -> Dict[str, Any]:
    """Train (or resume) the YOLOX-nano arm within the budget; cache and return its result."""
    res_path = os.path.join(WORK, "yolox_arm.json")
    plan_path = os.path.join(WORK, "yolox_plan.json")
    out = os.path.join(WORK, "yolox_nano")
    if os.path.isfile(plan_path):  # a started arm keeps its plan (the schedule depends on it)
        plan = _read(plan_path)
    else:
        cal = calibrate(args) if args.cpu_per_iter is None else None
        per_iter = args.cpu_per_iter or cal["cpu_per_iter"]  # type: ignore[index]
        fixed = (
            (cal["startup_cpu_s"] + cal["val_cpu_s"]) if cal else float(args.fixed_cpu_s or 0.0)
        )
        cpu_budget, source = budget(args)
        iters = int((cpu_budget - fixed) // per_iter)
        plan = {
            "budget_cpu_s": cpu_budget,
            "budget_source": source,
            "cpu_per_iter": per_iter,
            "fixed_cpu_s": fixed,
            "iters": iters,
        }
        _write(plan_path, plan)
    cmd = _train_cmd(args, out, plan["iters"], ["--max-val-images", "240"])
    if os.path.isfile(os.path.join(out, "last.pt")):
        cmd.append("--resume")
    t0 = time.time()
    cpu_s = _run_cpu(cmd)
    import torch

    state = torch.load(os.path.join(out, "best.pt"), map_location="cpu", weights_only=False)
    m = state["val_metrics"]
    prev = _read(res_path) if os.path.isfile(res_path) else {}
    result = {
        "arm": "yolox_nano",
        **plan,
        "iterations": state["iteration"],
        "cpu_s": round(cpu_s + float(prev.get("cpu_s", 0.0)), 1),
        "wall_s": round(time.time() - t0 + float(prev.get("wall_s", 0.0)), 1),
        "map": m["map"],
        "map50": m["map50"],
        "map_small": m.get("map_small"),
        "map_medium": m.get("map_medium"),
        "per_class": m.get("per_class", {}),
        "command": "nice -n 5 " + " ".join(cmd[1:]),
    }
    _write(res_path, result)
    return result


# ------------------------------------------------------------------------------------ report


def report(args: argparse.Namespace) -> None:
    """Write bench/det_vs_dense.json and .md from what exists."""
    lat = _read(os.path.join(WORK, "latency.json"))
    arm_path = os.path.join(WORK, "yolox_arm.json")
    yolox = _read(arm_path) if os.path.isfile(arm_path) else None
    recipe_path = os.path.join(ROOT, "out", "det_recipe", "results.json")
    full = None
    if os.path.isfile(recipe_path):
        full = next((r for r in _read(recipe_path) if r.get("arm") == "full"), None)
    plan_path = os.path.join(WORK, "yolox_plan.json")
    plan = _read(plan_path) if os.path.isfile(plan_path) else None
    data = {
        "machine": cpu_model(),
        "latency": lat,
        "accuracy": {"det_small_full": full, "yolox_nano": yolox, "yolox_plan": plan},
        "notes": args.note,
    }
    _write(os.path.join(ROOT, "bench", "det_vs_dense.json"), data)
    with open(os.path.join(ROOT, "bench", "det_vs_dense.md"), "w", encoding="utf-8") as f:
        f.write(_markdown(data) + "\n")


def _markdown(data: Dict[str, Any]) -> str:
    lat = data["latency"]
    env = lat["environment"]
    lines = [
        "# det_small (lite RT-DETR) vs a YOLOX-nano-class dense detector",
        "",
        f"Machine: {data['machine']}, {env['cpu_count']} cores shared with background training "
        f"(1-min load {env['load_avg_1m']} when timed); ONNX Runtime {env['onnxruntime']}, "
        f"torch {env['torch']}, git {env['git']}, {env['time_utc']}.",
        "",
        "## Speed and size",
        "",
        f"`python bench/det_vs_dense.py latency --runs {lat['runs']}`: batch 1, "
        "`intra_op_num_threads=1`, the models timed round-robin (one call each per round) "
        f"after {lat['warmup']} warm-up rounds; median (p50), p90 and min of {lat['runs']} "
        "rounds (the minimum is the least disturbed by the other jobs on the machine). "
        "GFLOPs = 2 x MACs from `torch.utils.flop_counter` (GridSample not counted); YOLOX's "
        "conv-only count, the convention of its paper (1.08 GFLOPs at 416x416 for 80 classes), "
        "in brackets.",
        "",
        "| model | input | weights | params (M) | GFLOPs | p50 (ms) | p90 (ms) | min (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in lat["rows"]:
        g = f"{r['gflops']:.2f}"
        if "gflops_conv" in r:
            g += f" ({r['gflops_conv']:.2f})"
        lines.append(
            f"| {r['model']} | {r['input']} | {r['weights']} | {r['params_m']:.3f} | {g} | "
            f"{r['latency_ms']['p50']:.1f} | {r['latency_ms']['p90']:.1f} | "
            f"{r['latency_ms']['min']:.1f} |"
        )
    by = {(r["model"], r["input"], r["weights"]): r["latency_ms"]["p50"] for r in lat["rows"]}
    deployed = by.get(("det_small", "288x480", "trained"))
    y416 = by.get(("yolox_nano", "416x416", "random"))
    pairs = [
        ("416x416", by.get(("det_small", "416x416", "random")), y416),
        ("288x480", deployed, by.get(("yolox_nano", "288x480", "random"))),
    ]
    lines.append("")
    for size, det, yx in pairs:
        if det and yx:
            lines.append(
                f"- at {size}: YOLOX-nano {yx:.1f} ms vs det_small {det:.1f} ms "
                f"(YOLOX-nano takes {yx / det:.2f}x det_small's time)."
            )
    if deployed and y416:
        lines.append(
            f"- YOLOX-nano at 416x416 vs det_small at its deployed 288x480: "
            f"{y416:.1f} vs {deployed:.1f} ms ({(1 - y416 / deployed) * 100:+.0f} % faster)."
        )
    lines += ["", "## Accuracy at equal training CPU-seconds", ""]
    acc = data["accuracy"]
    full, yx, plan = acc["det_small_full"], acc["yolox_nano"], acc["yolox_plan"]
    if plan:
        lines.append(
            f"Budget: {plan['budget_cpu_s']:.0f} CPU-s ({plan['budget_source']}). YOLOX-nano: "
            f"{plan['cpu_per_iter']:.3f} CPU-s per iteration measured (calibration runs of 4 "
            f"and 24 iterations), {plan['fixed_cpu_s']:.0f} CPU-s of start-up + validation, "
            f"hence {plan['iters']} iterations."
        )
        lines.append("")
    header = (
        "| model | iterations | CPU-s | mAP50:95 | mAP50 | "
        + " | ".join(OBJECT_CLASS_NAMES)
        + " |"
    )
    lines += [header, "|---|---|---|---|---|" + "---|" * len(OBJECT_CLASS_NAMES)]
    for name, r in (("det_small, recipe `full`", full), ("YOLOX-nano", yx)):
        if not r:
            lines.append(f"| {name} | (not finished) |" + " |" * (3 + len(OBJECT_CLASS_NAMES)))
            continue
        pc = r.get("per_class", {})
        lines.append(
            f"| {name} | {r['iterations']} | {r['cpu_s']:.0f} | {r['map']:.4f} | "
            f"{r['map50']:.4f} | "
            + " | ".join(f"{pc.get(c, float('nan')):.3f}" for c in OBJECT_CLASS_NAMES)
            + " |"
        )
    lines += ["", "Per-class columns: AP50:95 on the standard 240-frame val split (EMA weights)."]
    lines += ["", "Commands:", ""]
    if full:
        lines.append(
            f"- det_small: `python bench/det_recipe.py ...` arm full: `{full['command']}`"
        )
    if yx:
        lines.append(f"- YOLOX-nano: `{yx['command']}`")
    lines.append("")
    lines += [f"{n}" for n in data.get("notes") or []]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("step", choices=("latency", "train", "report", "all"))
    p.add_argument("--data", default="data/det_train")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--budget-cpu-s", type=float, default=None, help="if 'full' is not done")
    p.add_argument("--cpu-per-iter", type=float, default=None, help="skip the calibration")
    p.add_argument("--fixed-cpu-s", type=float, default=None, help="with --cpu-per-iter")
    p.add_argument("--note", action="append", default=[], help="a paragraph for the report")
    args = p.parse_args(argv)
    if args.step in ("latency", "all"):
        latency(args)
    if args.step in ("train", "all"):
        print(json.dumps(train(args), indent=2))
    if args.step in ("report", "all"):
        report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
