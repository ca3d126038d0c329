"""Shared helpers of the benchmarks under bench/: environment record, statistics, result files.

Every benchmark writes ``bench/results/<name>.json`` (machine-readable: environment, settings,
numbers) and ``bench/results/<name>.md`` (the same numbers as a table for people). Speed numbers
live only here, never in tests.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

# ONNX Runtime's telemetry uploader is off only if this is set before onnxruntime is imported
# (see edge_perception/__init__.py); benches may import onnxruntime before edge_perception.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _version(module: str) -> str:
    try:
        mod = __import__(module)
        return str(getattr(mod, "__version__", "?"))
    except Exception:  # noqa: BLE001 - a missing library is recorded, not fatal
        return "absent"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=os.path.dirname(os.path.abspath(__file__)),
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> Dict[str, Any]:
    """What the numbers were measured on (machine, load, library versions)."""
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(load[0], 2),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": _version("numpy"),
        "onnxruntime": _version("onnxruntime"),
        "torch": _version("torch"),
        "rmw": os.environ.get("RMW_IMPLEMENTATION", ""),
        "git": git_revision(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def summarize(values_ms: Sequence[float]) -> Dict[str, float]:
    """n, mean, p50, p90, p99, min, max of a list of milliseconds (rounded to 0.01 ms)."""
    vals = sorted(float(v) for v in values_ms)
    if not vals:
        return {"n": 0}

    def pct(q: float) -> float:
        k = (len(vals) - 1) * q / 100.0
        lo, hi = int(k), min(int(k) + 1, len(vals) - 1)
        return vals[lo] + (vals[hi] - vals[lo]) * (k - lo)

    return {
        "n": len(vals),
        "mean": round(statistics.fmean(vals), 2),
        "p50": round(pct(50), 2),
        "p90": round(pct(90), 2),
        "p99": round(pct(99), 2),
        "min": round(vals[0], 2),
        "max": round(vals[-1], 2),
    }


def time_calls(fn: Callable[[], Any], runs: int, warmup: int = 3) -> List[float]:
    """Milliseconds of ``runs`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def markdown_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    lines = ["| " + " | ".join(str(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_results(
    name: str, data: Dict[str, Any], markdown: str, out_dir: Optional[str] = None
) -> Dict[str, str]:
    """Write ``<name>.json`` and ``<name>.md``; returns their paths."""
    folder = out_dir or RESULTS_DIR
    os.makedirs(folder, exist_ok=True)
    paths = {
        "json": os.path.join(folder, name + ".json"),
        "md": os.path.join(folder, name + ".md"),
    }
    with open(paths["json"], "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=False)
        fh.write("\n")
    with open(paths["md"], "w", encoding="utf-8") as fh:
        fh.write(markdown.rstrip() + "\n")
    return paths


def publish_results(
    name: str, data: Dict[str, Any], markdown: str, out_dir: Optional[str] = None
) -> Dict[str, str]:
    """:func:`write_results`, then print the Markdown and where both files went."""
    paths = write_results(name, data, markdown, out_dir)
    print(markdown)
    print(f"wrote {paths['json']} and {paths['md']}")
    return paths
