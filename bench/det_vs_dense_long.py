"""det_small vs YOLOX-nano at equal iterations of the same long-run schedule (issue 11).

    python bench/det_vs_dense_long.py [--det out/det_long/metrics.csv] \\
        [--yolox out/yolox_long/metrics.csv] [--out bench/results/det_vs_dense_long.md]

Both runs (``scripts/det_long_run.sh``, ``scripts/yolox_long_run.sh``) use the same data, batch 8,
2 threads, planned 30k-iteration flat-cosine schedule, warm-up, EMA and mosaic, and validate every
1000 iterations on ``data/det_train27k``'s val split (the 2 fps rendering of the val seeds; see
bench/det_heldout.md). This table puts their rows side by side where both have one, and copies the
YOLOX metrics next to it so it can be re-made from the repository.

At equal training CPU: ``--calibrate`` first measures each model's CPU-seconds per iteration of
exactly those training commands (a 4- and a 14-iteration run each, no validation, same data;
the difference / 10, so start-up cancels), written to ``<out stem>_calibration.json`` and reused;
the second table then sets each det_small row against YOLOX-nano at the iteration with the same
CPU-seconds (linear between YOLOX's validated rows; none where YOLOX has not got that far).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: the long-run scripts whose training command each arm times (read from them, one copy)
SCRIPTS = {"det_small": "scripts/det_long_run.sh", "YOLOX-nano": "scripts/yolox_long_run.sh"}

CLASSES = ["car", "truck", "bus", "motorcycle", "bicycle", "pedestrian", "traffic_sign"]


def rows_by_iteration(path: str) -> Dict[int, Dict[str, str]]:
    """Validated rows of a det-train metrics.csv, keyed by iteration."""
    with open(path, encoding="utf-8") as f:
        return {int(r["iteration"]): r for r in csv.DictReader(f) if r.get("map")}


def script_train_args(script: str) -> List[str]:
    """The ``edge_perception.detection.train`` arguments of a long-run script, less its data,
    output and resume arguments (the calibration supplies its own)."""
    with open(os.path.join(ROOT, script), encoding="utf-8") as f:
        text = f.read()
    try:
        seg = text.split("-m edge_perception.detection.train", 1)[1].split('"${RESUME[@]}"')[0]
    except IndexError:
        raise SystemExit(f"{script}: no `-m edge_perception.detection.train` command") from None
    toks = shlex.split(seg.replace("\\\n", " "))
    out: List[str] = []
    skip = False
    for t in toks:
        if skip:
            skip = False
        elif t in ("--data", "--out"):
            skip = True  # and its "$DATA" / "$OUT"
        else:
            out.append(t)
    return out


def _cpu_s(cmd: List[str]) -> float:
    """User + system CPU-seconds of running ``cmd`` (a child process) to the end."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def calibrate(data: str, path: str) -> Dict[str, float]:
    """CPU-s per training iteration of each arm (module docstring); cached in ``path``."""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)["cpu_per_iter"]
    runs: Dict[str, Dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (4, 14):  # alternate the arms, so a drifting machine disturbs both alike
            for arm, script in SCRIPTS.items():
                # the script's own arguments; no validation, stop after n (argparse: last wins)
                cmd = [sys.executable, "-m", "edge_perception.detection.train", "--data", data,
                       "--out", os.path.join(tmp, f"{arm}_{n}"), *script_train_args(script),
                       "--max-val-images", "0", "--stop-after-iters", str(n)]  # fmt: skip
                runs.setdefault(arm, {})[str(n)] = _cpu_s(cmd)
                print(f"calibration: {arm} {n} iterations {runs[arm][str(n)]:.1f} CPU-s",
                      file=sys.stderr)  # fmt: skip
    per = {arm: (r["14"] - r["4"]) / 10.0 for arm, r in runs.items()}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(
            {
                "cpu_per_iter": per,
                "runs_cpu_s": runs,
                "data": data,
                "command": "python bench/det_vs_dense_long.py --calibrate",
            },
            f,
            indent=2,
        )
    return per


def at_iteration(rows: Dict[int, Dict[str, str]], it: float, key: str) -> Optional[float]:
    """``rows``' metric ``key`` at (fractional) iteration ``it``: linear between validated rows
    (and from 0 at iteration 0); None beyond the last row."""
    pts = [(0.0, 0.0)] + [(float(i), float(r[key])) for i, r in sorted(rows.items())]
    for (i0, v0), (i1, v1) in zip(pts, pts[1:]):
        if i0 <= it <= i1:
            return v0 + (v1 - v0) * (it - i0) / (i1 - i0)
    return None


def plot(
    det: Dict[int, Dict[str, str]],
    yolox: Dict[int, Dict[str, str]],
    per: Optional[Dict[str, float]],
    png: str,
) -> None:
    """Both runs' val mAP50:95 and mAP50 against iteration and (with ``per``) training CPU-h."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if per else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    for name, rows, style in (("det_small", det, "o-"), ("YOLOX-nano", yolox, "s--")):
        its = sorted(rows)
        for key in ("map", "map50"):
            ys = [float(rows[i][key]) for i in its]
            label = f"{name} {'mAP50:95' if key == 'map' else 'mAP50'}"
            axes[0][0].plot(its, ys, style, label=label)
            if per:
                cpu_h = [i * per[name] / 3600 for i in its]
                axes[0][1].plot(cpu_h, ys, style, label=label)
    axes[0][0].set(xlabel="iteration", ylabel="val AP (2 fps val)", title="equal iterations")
    if per:
        axes[0][1].set(xlabel="training CPU-hours (calibrated)", title="equal CPU")
    for a in axes[0]:
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--det", default="models/checkpoints/det_long_metrics.csv")
    p.add_argument("--yolox", default="out/yolox_long/metrics.csv")
    p.add_argument("--out", default="bench/results/det_vs_dense_long.md")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="measure CPU-s per iteration of both training commands (or reuse)",
    )
    p.add_argument("--data", default="data/det_train27k", help="for --calibrate")
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
        "(scripts/yolox_long_run.sh); same training data, batch, threads, schedule; EMA "
        "weights, per-class AP50:95; val = the 2 fps rendering of the val seeds on which "
        "det_small's long run validated (`python bench/val_2fps.py`: det-eval of the bundled "
        "det_small on it gives that run's iteration-5000 row, 0.4235 / 0.6743, exactly; "
        "YOLOX-nano's run validated on it directly, `DET_DATA` = data/det_train27k's train "
        "split + data/val_2fps's val split).",
        "",
        head,
        "|" + "---|" * (4 + len(CLASSES)),
    ]
    for it in common:
        for name, r in (("det_small", det[it]), ("YOLOX-nano", yolox[it])):
            cells = [f"{float(r['map']):.3f}", f"{float(r['map50']):.3f}"]
            cells += [f"{float(r['ap_' + c]):.3f}" for c in CLASSES]
            lines.append(f"| {it} | {name} | " + " | ".join(cells) + " |")
    cal_path = os.path.splitext(args.out)[0] + "_calibration.json"
    per: Optional[Dict[str, float]] = None
    if args.calibrate or os.path.isfile(cal_path):
        per = calibrate(args.data, cal_path)
        ratio = per["det_small"] / per["YOLOX-nano"]
        lines += [
            "",
            "## At equal training CPU",
            "",
            f"CPU-s per iteration of the two training commands on this machine "
            f"(`{os.path.relpath(cal_path, ROOT)}`): det_small {per['det_small']:.2f}, "
            f"YOLOX-nano {per['YOLOX-nano']:.2f}, so one det_small iteration costs as much as "
            f"{ratio:.2f} YOLOX-nano iterations. Each validated row of either run is set against "
            "the other model at the same CPU-seconds; a value marked ~ is linear between that "
            "run's validated rows (every 1000 iterations, from 0 at iteration 0).",
            "",
            "| CPU-h | det_small iteration | det_small mAP50:95 / mAP50 | YOLOX-nano iteration "
            "| YOLOX-nano mAP50:95 / mAP50 |",
            "|---|---|---|---|---|",
        ]

        def cell(rows: Dict[int, Dict[str, str]], it: float) -> str:
            if int(it) == it and int(it) in rows:
                r = rows[int(it)]
                return f"{float(r['map']):.3f} / {float(r['map50']):.3f}"
            m, m50 = at_iteration(rows, it, "map"), at_iteration(rows, it, "map50")
            return "not trained that far" if m is None else f"~{m:.3f} / ~{m50:.3f}"

        points = sorted({it * per["det_small"] for it in det}
                        | {it * per["YOLOX-nano"] for it in yolox})  # fmt: skip
        for cpu in points:
            d_it, y_it = cpu / per["det_small"], cpu / per["YOLOX-nano"]
            d_it = round(d_it) if abs(d_it - round(d_it)) < 1e-6 else d_it
            y_it = round(y_it) if abs(y_it - round(y_it)) < 1e-6 else y_it
            lines.append(
                f"| {cpu / 3600:.2f} | {d_it:.0f} | {cell(det, d_it)} | {y_it:.0f} "
                f"| {cell(yolox, y_it)} |"
            )
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    stem = os.path.splitext(args.out)[0]
    plot(det, yolox, per, stem + ".png")
    from edge_perception.detection.train import plot_curves

    plot_curves(args.det, stem + "_det_curve.png")  # loss, val mAP, per class of det_small
    lines += [
        "",
        f"Curves: `{os.path.basename(stem)}.png` (both runs against iterations and CPU-hours), "
        f"`{os.path.basename(stem)}_det_curve.png` (det_small's loss, val mAP and per-class AP).",
    ]
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    shutil.copyfile(args.yolox, os.path.splitext(args.out)[0] + "_yolox_metrics.csv")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
