"""``edge-perception demo``: the whole stack on this machine, over real ROS 2, in one command.

It runs ``config/cpu.yaml`` through the launch runner (:mod:`edge_perception.ros.runner`): the
synthetic scenario publisher (carla_bridge) -> lane node + detection node (ONNX Runtime, the
bundled ``models/lane_small.onnx`` and ``models/det_small.onnx``) -> the closed-loop evaluator,
with the lifecycle manager bringing the nodes up. It stops after ``--frames`` frames went through
both perception nodes (or ``--seconds``), then leaves in ``--out`` (default ``out/demo/``):

- ``strip.jpg``: rows of lane overlay | detection overlay for a few frames (``--video`` adds
  ``demo.mp4`` of every kept frame);
- ``report.md`` + ``report.json``: FPS, latency percentiles, per-node timing, lane mIoU and box
  mAP against the scenario's ground truth (the evaluator's full report is
  ``evaluation.md``/``.json``), the models and the command;
- ``logs/``: every process's output.

A missing bundled model stops the demo before anything starts, naming the file and the fix.
The video instance segmentation node (``vis_node``) runs when its model
``models/vis_small_key.onnx`` (``--vis-model``) exists (bundled); where it is missing the node is
not started and the demo says so in one line (and in ``report.md``), with the commands that make
the model.
Needs the built workspace (``scripts/setup.sh``; ``scripts/demo.sh`` does it all).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

BUNDLED = {"lane_model": "models/lane_small.onnx", "det_model": "models/det_small.onnx"}
HOW_TO_GET = {
    "lane_model": "restore it from git (git checkout -- models/) or train and export it: "
    "edge-perception lane-train ... then edge-perception lane-export ... (output "
    "models/lane_small.onnx), or pass --lane-model PATH",
    "det_model": "restore it from git (git checkout -- models/) or train and export it: "
    "edge-perception det-train ... then edge-perception det-export ... --out "
    "models/det_small.onnx, or pass --det-model PATH",
}


class DemoError(RuntimeError):
    """The demo cannot run or did not complete; the message says why and what to do.

    ``cannot_start``: nothing was started (bad arguments, missing input): exit status 2.
    """

    def __init__(self, message: str, cannot_start: bool = False) -> None:
        super().__init__(message)
        self.cannot_start = cannot_start


def repo_root() -> str:
    """Folder holding ``config/`` and ``models/`` (the checkout, or the installed share)."""
    from edge_perception.ros.launch_common import config_root, find_config

    return config_root(find_config("cpu.yaml"))


def check_models(models: Dict[str, str], root: str) -> Dict[str, str]:
    """Absolute paths of the models; DemoError naming every missing file and how to get it."""
    out: Dict[str, str] = {}
    missing: List[str] = []
    for key, path in models.items():
        full = path if os.path.isabs(path) else os.path.join(root, path)
        if not os.path.isfile(full):
            missing.append("  %s: %s is missing; %s" % (key, full, HOW_TO_GET.get(key, "")))
        out[key] = full
    if missing:
        raise DemoError(
            "the demo needs the bundled models:\n" + "\n".join(missing), cannot_start=True
        )
    return out


def write_scenario(
    root: str, out_dir: str, seed: int, camera: Optional[Tuple[int, int]] = None
) -> str:
    """A copy of the default scenario with the demo's seed (and camera ``(width, height)`` when
    given), written to ``out_dir``."""
    with open(os.path.join(root, "config", "scenarios", "default.yaml"), encoding="utf-8") as f:
        scenario = yaml.safe_load(f)
    scenario["seed"] = int(seed)
    if camera is not None:
        scenario["camera"]["width"], scenario["camera"]["height"] = int(camera[0]), int(camera[1])
    path = os.path.join(out_dir, "scenario.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(scenario, f, sort_keys=False)
    return path


def rviz_topics(name: str = "edge_perception.rviz") -> Dict[str, str]:
    """Topic -> display class of every display in the project's RViz config that names a topic."""
    from edge_perception.ros.launch_common import find_config

    with open(find_config(name), encoding="utf-8") as f:
        rviz = yaml.safe_load(f)
    out: Dict[str, str] = {}
    for display in rviz["Visualization Manager"]["Displays"]:
        topic = (display.get("Topic") or {}).get("Value")
        if topic:
            out[topic] = display["Class"]
    return out


