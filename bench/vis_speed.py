"""VIS speed (issue 14): key / non-key paths, image vs video mode, and a YolactEdge-class model.

    bash bench/vis_speed.sh            # pauses the background training jobs, runs this, resumes
    python bench/vis_speed.py [--runs 30] [--frames 60] [--yolact-runs 8]

ONNX Runtime, 1 intra-op and 1 inter-op thread, batch 1, random weights (seeded; weights do not
change the work of these graphs -- no trained VIS model exists yet, so no accuracy here). Times
are thread CPU ms (ORT computes on the calling thread with one intra-op thread), which other jobs
on a shared 2-core machine disturb far less than wall time; wall ms are recorded beside them:

- the VIS ``small`` variant at 288x480, exported to its three graphs: **key path** = the key
  graph with the head fused in, **non-key path** = the non-key graph with the head fused in
  (``runtime.vis.fuse_head``: what the node runs with ONNX Runtime), median over ``--runs``
  rounds; each graph on its own too (key, non-key, head: the TensorRT split);
- **image mode vs video mode**: :class:`~edge_perception.runtime.vis.VISPipeline` as the node
  runs it, every frame a keyframe vs the keyframe policy at K = 5 (interval only: flow and
  lost-track triggers off, since random weights give meaningless flow / tracks), over
  ``--frames`` frames (a textured image shifted 2 px per frame, 30 Hz stamps); mean ms per frame
  of the (fused) graphs and of the whole frame (with pre- / post-processing, tracker, masks);
- a **YolactEdge-MobileNetV2-class** model (bench/yolactedge_model.py) at its 550x550 default,
  image mode (every frame through the full network), timed the same way.

All timed calls run round-robin (one call of each per round) so the load of a shared machine hits
them alike. Targets: video mode <= 0.55x image mode, non-key path <= 0.4x key path, the project's
node >= 10x faster per frame than the YolactEdge-class model. Writes bench/vis_speed.json and
bench/vis_speed.md; work files under out/vis_speed/.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from common import environment, markdown_table, summarize, write_results  # noqa: E402

SIZE = (288, 480)
YOLACT_SIZE = 550


def lscpu_model() -> str:
    """``lscpu``'s "Model name" (else /proc/cpuinfo's)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.strip().startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return environment()["cpu"]


def export_models(work: str) -> Dict[str, Any]:
    """VIS small (3 graphs) and the YolactEdge-class model as ONNX; MACs of each path."""
    import torch
    from edge_perception.export import export_onnx
    from edge_perception.flops import count_cost
    from edge_perception.vis.export import export_vis, path_costs
    from edge_perception.vis.model import build_vis
    from yolactedge_model import YolactEdgeMBV2

    torch.manual_seed(0)
    vis = build_vis("small").eval()
    prefix = os.path.join(work, "vis_small")
    paths = export_vis(vis, prefix, SIZE, parity=False)["paths"]
    costs = path_costs(vis, SIZE)
    torch.manual_seed(0)
    yol = YolactEdgeMBV2().eval()
    x = torch.rand(1, 3, YOLACT_SIZE, YOLACT_SIZE)
    ypath = os.path.join(work, "yolactedge_mbv2_550.onnx")
    export_onnx(yol, (x,), ypath, ["images"], ["boxes", "scores", "labels", "masks"], opset=17)
    with torch.no_grad():
        ycost = count_cost(yol, x)
    return {
        "vis_paths": paths,
        "nonkey_propagate": vis.propagator is not None,
        "yolact_path": ypath,
        "macs": {
            "vis_key_path": costs["key_path"]["macs"],
            "vis_nonkey_path": costs["nonkey_path"]["macs"],
            "vis_ratio": costs["ratio"],
            "vis_by_module": {g: costs[g]["by_module"] for g in ("key", "nonkey", "head")},
            "yolact": ycost.macs,
        },
        "params": {
            "vis_small": sum(p.numel() for p in vis.parameters()),
            "yolact": sum(p.numel() for p in yol.parameters()),
        },
    }


