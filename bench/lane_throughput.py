"""Lane model throughput on this CPU: ORT FP32 vs static INT8 (QDQ) at 360x640, beside a
TwinLiteNet-class baseline, with params, GMAC, achieved GFLOP/s and the machine's measured peak.

Run from the repository root (after ``source env.sh``)::

    python bench/lane_throughput.py --data data/lane_v1 --runs 20 --threads 1 2

Writes ``bench/lane_throughput.json`` and ``bench/lane_throughput.md``. Every model is timed in its
own fresh subprocess (batch 1, median of ``--runs`` after warm-up). The peak is the best of a few
2048x2048 float32 matrix products in torch at the same thread count, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from edge_perception.export import atomic_write_bytes, export_onnx, write_json  # noqa: E402
from edge_perception.flops import count_cost  # noqa: E402
from edge_perception.lane.export import export_lane_model  # noqa: E402
from edge_perception.lane.model import build_model, load_checkpoint  # noqa: E402
from edge_perception.quant.measure import measure_in_subprocess  # noqa: E402
from edge_perception.quant.ptq import ArrayCalibrationReader, quantize_static_qdq  # noqa: E402
from lane_baseline_model import TwinLiteClassNet  # noqa: E402


def matmul_peak_gflops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """Best achieved GFLOP/s of an ``n x n`` float32 matmul with ``threads`` torch threads."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    torch.set_num_threads(old)
    return 2.0 * n**3 / best / 1e9


def calibration(data: str, size, count: int) -> np.ndarray:
    if data:
        from edge_perception.lane.compress import calibration_images

        return calibration_images(data, size, count)
    return np.random.default_rng(0).random((count, 3, *size), dtype=np.float32)


def main(argv: List[str] = None) -> int:  # type: ignore[assignment]
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size", type=int, nargs=2, default=[360, 640], metavar=("H", "W"))
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--data", default="", help="data set root for calibration images")
    p.add_argument("--checkpoint", default="", help="trained lane checkpoint (default: init)")
    p.add_argument("--calib-images", type=int, default=16)
    p.add_argument("--out", default=str(HERE / "lane_throughput"))
    a = p.parse_args(argv)
    torch.manual_seed(0)
    size = tuple(a.size)
    x = torch.zeros(1, 3, *size)
    models: Dict[str, torch.nn.Module] = {
        "lane small (ours)": load_checkpoint(a.checkpoint)[0]
        if a.checkpoint
        else build_model("small"),
        "lane base (ours)": build_model("base"),
        "TwinLiteNet-class baseline": TwinLiteClassNet(),
    }
    calib = calibration(a.data, size, a.calib_images)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for name, model in models.items():
            cost = count_cost(model, x)
            fp32 = os.path.join(tmp, f"{len(jobs)}_fp32.onnx")
            if isinstance(model, TwinLiteClassNet):
                export_onnx(model.eval(), (x,), fp32, ["images"], ["logits"])
            else:
                export_lane_model(model, fp32, size)
            int8 = fp32.replace("fp32", "int8")
            quantize_static_qdq(fp32, int8, ArrayCalibrationReader("images", calib))
            for prec, path in (("fp32", fp32), ("int8 (QDQ static)", int8)):
                jobs += [(name, prec, path, cost, t) for t in a.threads]
        peaks = {t: matmul_peak_gflops(t) for t in a.threads}
        for name, prec, path, cost, t in tqdm(jobs, desc="measure"):
            r = measure_in_subprocess(path, (1, 3, *size), runs=a.runs, threads=t)
            gflops = cost.flops / 1e9
            achieved = gflops / (r["latency_ms_median"] / 1000.0)
            rows.append(
                {
                    "model": name,
                    "precision": prec,
                    "threads": t,
                    "params_m": cost.params / 1e6,
                    "gmac": cost.macs / 1e9,
                    "gflop": gflops,
                    "latency_ms_median": r["latency_ms_median"],
                    "latency_ms_p90": r["latency_ms_p90"],
                    "fps": r["fps"],
                    "achieved_gflops": achieved,
                    "peak_gflops_fp32": peaks[t],
                    "pct_of_fp32_peak": 100.0 * achieved / peaks[t],
                    "peak_rss_mb": r["peak_rss_mb"],
                    "size_mb": os.path.getsize(path) / 2**20,
                }
            )
    import onnxruntime

    result = {
        "command": "python bench/lane_throughput.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "input_size": list(size),
        "batch": 1,
        "runs": a.runs,
        "machine": {
            "cpu": _cpu_name(),
            "logical_cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        "matmul_peak_gflops": peaks,
        "rows": rows,
    }
    write_json(a.out + ".json", result)
    atomic_write_bytes(a.out + ".md", markdown(result).encode("utf-8"))
    print(markdown(result))
    return 0


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def markdown(res: Dict[str, object]) -> str:
    m = res["machine"]  # type: ignore[index]
    h, w = res["input_size"]  # type: ignore[misc]
    lines = [
        f"# Lane segmentation throughput at {h}x{w} (ONNX Runtime CPU, batch 1)",
        "",
        f"Command: `{res['command']}`  ",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs (shared with other jobs), "  # type: ignore[index]
        f"torch {m['torch']}, onnxruntime {m['onnxruntime']}.  ",  # type: ignore[index]
        "GFLOP = 2 x MACs of conv/linear layers (edge_perception.flops). Achieved GFLOP/s ="
        " GFLOP / median latency; peak = best 2048x2048 fp32 torch matmul at the same thread count"
        " (INT8 rows are compared with the same FP32 peak). Each model timed in a fresh process.",
        "",
        "| model | precision | threads | params (M) | GMAC | median ms | FPS | achieved GFLOP/s |"
        " % of fp32 peak | peak RAM (MB) | file MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:  # type: ignore[union-attr]
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['threads']} | {r['params_m']:.3f} | "
            f"{r['gmac']:.2f} | {r['latency_ms_median']:.1f} | {r['fps']:.1f} | "
            f"{r['achieved_gflops']:.1f} | {r['pct_of_fp32_peak']:.0f} | {r['peak_rss_mb']:.0f} |"
            f" {r['size_mb']:.2f} |"
        )
    peaks = ", ".join(
        f"{t} thread(s): {v:.1f} GFLOP/s" for t, v in res["matmul_peak_gflops"].items()
    )  # type: ignore[union-attr]
    lines += ["", f"Measured fp32 matmul peak: {peaks}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