def started_topics(plan: Any) -> List[str]:
    """The RViz config's topics, less those of nodes the plan does not start (``/<node>/...``)."""
    off = {n.name for n in plan.nodes if not n.enabled}
    return [t for t in rviz_topics() if t.split("/")[1] not in off]


def make_strip(
    lane: Dict[int, np.ndarray],
    det: Dict[int, np.ndarray],
    rows: int,
    width: int = 480,
    vis: Optional[Dict[int, np.ndarray]] = None,
) -> Optional[np.ndarray]:
    """RGB image: up to ``rows`` rows of [lane overlay | detection overlay], evenly spaced frames.

    Frames both nodes processed come first; when there are too few, the latest overlays of each
    node fill the rows. None when there is no overlay at all. ``vis`` (the VIS node's overlays,
    when it ran) adds a third column: the overlay of the same frame, else the latest before it.
    """
    import cv2

    common = sorted(set(lane) & set(det))
    pairs = [(lane[s], det[s]) for s in common]
    stamps: List[Optional[int]] = list(common)
    if len(pairs) < rows:
        extra = list(zip(list(lane.values())[::-1], list(det.values())[::-1]))
        pairs += extra[: rows - len(pairs)]
        stamps += [None] * (len(pairs) - len(stamps))
    if not pairs:
        return None
    idx = np.linspace(0, len(pairs) - 1, min(rows, len(pairs))).round().astype(int)

    def fit(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        return cv2.resize(img, (width, max(1, int(round(h * width / w)))))

    def vis_for(stamp: Optional[int]) -> Optional[np.ndarray]:
        if not vis:
            return None
        before = [s for s in vis if stamp is None or s <= stamp]
        return vis[max(before)] if before else vis[min(vis)]

    lines = []
    for i in sorted(set(idx.tolist())):
        panels = [fit(pairs[i][0]), fit(pairs[i][1])]
        third = vis_for(stamps[i])
        if third is not None:
            panels.append(fit(third))
        h = min(p.shape[0] for p in panels)
        row: List[np.ndarray] = []
        for p in panels:
            row += [p[:h], np.full((h, 4, 3), 255, np.uint8)]
        lines.append(np.concatenate(row[:-1], axis=1))
    return np.concatenate(lines, axis=0)


def write_video(path: str, lane: Dict[int, np.ndarray], det: Dict[int, np.ndarray]) -> int:
    """``demo.mp4`` (mp4v) of the frames both nodes processed; returns the frame count."""
    import cv2

    frames = [make_strip({s: lane[s]}, {s: det[s]}, 1) for s in sorted(set(lane) & set(det))]
    frames = [f for f in frames if f is not None]
    if not frames:
        return 0
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(cv2.resize(f, (w, h)), cv2.COLOR_RGB2BGR))
    writer.release()
    return len(frames)


def _log_errors(out: str) -> str:
    """The last ERROR line of each process log, to show with a failure."""
    found = []
    folder = os.path.join(out, "logs")
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
            errors = [line.strip() for line in f if "[ERROR]" in line]
        if errors:
            found.append("\n  %s: %s" % (name, errors[-1]))
    return "".join(found)


def _sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def _num(v: Any, fmt: str = "%.1f") -> str:
    return fmt % v if isinstance(v, (int, float)) else "n/a"


def summarize(evaluation: Dict[str, Any], capture: Dict[str, Any]) -> Dict[str, Any]:
    """The demo's headline numbers from the evaluator's summary and the capture counts."""
    lat = evaluation.get("latency_ms", {})
    fps = evaluation.get("fps", {})
    lane = evaluation.get("lane") or {}
    det = evaluation.get("detection") or {}
    inst = evaluation.get("instance") or {}
    timing = evaluation.get("timing", {})
    return {
        "frames_through_both_nodes": capture["frames"],
        "images_published_seen": evaluation.get("images_seen"),
        "fps": fps,
        "latency_ms": {k: {q: v.get(q) for q in ("p50", "p95", "max")} for k, v in lat.items()},
        "inference_ms": {
            n: {q: t.get("inference_ms", {}).get(q) for q in ("mean", "p95")}
            for n, t in timing.items()
        },
        "lane_miou": lane.get("miou"),
        "lane_frames": lane.get("frames"),
        "det_map": det.get("map"),
        "det_map50": det.get("map50"),
        "det_frames": det.get("frames"),
        "mask_map": inst.get("map"),
        "mask_map50": inst.get("map50"),
        "mask_frames": inst.get("frames"),
    }