def _backend(path: str) -> Any:
    from edge_perception.backends.factory import create_backend

    return create_backend("onnxruntime", path, intra_op_threads=1, inter_op_threads=1)


class _CpuTimed:
    """A backend proxy that adds up the thread CPU ms of its calls (ONNX Runtime with one
    intra-op thread computes on the calling thread)."""

    def __init__(self, backend: Any) -> None:
        self._b = backend
        self.cpu_ms = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._b, name)

    def __call__(self, feeds: Any) -> Any:
        t0 = time.thread_time()
        try:
            return self._b(feeds)
        finally:
            self.cpu_ms += (time.thread_time() - t0) * 1e3


def time_paths(
    models: Dict[str, Any], runs: int, yolact_runs: int
) -> Dict[str, Dict[str, List[float]]]:
    """Round-robin CPU and wall ms of the key, head, non-key graphs and the YolactEdge-class
    model: ``{"cpu": {name: [...]}, "wall": {...}}``."""
    from edge_perception.runtime.vis import (
        HEAD_INPUTS,
        PROPAGATED,
        create_vis_backends,
        keyframe_state,
    )

    b = {g: _backend(p) for g, p in models["vis_paths"].items()}
    fz = create_vis_backends(
        "onnxruntime", models["vis_paths"]["key"], intra_op_threads=1, inter_op_threads=1
    )
    yol = _backend(models["yolact_path"])
    rng = np.random.default_rng(0)
    img0 = rng.random((1, 3) + SIZE, dtype=np.float32)
    img1 = np.roll(img0, 2, axis=3)
    yimg = rng.random((1, 3, YOLACT_SIZE, YOLACT_SIZE), dtype=np.float32)
    key_out = b["key"]({"images": img0})
    state = keyframe_state(key_out, all(n in b["nonkey"].input_names for n in PROPAGATED))
    nk_out = b["nonkey"](dict(state, images=img1))
    calls = {
        "key": lambda: b["key"]({"images": img0}),
        "head_after_key": lambda: b["head"]({n: key_out[n] for n in HEAD_INPUTS}),
        "nonkey": lambda: b["nonkey"](dict(state, images=img1)),
        "head_after_nonkey": lambda: b["head"]({n: nk_out[n] for n in HEAD_INPUTS}),
        "key_fused": lambda: fz["key"]({"images": img0}),
        "nonkey_fused": lambda: fz["nonkey"](dict(state, images=img1)),
        "yolact": lambda: yol({"images": yimg}),
    }
    for name, fn in calls.items():  # warm-up
        for _ in range(2 if name == "yolact" else 5):
            fn()
    ms: Dict[str, Dict[str, List[float]]] = {"cpu": {k: [] for k in calls}, "wall": {}}
    ms["wall"] = {k: [] for k in calls}
    for r in range(runs):
        for name, fn in calls.items():
            if name == "yolact" and r >= yolact_runs:
                continue
            t0, c0 = time.perf_counter(), time.thread_time()
            fn()
            ms["cpu"][name].append((time.thread_time() - c0) * 1e3)
            ms["wall"][name].append((time.perf_counter() - t0) * 1e3)
    for x in list(b.values()) + [fz["key"], fz["nonkey"], yol]:
        x.close()
    return ms


