"""Throughput and peak memory of an ONNX model on the CPU, measured in a fresh subprocess.

``python -m edge_perception.quant.measure MODEL --shape 1 3 192 320`` prints one JSON line:
latency (median / p90 ms), FPS, peak resident memory (``VmHWM`` of the process: the Python
interpreter + NumPy + ONNX Runtime + the model; torch is not imported) and the RSS growth caused
by loading and running the model.
:func:`measure_in_subprocess` runs it and also polls the child's RSS with psutil, so one model's
arena never inflates another's figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np


def measure(
    path: str, shape: Sequence[int], runs: int = 30, warmup: int = 5, threads: int = 1
) -> Dict[str, float]:
    """In-process measurement (use :func:`measure_in_subprocess` for comparable memory)."""
    import onnxruntime as ort
    import psutil

    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).random(tuple(shape), dtype=np.float32)
    for _ in range(warmup):
        sess.run(None, {name: x})
    times: List[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t0)
    t = np.asarray(times) * 1000.0
    batch = int(shape[0])
    peak_kb = _high_water_kb()
    return {
        "latency_ms_median": float(np.median(t)),
        "latency_ms_p90": float(np.percentile(t, 90)),
        "fps": float(batch * 1000.0 / np.median(t)),
        "peak_rss_mb": peak_kb / 1024.0,
        "rss_growth_mb": (proc.memory_info().rss - rss0) / 2**20,
        "threads": threads,
        "runs": runs,
    }


def _high_water_kb() -> float:
    """Peak RSS of this process in KiB: ``VmHWM`` (reset at exec, unlike ``ru_maxrss``, which a
    child inherits from the parent that forked it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def measure_in_subprocess(
    path: str, shape: Sequence[int], runs: int = 30, threads: int = 1, timeout: float = 600
) -> Dict[str, float]:
    """Run :func:`measure` in a child Python; adds ``peak_rss_mb_psutil`` (parent-side polling)."""
    import psutil

    cmd = [
        sys.executable,
        "-m",
        "edge_perception.quant.measure",
        path,
        "--runs",
        str(runs),
        "--threads",
        str(threads),
        "--shape",
        *[str(int(s)) for s in shape],
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    child = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    ps = psutil.Process(child.pid)
    peak = 0
    t0 = time.time()
    while child.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.Error:
            break
        if time.time() - t0 > timeout:
            child.kill()
            raise TimeoutError(f"measuring {path} took more than {timeout} s")
        time.sleep(0.02)
    out, err = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"measurement of {path} failed:\n{err[-2000:]}")
    res = json.loads(out.strip().splitlines()[-1])
    res["peak_rss_mb_psutil"] = peak / 2**20
    return res


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge_perception.quant.measure")
    p.add_argument("model")
    p.add_argument("--shape", type=int, nargs="+", required=True)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    print(json.dumps(measure(a.model, a.shape, a.runs, threads=a.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