def report_markdown(summary: Dict[str, Any], meta: Dict[str, Any]) -> str:
    """``report.md`` text."""
    lines = [
        "# edge_perception demo",
        "",
        "Command: `%s`  " % meta["command"],
        "Machine: %s, %s CPU cores, Python %s  " % (meta["machine"], meta["cpus"], meta["python"]),
        "Backend: %s; camera %s at %s Hz; %d frames through both nodes in %.1f s" % (
            meta["backend"], meta.get("camera", "?"), meta.get("rate_hz", "?"),
            summary["frames_through_both_nodes"], meta["seconds"]),
    ]  # fmt: skip
    if meta.get("scenes"):
        lines[-1] += "  "
        lines.append("Scenes: %s" % meta["scenes"])
    lines += [
        "",
        "| model | file | sha256 | size |",
        "| --- | --- | --- | --- |",
    ]  # fmt: skip
    for key, m in meta["models"].items():
        lines.append("| %s | %s | %s | %.2f MB |" % (key, m["path"], m["sha256"], m["mb"]))
    lines += ["", "## Accuracy against the scenario's ground truth", ""]
    lines.append(
        "- lane mIoU: %s over %s frames"
        % (_num(summary["lane_miou"], "%.4f"), summary["lane_frames"])
    )
    lines.append(
        "- detection box mAP: %s (AP50 %s) over %s frames"
        % (_num(summary["det_map"], "%.4f"), _num(summary["det_map50"], "%.4f"),
           summary["det_frames"])
    )  # fmt: skip
    if summary.get("mask_frames"):
        lines.append(
            "- instance mask mAP (vis_node): %s (AP50 %s) over %s frames"
            % (_num(summary["mask_map"], "%.4f"), _num(summary["mask_map50"], "%.4f"),
               summary["mask_frames"])
        )  # fmt: skip
    lines += [
        "",
        "## Speed (this machine, this run)",
        "",
        "| stream | FPS | latency p50 ms | p95 ms | max ms |",
        "| --- | --- | --- | --- | --- |",
    ]
    for k, q in summary["latency_ms"].items():
        lines.append(
            "| %s | %s | %s | %s | %s |"
            % (k, _num(summary["fps"].get(k), "%.2f"), _num(q["p50"]), _num(q["p95"]),
               _num(q["max"]))
        )  # fmt: skip
    if summary["inference_ms"]:
        lines += ["", "| node | inference mean ms | p95 ms |", "| --- | --- | --- |"]
        for n, q in summary["inference_ms"].items():
            lines.append("| %s | %s | %s |" % (n, _num(q["mean"], "%.2f"), _num(q["p95"], "%.2f")))
    lines += [
        "",
        "Latency is the evaluator's arrival time minus the camera image stamp (one host clock).",
        "",
        "![%s](strip.jpg)" % meta.get("strip_caption", "lane overlay | detection overlay"),
        "",
        "Full evaluator report: [evaluation.md](evaluation.md); process logs in `logs/`.",
    ]
    for why in meta.get("not_started", {}).values():
        lines += ["", why]  # "<node> not started: <file> not found; <how to get it>"
    return "\n".join(lines) + "\n"


