"""GPU benchmark: PyTorch FP32 / FP16 and (where installed) TensorRT, FPS + latency percentiles.

    python bench/gpu_bench.py                                   # lane + det (small), 384x640
    python bench/gpu_bench.py --models lane:small --onnx models/lane_small.onnx \\
        --precisions fp32 fp16 int8 --calib-data /data/carla

One row per model x backend x precision, in the CPU benchmarks' format (``bench/common.py``:
environment record, latency statistics n/mean/p50/p90/p99/min/max in ms) plus FPS at the median,
written as ``bench/results/gpu_bench.json`` and ``.md`` (``--out-dir`` to change). PyTorch
models are built from the package with random weights (speed does not depend on the values) and
timed with a CUDA synchronisation per iteration; TensorRT engines are built / taken from the
validated cache and timed end to end through the backend (host->device copy, inference,
device->host copy). Where no CUDA GPU exists it prints ``no CUDA GPU: skipped`` and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import environment, markdown_table, summarize, time_calls, write_results  # noqa: E402

MODEL_BUILDERS = {
    "lane": ("edge_perception.lane.model", "build_model"),
    "det": ("edge_perception.detection.model", "build_rtdetr"),
}
HEADER = (
    "model",
    "backend",
    "precision",
    "batch",
    "FPS",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "mean ms",
    "n",
)


def stats(times_ms: Sequence[float], batch: int) -> Dict[str, Any]:
    """``common.summarize`` plus ``fps`` = images per second at the median (p50) latency."""
    if len(times_ms) == 0:
        raise ValueError("no timings")
    out: Dict[str, Any] = dict(summarize(times_ms))
    out["fps"] = round(batch * 1000.0 / max(out["p50"], 1e-6), 1)
    return out


def table(rows: List[Dict[str, Any]]) -> str:
    """The Markdown result table (``common.markdown_table``); failed rows show the reason."""
    cells: List[List[Any]] = []
    for r in rows:
        head = [r["model"], r["backend"], r["precision"]]
        if "error" in r:
            cells.append(head + ["", "failed: " + r["error"][:80], "", "", "", "", ""])
        else:
            cells.append(
                head + [r["batch"], r["fps"], r["p50"], r["p90"], r["p99"], r["mean"], r["n"]]
            )
    return markdown_table(cells, HEADER)


def bench_torch(
    spec: str, shape: Sequence[int], precisions: Sequence[str], runs: int, warmup: int
) -> List[Dict[str, Any]]:
    """PyTorch eager FP32 / FP16 of a package model ``kind:variant``."""
    import importlib

    import torch

    kind, _, variant = spec.partition(":")
    if kind not in MODEL_BUILDERS:
        raise SystemExit("unknown model %r; choose from %s" % (kind, sorted(MODEL_BUILDERS)))
    module, func = MODEL_BUILDERS[kind]
    model = getattr(importlib.import_module(module), func)(variant or "small").eval().cuda()
    rows = []
    for prec in precisions:
        if prec not in ("fp32", "fp16"):
            continue
        m = model.half() if prec == "fp16" else model.float()
        x = torch.rand(*shape, device="cuda").to(
            torch.float16 if prec == "fp16" else torch.float32
        )

        def step(m: Any = m, x: Any = x) -> None:
            with torch.inference_mode():
                m(x)
            torch.cuda.synchronize()  # time the GPU work, not the kernel launches

        times = time_calls(step, runs, warmup)
        rows.append(
            dict(
                model=spec,
                backend="pytorch",
                precision=prec,
                batch=shape[0],
                **stats(times, shape[0]),
            )
        )
    return rows


def bench_tensorrt(
    onnx_path: str, precisions: Sequence[str], runs: int, warmup: int, calib_data: Optional[str]
) -> List[Dict[str, Any]]:
    """TensorRT engines of an ONNX model through the TensorRT backend (copies included)."""
    from edge_perception.backends.base import static_shape
    from edge_perception.backends.tensorrt_backend import TensorRTBackend

    rows = []
    for prec in precisions:
        opts: Dict[str, Any] = {"precision": prec}
        if prec == "int8" and calib_data:
            opts["calib_data"] = calib_data
        row: Dict[str, Any] = dict(
            model=os.path.basename(onnx_path), backend="tensorrt", precision=prec
        )
        try:
            be = TensorRTBackend(onnx_path, **opts)
        except Exception as exc:  # noqa: BLE001 - reported in the table; the others still run
            row["error"] = str(exc).splitlines()[0]
            rows.append(row)
            continue
        rng = np.random.default_rng(0)
        feeds = {t.name: rng.random(static_shape(t.shape)).astype(t.dtype) for t in be.inputs}
        batch = static_shape(be.inputs[0].shape)[0]
        times = time_calls(lambda be=be, feeds=feeds: be(feeds), runs, warmup)
        row.update(batch=batch, engine_key=be.info.extra.get("engine_key", ""))
        row.update(stats(times, batch))
        be.close()
        rows.append(row)
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--models",
        nargs="*",
        default=["lane:small", "det:small"],
        help="PyTorch models kind:variant (%s)" % ", ".join(MODEL_BUILDERS),
    )
    parser.add_argument("--onnx", nargs="*", default=[], help="ONNX models for TensorRT")
    parser.add_argument(
        "--precisions", nargs="+", default=["fp32", "fp16"], choices=["fp32", "fp16", "int8"]
    )
    parser.add_argument("--size", default="384x640", help="input HxW for PyTorch models")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--calib-data", help="calibration images for TensorRT INT8")
    parser.add_argument("--out-dir", help="result folder (default bench/results)")
    args = parser.parse_args(argv)
    try:
        h, w = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error("--size must be HxW, e.g. 384x640")

    try:
        import torch

        has_cuda = bool(torch.cuda.is_available())
    except ImportError:
        has_cuda = False
    if not has_cuda:
        print("no CUDA GPU: skipped")
        return 0

    device = str(torch.cuda.get_device_name(0))
    rows: List[Dict[str, Any]] = []
    for spec in args.models:
        rows += bench_torch(spec, (args.batch, 3, h, w), args.precisions, args.runs, args.warmup)
    from edge_perception.tensorrt import tensorrt_available

    if args.onnx and not tensorrt_available():
        print("TensorRT is not installed: TensorRT rows skipped")
    else:
        for path in args.onnx:
            rows += bench_tensorrt(path, args.precisions, args.runs, args.warmup, args.calib_data)
    env = environment()
    env["gpu"] = device
    data = {"environment": env, "settings": vars(args), "results": rows}
    md = "# GPU benchmark (%s)\n\n%s\n" % (device, table(rows))
    paths = write_results("gpu_bench", data, md, args.out_dir)
    print(md)
    print("written: %s, %s" % (paths["json"], paths["md"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