def time_modes(models: Dict[str, Any], frames: int) -> Dict[str, Dict[str, List[float]]]:
    """Per frame of the pipeline in image mode and video mode (K=5), the head fused into the path
    graphs as the node runs them: CPU ms of the graphs (``inference``), CPU ms of the whole frame
    with pre/post-processing (``total``), wall ms of the graphs (``inference_wall``) and the
    keyframe flag."""
    from edge_perception.config import VisNodeConfig
    from edge_perception.runtime.vis import VISPipeline, create_vis_backends

    pipes, proxies = {}, {}
    for mode, k in (("image", 1), ("video", 5)):
        cfg = VisNodeConfig(
            keyframe_interval=k, max_keyframe_age_s=0.0, max_mean_flow_px=0.0, max_lost_tracks=0
        ).validate()
        fz = create_vis_backends(
            "onnxruntime", models["vis_paths"]["key"], intra_op_threads=1, inter_op_threads=1
        )
        b = {g: _CpuTimed(fz[g]) for g in ("key", "nonkey")}
        proxies[mode] = list(b.values())
        pipes[mode] = VISPipeline(
            b["key"], b["nonkey"], None, resize="letterbox", interpolation="linear",
            keyframes=cfg.keyframe_config(), tracker=cfg.tracker_config(),
        )  # fmt: skip
        pipes[mode].warmup(2)
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (384, 640, 3), np.uint8)
    out: Dict[str, Dict[str, List[float]]] = {
        m: {"inference": [], "total": [], "inference_wall": [], "key": []} for m in pipes
    }
    for i in range(frames):
        frame = np.roll(base, 2 * i, axis=1)
        for mode, p in pipes.items():
            before = sum(x.cpu_ms for x in proxies[mode])
            c0 = time.thread_time()
            res = p.process(frame, i / 30.0)
            out[mode]["total"].append((time.thread_time() - c0) * 1e3)
            out[mode]["inference"].append(sum(x.cpu_ms for x in proxies[mode]) - before)
            out[mode]["inference_wall"].append(res.times.inference_ms)
            out[mode]["key"].append(float(res.keyframe))
    for p in pipes.values():
        p.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="rounds of the path timing")
    parser.add_argument("--frames", type=int, default=60, help="frames per mode")
    parser.add_argument("--yolact-runs", type=int, default=8, help="timed YolactEdge calls")
    parser.add_argument("--work", default=os.path.join(ROOT, "out", "vis_speed"))
    parser.add_argument("--out-dir", default=os.path.join(ROOT, "bench"))
    parser.add_argument("--command", default=None, help="the command line to record")
    parser.add_argument("--note", action="append", default=[], help="a line for the Markdown")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    env = environment()
    env["lscpu_model_name"] = lscpu_model()
    models = export_models(args.work)
    paths = time_paths(models, args.runs, args.yolact_runs)
    modes = time_modes(models, args.frames)
    env["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    med = {k: statistics.median(v) for k, v in paths["cpu"].items()}
    wall = {k: statistics.median(v) for k, v in paths["wall"].items()}
    key_path, nonkey_path = med["key_fused"], med["nonkey_fused"]
    key3 = med["key"] + med["head_after_key"]
    nonkey3 = med["nonkey"] + med["head_after_nonkey"]
    mean = {m: float(np.mean(v["inference"])) for m, v in modes.items()}
    total = {m: float(np.mean(v["total"])) for m, v in modes.items()}
    per_round = [n / k for n, k in zip(paths["cpu"]["nonkey_fused"], paths["cpu"]["key_fused"])]
    q1, q2, q3 = np.percentile(per_round, [25, 50, 75])
    ratios = {
        "nonkey_vs_key_path": nonkey_path / key_path,
        "nonkey_vs_key_path_per_round": {"median": float(q2), "q1": float(q1), "q3": float(q3)},
        "nonkey_vs_key_path_wall": wall["nonkey_fused"] / wall["key_fused"],
        "nonkey_vs_key_path_3graphs": nonkey3 / key3,
        "video_vs_image_inference": mean["video"] / mean["image"],
        "video_vs_image_total": total["video"] / total["image"],
        "yolact_vs_vis_image": med["yolact"] / mean["image"],
        "yolact_vs_vis_video": med["yolact"] / mean["video"],
    }
    command = args.command or "python bench/vis_speed.py " + " ".join(sys.argv[1:])
    data = {
        "command": command,
        "environment": env,
        "settings": {
            "input": list(SIZE),
            "yolact_input": YOLACT_SIZE,
            "runs": args.runs,
            "frames": args.frames,
            "yolact_runs": args.yolact_runs,
            "ort_threads": 1,
            "weights": "random (seed 0)",
            "primary_measure": "thread CPU ms (time.thread_time)",
        },  # fmt: skip
        "macs": models["macs"],
        "params": models["params"],
        "nonkey_propagate": models["nonkey_propagate"],
        "paths_cpu_ms": {k: summarize(v) for k, v in paths["cpu"].items()},
        "paths_wall_ms": {k: summarize(v) for k, v in paths["wall"].items()},
        "key_path_ms": key_path,
        "nonkey_path_ms": nonkey_path,
        "key_path_3graphs_ms": key3,
        "nonkey_path_3graphs_ms": nonkey3,
        "modes": {
            m: {
                "inference_cpu_ms": summarize(v["inference"]),
                "total_cpu_ms": summarize(v["total"]),
                "inference_wall_ms": summarize(v["inference_wall"]),
                "key_ratio": float(np.mean(v["key"])),
            }
            for m, v in modes.items()
        },
        "ratios": ratios,
        "targets": {"video_vs_image": 0.55, "nonkey_vs_key": 0.4, "yolact_vs_vis": 10.0},
        "notes": list(args.note),
    }
    md = render(data, med, wall, mean, total)
    for k in ("json", "md"):
        print("wrote", write_results("vis_speed", data, md, args.out_dir)[k])
    print(md)
    return 0


def render(
    data: Dict[str, Any],
    med: Dict[str, float],
    wall: Dict[str, float],
    mean: Dict[str, float],
    total: Dict[str, float],
) -> str:
    """bench/vis_speed.md."""
    env, r, macs = data["environment"], data["ratios"], data["macs"]

    def ok(value: float, target: float, below: bool = True) -> str:
        return "yes" if (value <= target if below else value >= target) else "**no**"

    def gmac(key: str) -> str:
        return "%.3f" % (macs[key] / 1e9)

    wall_modes = {m: data["modes"][m]["inference_wall_ms"]["mean"] for m in ("image", "video")}
    rows = [
        ["VIS small key path (key graph, head fused in)", "288x480",
         "%.2f" % data["key_path_ms"],
         "as 2 graphs: key %.2f + head %.2f = %.2f" % (
             med["key"], med["head_after_key"], data["key_path_3graphs_ms"]),
         "%.2f" % wall["key_fused"], gmac("vis_key_path")],
        ["VIS small non-key path (non-key graph, head fused in)", "288x480",
         "%.2f" % data["nonkey_path_ms"],
         "as 2 graphs: non-key %.2f + head %.2f = %.2f" % (
             med["nonkey"], med["head_after_nonkey"], data["nonkey_path_3graphs_ms"]),
         "%.2f" % wall["nonkey_fused"], gmac("vis_nonkey_path")],
        ["VIS small image mode (every frame a keyframe), mean per frame", "288x480",
         "%.2f" % mean["image"], "with pre/post + tracker %.2f" % total["image"],
         "%.2f" % wall_modes["image"], ""],
        ["VIS small video mode (K = 5), mean per frame", "288x480", "%.2f" % mean["video"],
         "with pre/post + tracker %.2f" % total["video"], "%.2f" % wall_modes["video"], ""],
        ["YolactEdge-MobileNetV2-class (image mode)", "550x550", "%.1f" % med["yolact"], "",
         "%.1f" % wall["yolact"], gmac("yolact")],
    ]  # fmt: skip
    targets = [
        ["non-key path / key path", "%.3f" % r["nonkey_vs_key_path"], "<= 0.40",
         ok(r["nonkey_vs_key_path"], 0.4)],
        ["non-key path / key path, per round (the two calls side by side): median [IQR]",
         "%.3f [%.3f, %.3f]" % tuple(r["nonkey_vs_key_path_per_round"][k]
                                     for k in ("median", "q1", "q3")),
         "(<= 0.40)", ok(r["nonkey_vs_key_path_per_round"]["median"], 0.4)],
        ["non-key path / key path, head as its own graph", "%.3f"
         % r["nonkey_vs_key_path_3graphs"], "(<= 0.40)",
         ok(r["nonkey_vs_key_path_3graphs"], 0.4)],
        ["video mode / image mode (graphs)", "%.3f" % r["video_vs_image_inference"], "<= 0.55",
         ok(r["video_vs_image_inference"], 0.55)],
        ["video mode / image mode (whole frame)", "%.3f" % r["video_vs_image_total"],
         "(<= 0.55)", ok(r["video_vs_image_total"], 0.55)],
        ["YolactEdge-class / VIS image mode", "%.1fx" % r["yolact_vs_vis_image"], ">= 10x",
         ok(r["yolact_vs_vis_image"], 10.0, below=False)],
        ["YolactEdge-class / VIS video mode", "%.1fx" % r["yolact_vs_vis_video"], ">= 10x",
         ok(r["yolact_vs_vis_video"], 10.0, below=False)],
    ]  # fmt: skip
    s = data["settings"]
    return "\n".join([
        "# VIS speed: key / non-key paths, image vs video mode, YolactEdge-class model",
        "",
        "Command: `%s` (the background training jobs paused while timing)  " % data["command"],
        "Machine: %s (lscpu model name), %s cores, load average %.2f at start / %.2f at end "
        "(other jobs shared the cores); ONNX Runtime %s, 1 intra-op + 1 inter-op thread, "
        "batch 1; %s UTC, git %s" % (
            env["lscpu_model_name"], env["cpu_count"], env["load_avg_1m"],
            env["load_avg_1m_end"], env["onnxruntime"], env["time_utc"], env["git"]),
        "",
        "**Random weights (seeded)**: speed only; weights do not change the work of these "
        "graphs (the trained model's accuracy is in bench/vis_eval.md). **ms = thread CPU "
        "time** of the calls (`time.thread_time`; ORT with one intra-op thread computes on the "
        "calling thread), which a shared machine disturbs far less than wall time; wall ms "
        "beside it. Paths: median of %d round-robin rounds; modes: mean over %d frames each, "
        "alternating frame by frame; YolactEdge-class: median of %d calls in the same rounds. "
        "Video mode = the keyframe policy at K = 5 (interval only)." % (
            s["runs"], s["frames"], s["yolact_runs"]),
        "",
        markdown_table(rows, ["what", "input", "CPU ms", "parts / note", "wall ms", "GMAC"]),
        "",
        markdown_table(targets, ["ratio (CPU time)", "measured", "target", "met"]),
        "",
        "Non-key / key path by wall time: %.3f; by MACs: %.3f. The head (protonet at "
        "stride 4, masks of the top-K queries) runs on every frame and is %.0f %% of the key "
        "path as a graph of its own; the non-key graph is the partial backbone, flow, warp, "
        "fuse and the non-key decoder (%s). With K = 5 the video / image ratio is 0.2 + 0.8 x "
        "(non-key / key path)." % (
            r["nonkey_vs_key_path_wall"], macs["vis_ratio"],
            100.0 * med["head_after_key"] / data["key_path_3graphs_ms"],
            "one layer over the keyframe's propagated queries" if data.get("nonkey_propagate")
            else "query selection over all tokens and one layer"),
        "",
        *[line + "\n" for line in data.get("notes", [])],
        "MMAC by module: %s." % "; ".join(
            "%s graph: %s" % (g, ", ".join("%s %.0f" % (k, v / 1e6) for k, v in sorted(
                macs["vis_by_module"][g].items(), key=lambda kv: -kv[1])))
            for g in ("key", "nonkey", "head")),
        "",
        "YolactEdge-class model (bench/yolactedge_model.py): MobileNetV2 + FPN (P3-P7, 256 ch) + "
        "protonet (32 prototypes at 138x138) + shared prediction head (3 anchors x 81 classes, "
        "boxes, coefficients) + masks of the top 100 anchors; no NMS, no semantic head; its own "
        "video mode (partial backbone + flow on non-keyframes) is not modelled, so it is timed "
        "in image mode. Params: VIS small %.2f M, YolactEdge-class %.2f M." % (
            data["params"]["vis_small"] / 1e6, data["params"]["yolact"] / 1e6),
    ]) + "\n"  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