def _camera_size(text: str) -> Tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected WIDTHxHEIGHT, e.g. 640x480, got %r" % text
        ) from None
    if not (32 <= w <= 4096 and 32 <= h <= 4096):
        raise argparse.ArgumentTypeError("camera size %dx%d out of range 32..4096" % (w, h))
    return w, h


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edge-perception demo``."""
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument(
        "--frames", type=int, default=120, help="frames through both nodes (default 120)"
    )
    parser.add_argument("--seconds", type=float, default=120.0, help="stop after N s at most")
    parser.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    parser.add_argument("--rate", type=float, default=4.0, help="camera frame rate, Hz")
    parser.add_argument("--seed", type=int, default=0, help="scenario seed of the first clip")
    parser.add_argument(
        "--sequences",
        type=int,
        default=4,
        help="clips of the default scenario played in turn, seeds SEED, SEED+1, ... (default 4: "
        "one 30-frame clip is one scene, and its box AP50 ranges 0.47..0.75 from seed to seed)",
    )
    parser.add_argument(
        "--camera",
        type=_camera_size,
        default=None,
        metavar="WxH",
        help="camera resolution, e.g. 640x480 (default: the scenario's, 640x384)",
    )
    parser.add_argument(
        "--replay",
        default=None,
        metavar="DATASET",
        help="replay the val split of a dataset written by `carla-bridge generate` instead of "
        "rendering frames live (the renderer then costs no CPU beside the nodes)",
    )
    parser.add_argument("--strip", type=int, default=4, help="rows in strip.jpg")
    parser.add_argument("--video", action="store_true", help="also write demo.mp4")
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (random)")
    parser.add_argument(
        "--lane-model", default=BUNDLED["lane_model"], help="default: the bundled model"
    )
    parser.add_argument("--det-model", default=BUNDLED["det_model"], help="default: the bundled")
    parser.add_argument(
        "--vis-model",
        default="models/vis_small_key.onnx",
        help="VIS key graph (default: the bundled one); vis_node runs only when it exists",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Body of ``edge-perception demo`` (exit status: 0 done, 1 failed run, 2 cannot start)."""
    try:
        return _run(args)
    except DemoError as exc:
        print("edge-perception demo: %s" % exc, file=sys.stderr)
        return 2 if exc.cannot_start else 1


