"""VIS video mode: frame mask AP against per-frame cost, one point per keyframe policy.

Reads ``edge-perception vis-eval`` JSON results of one data set (the one with an image-mode row
gives the reference) and the non-key / key path CPU-time ratio ``r`` of bench/vis_speed.json, and
puts each video-mode run at cost ``keys + (1 - keys) x r`` of image mode (``keys``: its measured
keyframe share). The issue-14 target region (cost <= 0.55, mask AP within 1 point of image mode)
is shaded, so where the policies fall against it is one look::

    python bench/vis_tradeoff.py bench/results/vis_eval_30hz.json \\
        bench/results/vis_eval_30hz_k2.json bench/results/vis_eval_30hz_k3.json \\
        bench/results/vis_eval_30hz_k5.json --name vis_tradeoff_30hz

Writes ``bench/results/<name>.{json,md,png}``. Only measured figures go in: no fit, no
extrapolation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import RESULTS_DIR, markdown_table, publish_results  # noqa: E402

TARGET_COST = 0.55  # video / image per-frame cost (issue 14)
TARGET_DROP = 0.01  # mask AP within 1 point of image mode


def flow_trigger_on(params: Dict[str, Any]) -> bool:
    """Whether a run kept the node's mean-flow keyframe trigger (``--set max_mean_flow_px=0``
    turns it off; the interval, lost-track and reset triggers stay either way)."""
    return params.get("max_mean_flow_px", None) != 0


def policy_label(mode: Dict[str, Any], flow_trigger: bool) -> str:
    """``K = 5, flow trigger on`` / ``off``."""
    return "K = %d, flow trigger %s" % (mode["keyframe_interval"], "on" if flow_trigger else "off")


def points(paths: List[str], ratio: float) -> Dict[str, Any]:
    """Image-mode reference and one row per video-mode run; ValueError when the files disagree
    on the data or none has an image-mode row."""
    image, rows, data = None, [], None
    for path in paths:
        with open(path, encoding="utf-8") as f:
            res = json.load(f)
        key = (res["data"], res["split"], res["frames"])
        if data is not None and key != data:
            raise ValueError(f"{path}: scored on {key}, the others on {data}")
        data = key
        flow = flow_trigger_on(res.get("node_parameters", {}))
        for name, mode in res["modes"].items():
            if name == "image":
                image = mode
                continue
            keys = float(mode["key_ratio"])
            rows.append({
                "file": os.path.basename(path), "policy": policy_label(mode, flow),
                "flow_trigger": flow,
                "key_ratio": keys, "cost": keys + (1.0 - keys) * ratio,
                "mask_ap": float(mode["frame_mask_ap"]), "idf1": float(mode["idf1"]),
            })  # fmt: skip
    if image is None:
        raise ValueError("no image-mode row in " + ", ".join(paths))
    ref = float(image["frame_mask_ap"])
    for r in rows:
        r["drop_points"] = 100.0 * (ref - r["mask_ap"])
        r["meets"] = r["cost"] <= TARGET_COST and r["drop_points"] <= 100.0 * TARGET_DROP
    rows.sort(key=lambda r: -r["cost"])
    return {"data": data[0], "split": data[1], "frames": data[2], "image_mask_ap": ref,
            "nonkey_vs_key": ratio, "rows": rows}  # fmt: skip


def plot(result: Dict[str, Any], png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = result["image_mask_ap"]
    rows = result["rows"]
    lo, x0 = min(r["mask_ap"] for r in rows) - 0.01, 0.35
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.fill_between(
        [x0, TARGET_COST],
        ref - TARGET_DROP,
        ref + 0.01,
        color="tab:green",
        alpha=0.15,
        label="target (cost <= %.2f, within 1 point)" % TARGET_COST,
    )
    ax.plot([1.0], [ref], "ks", label="image mode (every frame a keyframe)")
    for trig, style, name in ((False, "o-", "flow trigger off"), (True, "D", "flow trigger on")):
        sel = sorted((r for r in rows if r["flow_trigger"] == trig), key=lambda r: r["cost"])
        if sel:  # the flow-trigger-off line ends at K = 1 (image mode)
            end = [] if trig else [(1.0, ref)]
            ax.plot(
                [r["cost"] for r in sel] + [x for x, _ in end],
                [r["mask_ap"] for r in sel] + [y for _, y in end],
                style,
                label="video mode, " + name,
            )
    for r in rows:
        ax.annotate(
            "%s\n%.0f %% keys" % (r["policy"], 100 * r["key_ratio"]),
            (r["cost"], r["mask_ap"]),
            textcoords="offset points",
            xytext=(6, -18),
            fontsize=7,
        )
    ax.axvline(result["nonkey_vs_key"], color="gray", ls=":", lw=1)
    ax.text(
        result["nonkey_vs_key"] + 0.01, ref + 0.005, "non-key path alone", fontsize=7, color="gray"
    )
    ax.set(
        xlim=(x0, 1.05),
        ylim=(lo, ref + 0.01),
        xlabel="per-frame cost / image mode (CPU time, bench/vis_speed.md)",
        ylabel="frame mask AP (what the node publishes)",
        title="VIS keyframe policies, %s (%d frames)" % (result["data"], result["frames"]),
    )
    ax.legend(fontsize=7, loc="lower right")  # fmt: skip
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="vis-eval --json files of one data set")
    ap.add_argument("--speed", default="bench/vis_speed.json", help="bench/vis_speed.py results")
    ap.add_argument("--name", default="vis_tradeoff")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    args = ap.parse_args(argv)
    try:
        with open(args.speed, encoding="utf-8") as f:
            ratio = float(json.load(f)["ratios"]["nonkey_vs_key_path"])
        result = points(args.results, ratio)
    except (OSError, KeyError, ValueError) as exc:
        print(f"vis_tradeoff: error: {exc}", file=sys.stderr)
        return 2
    cmd = "python bench/vis_tradeoff.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result["command"] = cmd
    table = markdown_table(
        [[r["policy"], "%.2f" % r["key_ratio"], "%.2f" % r["cost"], "%.4f" % r["mask_ap"],
          "%+.1f" % -r["drop_points"], "%.3f" % r["idf1"], "yes" if r["meets"] else "no"]
         for r in result["rows"]],
        ["policy", "keyframes", "cost", "frame mask AP", "vs image (points)", "IDF1",
         "both targets"],
    )  # fmt: skip
    out_dir = args.out or RESULTS_DIR
    png = os.path.join(out_dir, args.name + ".png")
    md = "\n".join([
        "# VIS keyframe policies: accuracy against cost", "",
        f"Command: `{cmd}`  ",
        f"Data `{result['data']}` split `{result['split']}` ({result['frames']} frames); image "
        f"mode frame mask AP {result['image_mask_ap']:.4f}; cost = keyframes + (1 - keyframes) "
        f"x {result['nonkey_vs_key']:.3f} (the non-key / key path CPU-time ratio of "
        f"{args.speed}).", "", table, "", f"![trade-off]({args.name}.png)", "",
    ]) + "\n"  # fmt: skip
    os.makedirs(out_dir, exist_ok=True)
    plot(result, png)
    publish_results(args.name, result, md, out_dir)
    print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
