"""Soak test: the perception nodes under 100 Hz camera input for 10 minutes.

    python bench/soak.py [--minutes 10] [--rate 100] [--threads 1] [--name soak] \
        [--nodes lane_node detection_node vis_node]

The same tool measures the node frame rates of issue 14 (the VIS node alone, then all three
nodes sharing the 2 cores, on a 15 Hz 640x480 replay)::

    python bench/soak.py --nodes vis_node --rate 15 --minutes 1 --bin-s 20 --name vis_fps_alone
    python bench/soak.py --nodes lane_node detection_node vis_node --rate 15 --minutes 1 \
        --bin-s 20 --name vis_fps_three

What runs (as ``config/cpu.yaml`` deploys them, minus the lifecycle manager):

* a publisher process (this file, ``--publisher``) sends 640x480 ``rgb8`` frames rendered by
  ``carla_bridge``'s synthetic camera (a loop of ``--clip`` frames, rendered before the clock
  starts) on ``/soak/image`` at ``--rate`` Hz, each stamped with the time it is sent, best-effort
  as a camera driver does;
* ``lane_node`` and ``detection_node`` by default, or the ``--nodes`` chosen (``vis_node`` too)
  (``python -m edge_perception.ros.<node> --autostart``), the
  bundled models in ``models/``, ONNX Runtime, ``threads`` and the other node parameters from
  ``config/cpu.yaml``, default (best-effort, keep-latest) input QoS;
* this process subscribes to both nodes' ``~/timing`` (``FrameTiming``: stage times, node-side
  end-to-end latency = publish time of the results - image stamp, frames dropped since the last
  message) and samples each process's RSS once a second.

Per minute and node: output rate (``~/timing`` messages per second), processing capacity (1 / mean
per-frame processing time = preprocess + inference + postprocess, from the same messages, so it is
measured under the same load), frames dropped (the nodes keep only the newest frame: at 100 Hz
input most frames are superseded while the worker is busy), latency p50 / p99 and RSS. Pass
criteria (issue 12): RSS growth of each node < 5 % between the end of minute 1 and the end of the
last minute (median of each minute's last 5 one-second samples: the first seconds are the models'
warm-up); output rate within 5 % of capacity over the run (of the input rate when the input is
slower than the capacity); no queue growth (latency p99 of the last minute at most twice minute
1's: a queue in front of a node that processes ~15 of 100 frames/s would add ~5.7 s of delay per
second of running, so a factor of 2 is far below what a queue gives and wide enough for the load
swings of a shared machine; and every frame a node takes is processed or counted as dropped:
processed + dropped <= sent, the rest lost on the best-effort link). Before the nodes run, each
pipeline is timed in-process (bare: the same pipeline object, no ROS) for comparison.

Network rule: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, a random ``ROS_DOMAIN_ID`` and the
project's loopback Fast DDS profile are set here for every process (``runner.ros_environment``).
Results: ``bench/results/<name>.{json,md}`` (default ``soak``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from common import environment, markdown_table, summarize, write_results  # noqa: E402

TOPIC = "/soak/image"
COLUMNS = ["output Hz", "capacity Hz", "processing ms", "gap ms p50", "gap ms mean", "dropped",
           "latency p50 ms", "latency p99 ms", "RSS MiB", "load"]  # fmt: skip
ALL_NODES: Dict[str, str] = {
    "lane_node": "edge_perception.ros.lane_node",
    "detection_node": "edge_perception.ros.detection_node",
    "vis_node": "edge_perception.ros.vis_node",
}
NODES: Dict[str, str] = {k: ALL_NODES[k] for k in ("lane_node", "detection_node")}


def node_parameters(name: str, threads: int) -> Dict[str, Any]:
    """The node's parameters in ``config/cpu.yaml`` with the launch arguments' defaults
    substituted, bundled paths made absolute, input on :data:`TOPIC`, ``threads`` as given."""
    import yaml

    with open(os.path.join(ROOT, "config", "cpu.yaml"), encoding="utf-8") as fh:
        launch = yaml.safe_load(fh)["launch"]
    defaults = {k: str(v["default"]) for k, v in launch["arguments"].items()}
    node = next(n for n in launch["nodes"] if n["name"] == name)
    params: Dict[str, Any] = {}
    for key, value in node["parameters"].items():
        if isinstance(value, str) and value.startswith("$(var "):
            value = defaults[value[6:-1].strip()]
        if isinstance(value, str) and value.startswith(("models/", "config/")):
            value = os.path.join(ROOT, value)
        params[key] = value
    params["input_topic"] = TOPIC
    params["threads"] = threads
    return params


def ros_arg(value: Any) -> str:
    """A parameter value as ``-p name:=value`` takes it (YAML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def render_clip(n: int, width: int, height: int) -> List[np.ndarray]:
    """``n`` RGB frames of the synthetic camera (urban scenario, seed 0)."""
    from carla_bridge.scenario import ScenarioConfig
    from carla_bridge.synthetic import SyntheticBackend

    cfg = ScenarioConfig(frames=n, seed=0).replace(camera={"width": width, "height": height})
    with SyntheticBackend().open(cfg) as backend:
        return [np.ascontiguousarray(f.image) for f in backend.frames()]


def publisher(
    rate: float, clip: int, width: int, height: int, ready_file: str, subscribers: int = 1
) -> int:
    """Once ``subscribers`` subscriptions are matched, publish the clip in a loop at ``rate`` Hz
    until SIGTERM / SIGINT; print the counts."""
    import rclpy
    from edge_perception.ros.convert import array_to_image, make_header
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    frames = render_clip(clip, width, height)
    rclpy.init()
    node = Node("soak_camera")
    pub = node.create_publisher(Image, TOPIC, qos_profile_sensor_data)
    msgs = [array_to_image(f, "rgb8", make_header(0, "camera")) for f in frames]
    stop: List[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    # frames published before DDS has matched the nodes' subscriptions are lost, not dropped:
    # the clock (and the count) starts once every node is matched
    deadline = time.monotonic() + 60.0
    while pub.get_subscription_count() < subscribers and not stop:
        if time.monotonic() > deadline:
            print(json.dumps({"error": "subscribers not matched in 60 s"}), flush=True)
            return 1
        time.sleep(0.05)
    with open(ready_file, "w", encoding="utf-8") as fh:
        fh.write("ready\n")
    period = 1.0 / rate
    sent = late = 0
    t0 = next_t = time.monotonic()
    while not stop:
        now = time.monotonic()
        if now < next_t:
            time.sleep(next_t - now)
        elif now - next_t > period:  # more than a period behind: skip, do not burst
            late += int((now - next_t) / period)
            next_t += period * int((now - next_t) / period)
        msg = msgs[sent % len(msgs)]
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
        sent += 1
        next_t += period
    elapsed = time.monotonic() - t0
    print(json.dumps({"sent": sent, "skipped_late": late, "seconds": elapsed}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def bare_vis(params: Dict[str, Any], frames: List[np.ndarray], rate: float) -> Dict:
    """The VIS node's pipeline (node defaults: keyframe policy, tracker) timed in this process
    over the clip at ``rate`` Hz stamps, twice round: mean per frame, video mode as deployed."""
    from edge_perception.backends.factory import create_backend
    from edge_perception.config import VisNodeConfig
    from edge_perception.runtime.vis import VISPipeline, sibling_paths

    cfg = VisNodeConfig()
    threads = int(params["threads"])
    b = {
        g: create_backend("onnxruntime", p, intra_op_threads=threads)
        for g, p in sibling_paths(str(params["model"])).items()
    }
    pipe = VISPipeline(
        b["key"], b["nonkey"], b["head"], score_threshold=cfg.score_threshold,
        keyframes=cfg.keyframe_config(), tracker=cfg.tracker_config(),
    )  # fmt: skip
    pipe.warmup(1)
    full, infer, keys = [], [], []
    for i in range(2 * len(frames)):
        t0 = time.perf_counter()
        out = pipe.process(frames[i % len(frames)], i / rate)
        full.append((time.perf_counter() - t0) * 1e3)
        infer.append(out.times.inference_ms)
        keys.append(bool(out.keyframe))
    pipe.close()
    return {
        "pipeline_ms": summarize(full),
        "inference_ms": summarize(infer),
        "key_ratio": round(float(np.mean(keys)), 3),
    }


def bare_capacity(params: Dict[str, Any], kind: str, frame: np.ndarray, runs: int) -> Dict:
    """The node's pipeline timed in this process (no ROS), one frame at a time."""
    from ros_overhead import bare_inference

    out = bare_inference(str(params["model"]), int(params["threads"]), frame, runs, True, kind)
    return {"pipeline_ms": out["pipeline_ms"], "inference_ms": out["inference_ms"]}


def start_processes(args: argparse.Namespace, env: Dict[str, str], logs: str) -> Dict[str, Any]:
    procs: Dict[str, Any] = {}
    for name, module in NODES.items():
        cmd = [sys.executable, "-m", module, "--autostart", "--ros-args"]
        for key, value in node_parameters(name, args.threads).items():
            cmd += ["-p", f"{key}:={ros_arg(value)}"]
        log = open(os.path.join(logs, name + ".log"), "wb")  # noqa: SIM115 - closed in stop
        procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    return procs


def stop(proc: Any, timeout: float = 15.0) -> Optional[int]:
    """SIGINT (the nodes' clean shutdown), then SIGKILL after ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Start everything, record ``args.minutes`` minutes, stop everything."""
    import psutil
    import rclpy
    from edge_perception.ros.runner import random_domain_id, ros_environment
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from edge_perception_msgs.msg import FrameTiming

    env = ros_environment(domain_id=random_domain_id(), discovery_range="LOCALHOST")
    os.environ.update(env)  # this process's own DDS participant follows the same rule
    logs = tempfile.mkdtemp(prefix="soak_")
    procs = start_processes(args, env, logs)
    ready = os.path.join(logs, "publisher.ready")
    pub_cmd = [sys.executable, os.path.abspath(__file__), "--publisher", "--rate", str(args.rate),
               "--clip", str(args.clip), "--width", str(args.width),
               "--height", str(args.height), "--ready-file", ready,
               "--subscribers", str(len(NODES))]  # fmt: skip
    rclpy.init()
    node = Node("soak_monitor")
    records: Dict[str, List[Tuple[float, ...]]] = {n: [] for n in NODES}

    def on_timing(name: str) -> Any:
        def cb(m: FrameTiming) -> None:
            proc_ms = m.preprocess_ms + m.inference_ms + m.postprocess_ms
            records[name].append((time.monotonic(), proc_ms, m.end_to_end_ms, m.frames_dropped))

        return cb

    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    for name in NODES:
        node.create_subscription(FrameTiming, f"/{name}/timing", on_timing(name), qos)
    rss: Dict[str, List[Tuple[float, float]]] = {n: [] for n in [*NODES, "publisher"]}
    load: List[Tuple[float, float]] = []
    cpu0: Dict[str, float] = {}
    pub_proc = None
    try:
        deadline = time.monotonic() + 180.0
        while node.count_subscribers(TOPIC) < len(NODES) or any(
            node.count_publishers(f"/{n}/timing") == 0 for n in NODES
        ):
            rclpy.spin_once(node, timeout_sec=0.2)
            dead = [n for n, p in procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"nodes did not come up ({dead or 'timeout'}); logs in {logs}")
        pub_proc = subprocess.Popen(pub_cmd, env=env, stdout=subprocess.PIPE)
        procs_ps = {n: psutil.Process(p.pid) for n, p in procs.items()}
        while not os.path.exists(ready):
            rclpy.spin_once(node, timeout_sec=0.2)
            if pub_proc.poll() is not None:
                raise RuntimeError("the publisher exited before it was ready")
        procs_ps["publisher"] = psutil.Process(pub_proc.pid)
        for n in records:
            records[n].clear()  # warm-up frames of the first ready check do not count
        t_start = time.monotonic()
        cpu0 = {n: sum(p.cpu_times()[:2]) for n, p in procs_ps.items()}
        next_sample = t_start
        end = t_start + args.minutes * 60.0
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
            now = time.monotonic()
            if now >= next_sample:
                for n, p in procs_ps.items():
                    rss[n].append((now - t_start, p.memory_info().rss / 2**20))
                load.append((now - t_start, os.getloadavg()[0]))
                next_sample += 1.0
                dead = [n for n, p in procs.items() if p.poll() is not None]
                if dead or pub_proc.poll() is not None:
                    raise RuntimeError(f"a process died during the soak: {dead}; logs in {logs}")
        cpu_s = {n: round(sum(p.cpu_times()[:2]) - cpu0[n], 1) for n, p in procs_ps.items()}
    finally:
        counts: Dict[str, Any] = {}
        if pub_proc is not None:
            stop(pub_proc)
            out = pub_proc.stdout.read().decode().strip().splitlines() if pub_proc.stdout else []
            counts = json.loads(out[-1]) if out else {}
        exits = {n: stop(p) for n, p in procs.items()}
        node.destroy_node()
        rclpy.try_shutdown()
    return {
        "records": {n: [(t - t_start, *rest) for t, *rest in r] for n, r in records.items()},
        "rss": rss,
        "load": load,
        "publisher": counts,
        "exit_codes": exits,
        "cpu_s": cpu_s,
        "logs": logs,
        "domain_id": env["ROS_DOMAIN_ID"],
    }


def analyse(raw: Dict[str, Any], minutes: float, bin_s: float) -> Dict[str, Any]:
    """Per-bin (minute) figures and the pass / fail of each criterion, per node."""
    nbins = max(1, int(round(minutes * 60.0 / bin_s)))
    out: Dict[str, Any] = {}
    for name, recs in raw["records"].items():
        arr = np.array(recs, dtype=np.float64).reshape(-1, 4)
        rss = np.array(raw["rss"][name], dtype=np.float64).reshape(-1, 2)
        bins = []
        for b in range(nbins):
            lo, hi = b * bin_s, (b + 1) * bin_s
            sel = arr[(arr[:, 0] >= lo) & (arr[:, 0] < hi)]
            r = rss[(rss[:, 0] >= lo) & (rss[:, 0] < hi), 1]
            mean_proc = float(sel[:, 1].mean()) if len(sel) else float("nan")
            # per frame: time since the previous result minus this frame's processing, i.e. the
            # worker's time outside preprocess / inference / postprocess
            gap = np.diff(sel[:, 0]) * 1e3 - sel[1:, 1] if len(sel) > 1 else np.zeros(0)
            ld = [v for t, v in raw["load"] if lo <= t < hi]
            lat = summarize(sel[:, 2].tolist())
            bins.append({
                "minute": b + 1,
                "frames": int(len(sel)),
                "output_hz": round(len(sel) / bin_s, 2),
                "capacity_hz": round(1000.0 / mean_proc, 2),
                "processing_ms_mean": round(mean_proc, 2),
                "dropped": int(sel[:, 3].sum()),
                "latency_p50_ms": lat.get("p50"),
                "latency_p99_ms": lat.get("p99"),
                "latency_max_ms": lat.get("max"),
                # RSS at the end of the minute: median of its last 5 one-second samples
                "rss_mib": round(float(np.median(r[-5:])), 1) if len(r) else None,
                "gap_ms_p50": round(float(np.median(gap)), 2) if len(gap) else None,
                "gap_ms_mean": round(float(gap.mean()), 2) if len(gap) else None,
                "load_1m": round(float(np.mean(ld)), 2) if ld else None,
            })  # fmt: skip
        total_s = nbins * bin_s
        processed = int(len(arr))
        dropped = int(arr[:, 3].sum())
        capacity = 1000.0 / float(arr[:, 1].mean())
        rate = processed / total_s
        first, last = bins[0], bins[-1]
        growth = 100.0 * (last["rss_mib"] - first["rss_mib"]) / first["rss_mib"]
        p99_ratio = last["latency_p99_ms"] / first["latency_p99_ms"]
        pub = raw.get("publisher") or {}
        sent_hz = pub.get("sent", 0) / max(pub.get("seconds", 0.0), 1e-9)
        # a node fed slower than it can process must keep up with its input; a saturated one
        # must run at its capacity
        saturated = sent_hz >= capacity
        target = capacity if saturated else sent_hz
        out[name] = {
            "bins": bins,
            "input_hz": round(sent_hz, 2),
            "saturated": saturated,
            "processed": processed,
            "dropped": dropped,
            "output_hz": round(rate, 2),
            "capacity_hz": round(capacity, 2),
            "output_over_capacity": round(rate / capacity, 4),
            "latency_ms": summarize(arr[:, 2].tolist()),
            "rss_growth_pct": round(growth, 2),
            "last_over_first_p99": round(p99_ratio, 3),
            "cpu_s": raw["cpu_s"].get(name),
            "pass": {
                "rss_growth_lt_5pct": abs(growth) < 5.0,
                "output_within_5pct_of_capacity": abs(rate / target - 1.0) <= 0.05,
                "no_queue_growth": p99_ratio <= 2.0,
            },
        }
    return out


def report(args: argparse.Namespace, data: Dict[str, Any]) -> str:
    env, pub = data["environment"], data["publisher"]
    sent = pub.get("sent", 0)
    lines = [
        f"# Soak: {' + '.join(NODES)}, {args.minutes:g} min at {args.rate:g} Hz",
        "",
        f"Input: {args.width}x{args.height} rgb8 synthetic-camera frames ({args.clip}-frame "
        f"loop) from a publisher process, best-effort; {sent} frames sent in "
        f"{pub.get('seconds', 0):.1f} s ({sent / max(pub.get('seconds', 1), 1e-9):.2f} Hz, "
        f"{pub.get('skipped_late', 0)} slots skipped late). Nodes: bundled models, ONNX "
        f"Runtime, {args.threads} thread each, parameters of config/cpu.yaml. "
        f"Background training paused: {data['training_paused']}.",
        f"Machine: {env['cpu']} ({env['cpu_count']} cores, load {env['load_avg_1m']} at the "
        f"end), Python {env['python']}, onnxruntime {env['onnxruntime']}, {env['rmw']}, git "
        f"{env['git']}, {env['time_utc']}. LOCALHOST discovery, ROS_DOMAIN_ID "
        f"{data['domain_id']}, the project's Fast DDS profile.",
        "",
    ]
    unit = "minute" if args.bin_s == 60 else f"{args.bin_s:g} s bin"
    for name, res in data["nodes"].items():
        bare = data["bare"][name]["pipeline_ms"]
        rows = [
            [b["minute"], b["output_hz"], b["capacity_hz"], b["processing_ms_mean"],
             b["gap_ms_p50"], b["gap_ms_mean"], b["dropped"], b["latency_p50_ms"],
             b["latency_p99_ms"], b["rss_mib"], b["load_1m"]]
            for b in res["bins"]
        ]  # fmt: skip
        ok = res["pass"]
        lines += [
            f"## {name}",
            "",
            markdown_table(rows, [unit, *COLUMNS]),
            "",
            f"- RSS growth {unit} 1 -> {len(res['bins'])}: **{res['rss_growth_pct']:+.2f} %** "
            f"({'pass' if ok['rss_growth_lt_5pct'] else 'FAIL'}: < 5 %)",
            f"- output {res['output_hz']} Hz vs capacity {res['capacity_hz']} Hz: "
            f"**{100 * res['output_over_capacity']:.1f} %** "
            + (
                f"({'pass' if ok['output_within_5pct_of_capacity'] else 'FAIL'}: within 5 %)"
                if res["saturated"]
                else f"(input {res['input_hz']} Hz, below capacity: output "
                f"**{100 * res['output_hz'] / max(res['input_hz'], 1e-9):.1f} %** of the input, "
                f"{'pass' if ok['output_within_5pct_of_capacity'] else 'FAIL'}: within 5 %)"
            )
            + "; bare "
            f"pipeline in-process before the soak: p50 {bare['p50']} ms, mean {bare['mean']} "
            f"ms ({1000 / bare['mean']:.1f} Hz alone on the machine"
            + (
                f"; keyframes {data['bare'][name]['key_ratio']:.2f} of the frames)"
                if "key_ratio" in data["bare"][name]
                else ")"
            ),
            f"- {res['processed']} frames processed, {res['dropped']} dropped as superseded "
            f"(processed + dropped = {res['processed'] + res['dropped']} of {sent} sent); "
            f"latency p99 last / first {unit} {res['last_over_first_p99']} "
            f"({'pass' if ok['no_queue_growth'] else 'FAIL'}: no queue growth, <= 2); "
            f"whole run p50 {res['latency_ms']['p50']} ms, p99 {res['latency_ms']['p99']} ms, "
            f"max {res['latency_ms']['max']} ms; CPU {res['cpu_s']} s",
            "",
        ]
    lines += [
        "Capacity = 1 / mean(preprocess + inference + postprocess) from the node's own "
        "~/timing messages in the same minute (same load as the output rate); gap = per frame, "
        "the time since the node's previous result minus this frame's processing (the worker's "
        "time outside its three measured stages: frame hand-off, stamp check, ~/timing publish, "
        "waiting for the GIL or a core); RSS at the end of each minute; load = 1-minute load "
        "average of the machine (2 cores, shared with other work); latency = the "
        "node's end-to-end (results published - image stamp, same host clock), so it includes "
        "the wait for the worker. Exit codes at SIGINT: "
        + ", ".join(f"{k} {v}" for k, v in data["exit_codes"].items())
        + ".",
        "",
        "Command: `python bench/soak.py " + shlex.join(sys.argv[1:]) + "`",
    ]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="soak duration (default 10)")
    ap.add_argument("--rate", type=float, default=100.0, help="camera rate, Hz (default 100)")
    ap.add_argument("--threads", type=int, default=1, help="per node (config/cpu.yaml: 1)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--clip", type=int, default=30, help="frames rendered and looped")
    ap.add_argument("--bin-s", type=float, default=60.0, help="table rows: seconds per row")
    ap.add_argument("--training-paused", default="unknown", help="recorded in the report")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    ap.add_argument("--name", default="soak")
    ap.add_argument(
        "--nodes", nargs="+", choices=list(ALL_NODES), default=list(NODES),
        help="nodes to run (default: lane_node detection_node)",
    )  # fmt: skip
    ap.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ready-file", default="", help=argparse.SUPPRESS)
    ap.add_argument("--subscribers", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.publisher:
        return publisher(
            args.rate, args.clip, args.width, args.height, args.ready_file, args.subscribers
        )
    NODES.clear()
    NODES.update({k: ALL_NODES[k] for k in args.nodes})
    clip = render_clip(args.clip, args.width, args.height)
    bare = {
        name: bare_vis(node_parameters(name, args.threads), clip, args.rate)
        if name == "vis_node"
        else bare_capacity(node_parameters(name, args.threads), name.split("_")[0], clip[0], 40)
        for name in NODES
    }
    raw = run(args)
    data = {
        "benchmark": "soak",
        "minutes": args.minutes,
        "rate_hz": args.rate,
        "threads": args.threads,
        "camera": [args.height, args.width],
        "training_paused": args.training_paused,
        "publisher": raw["publisher"],
        "exit_codes": raw["exit_codes"],
        "domain_id": raw["domain_id"],
        "bare": bare,
        "nodes": analyse(raw, args.minutes, args.bin_s),
        "environment": environment(),
    }
    md = report(args, data)
    paths = write_results(args.name, data, md, args.out)
    print(md)
    print(f"wrote {paths['json']} and {paths['md']} (node logs in {raw['logs']})")
    ok = all(all(r["pass"].values()) for r in data["nodes"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