def _run(args: argparse.Namespace) -> int:
    import cv2

    from edge_perception.ros.launch_common import find_config, resolve
    from edge_perception.ros.runner import Runner, random_domain_id, ros_environment

    if args.frames < 1:
        raise DemoError("--frames must be >= 1", cannot_start=True)
    if args.sequences < 1:
        raise DemoError("--sequences must be >= 1", cannot_start=True)
    root = repo_root()
    models = check_models({"lane_model": args.lane_model, "det_model": args.det_model}, root)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    for stale in ("report.md", "report.json", "evaluation.json", "evaluation.md", "strip.jpg"):
        if os.path.exists(os.path.join(out, stale)):
            os.remove(os.path.join(out, stale))
    scenario_path = write_scenario(root, out, args.seed, args.camera)
    with open(scenario_path, encoding="utf-8") as f:
        scenario = yaml.safe_load(f)
    cam = scenario["camera"]
    overrides = {
        "lane_model": models["lane_model"],
        "det_model": models["det_model"],
        "vis_model": os.path.join(root, args.vis_model)
        if not os.path.isabs(args.vis_model)
        else args.vis_model,
        "scenario": scenario_path,
        "rate_hz": str(args.rate),
        "sequences": str(args.sequences),
        "enable_evaluator": "true",
        "output_dir": out,
    }
    if args.replay:
        if not os.path.isfile(os.path.join(args.replay, "manifest.json")):
            raise DemoError("%s is not a dataset (no manifest.json); write one with "
                            "`carla-bridge generate --out DIR`" % args.replay,
                            cannot_start=True)  # fmt: skip
        overrides.update(camera_source="dataset", dataset_dir=os.path.abspath(args.replay))
    plan = resolve(find_config("cpu.yaml"), overrides)
    for n in plan.skipped_nodes:  # vis_node while no VIS model is trained
        print("[demo] %s" % n.skipped, file=sys.stderr)
    if any(n.name == "vis_node" for n in plan.enabled_nodes):
        from edge_perception.runtime.vis import sibling_paths

        # the report names every model the run used: the VIS model's three graphs too
        for graph, path in sibling_paths(overrides["vis_model"]).items():
            if os.path.isfile(path):
                models["vis_%s" % graph] = path
    # The demo (unlike `edge-perception run`) keeps to this host, in a domain of its own.
    domain = args.domain_id if args.domain_id is not None else random_domain_id()
    env = ros_environment(domain, "LOCALHOST")
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = env["ROS_AUTOMATIC_DISCOVERY_RANGE"]
    os.environ["ROS_LOCALHOST_ONLY"] = env["ROS_LOCALHOST_ONLY"]
    runner = Runner(plan, env, log_dir=os.path.join(out, "logs"), grace_s=10.0)
    print("[demo] starting %s (ROS_DOMAIN_ID=%s); output in %s"
          % (", ".join(n.name for n in plan.enabled_nodes), env["ROS_DOMAIN_ID"], out),
          file=sys.stderr)  # fmt: skip

    def died() -> Optional[str]:
        dead = [n for n, p in runner.procs if p.poll() is not None]
        return ("process(es) exited early: %s (see %s/logs)" % (dead, out)) if dead else None

    from edge_perception.ros.demo_capture import capture

    runner.start()
    try:
        cap = capture(
            int(env["ROS_DOMAIN_ID"]),
            args.frames,
            args.seconds,
            abort=died,
            expect_topics=started_topics(plan),
            wait_evaluator=True,
        )
    finally:
        rc = runner.stop()
    eval_json = os.path.join(out, "evaluation.json")
    if cap.error:
        raise DemoError(
            "%s%s (logs in %s)" % (cap.error, _log_errors(out), os.path.join(out, "logs"))
        )
    if rc != 0:
        raise DemoError("a process failed (see %s/logs)" % out)
    if not os.path.isfile(eval_json):
        raise DemoError("the evaluator wrote no report (see %s/logs/evaluator.log)" % out)
    with open(eval_json, encoding="utf-8") as f:
        evaluation = json.load(f)
    strip = make_strip(cap.lane_overlays, cap.det_overlays, args.strip, vis=cap.vis_overlays)
    if strip is not None:
        cv2.imwrite(os.path.join(out, "strip.jpg"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    if args.video:
        write_video(os.path.join(out, "demo.mp4"), cap.lane_overlays, cap.det_overlays)
    counts = {"frames": cap.frames, "lane_frames": cap.lane_frames, "det_frames": cap.det_frames}
    summary = summarize(evaluation, counts)
    meta = {
        "command": " ".join(["edge-perception", "demo"] + sys.argv[2:])
        if len(sys.argv) > 1 and sys.argv[1] == "demo"
        else "edge-perception demo",
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "backend": next(
            n.parameters.get("backend", "?") for n in plan.nodes if n.name == "lane_node"
        ),
        "seconds": cap.seconds,
        "camera": "%dx%d" % (cam["width"], cam["height"])
        if not args.replay
        else "dataset %s" % os.path.abspath(args.replay),
        "rate_hz": args.rate,
        "scenes": None
        if args.replay
        else "seeds %d..%d of config/scenarios/default.yaml (%d clips of %d frames)"
        % (args.seed, args.seed + args.sequences - 1, args.sequences, int(scenario["frames"])),
        "models": {
            k: {"path": p, "sha256": _sha(p), "mb": os.path.getsize(p) / 1e6}
            for k, p in models.items()
        },
        "topics": cap.topics,
        "rviz_topics_missing": sorted(set(started_topics(plan)) - set(cap.topics)),
        "not_started": {n.name: n.skipped for n in plan.skipped_nodes},
        "capture": counts,
        "strip_caption": "lane overlay | detection overlay"
        + (" | VIS overlay (track colours)" if cap.vis_overlays else ""),
        "evaluator_progress": cap.evaluator,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with open(os.path.join(out, "report.json"), "w", encoding="utf-8") as f:
        json.dump({"summary": summary, "meta": meta}, f, indent=2, sort_keys=True)
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as f:
        f.write(report_markdown(summary, meta))
    if cap.frames < args.frames:
        print("[demo] only %d of %d frames in %.0f s (slow machine? raise --seconds)"
              % (cap.frames, args.frames, args.seconds), file=sys.stderr)  # fmt: skip
    print("[demo] wrote %s" % os.path.join(out, "report.md"), file=sys.stderr)
    return 0 if cap.frames >= 1 else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console entry, the same as ``edge-perception demo``."""
    parser = argparse.ArgumentParser(prog="edge-perception demo")
    register(parser)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
