"""Detector throughput on ONNX Runtime CPU: edge ``small`` vs an RT-DETRv2-S-sized reference.

    python bench/det_throughput.py [--checkpoint runs/det/best.pt] [--data DATA] \\
        [--size 640 640] [--threads 1] [--runs 20] [--out bench/det_throughput]

Both models come from this repository's RT-DETR family (``build_rtdetr("small")`` and
``build_rtdetr("ref_v2s")``: ResNet-18-like backbone, 256-d encoder, 3 decoder layers, 300
queries). Each is exported to ONNX (deploy graph with in-graph top-K) at the same input size and
timed in a fresh process (:func:`edge_perception.quant.measure.measure_in_subprocess`); parameters
and FLOPs (``torch.utils.flop_counter``, 2 x multiply-accumulates, GridSample not counted) are
counted on the PyTorch model. The ``small`` model is also quantised to INT8 (static QDQ, both the
all-INT8 and the mixed policy of ``det-quantize``) and timed against its own FP32 graph;
calibration
uses ``--data`` training images when given, random images otherwise (speed only, no accuracy
claim). Weights do not change the timings; ``--checkpoint`` uses trained ``small`` weights.
Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from typing import Any, Dict, List

import numpy as np
import torch


def count_flops(model: torch.nn.Module, size: List[int]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.rand(1, 3, *size))
    return fc.get_total_flops() / 1e9


def main(argv: List[str] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--data", default=None, help="calibration images for the INT8 models")
    p.add_argument("--size", type=int, nargs=2, default=[640, 640])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--out", default="bench/det_throughput")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    import onnxruntime as ort
    from edge_perception.detection.compress import (
        calibration_images,
        mixed_exclusions,
        prepare_mixed_source,
    )
    from edge_perception.detection.export import export_detector
    from edge_perception.detection.model import (
        build_rtdetr,
        count_parameters,
        model_from_checkpoint,
    )
    from edge_perception.quant.measure import measure_in_subprocess
    from edge_perception.quant.ptq import ArrayCalibrationReader, quantize_static_qdq

    size = [int(s) for s in args.size]
    rows: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for variant in ("small", "ref_v2s"):
            torch.manual_seed(0)
            trained = variant == "small" and bool(args.checkpoint)
            if trained:
                ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
                model = model_from_checkpoint(ckpt)
            else:
                model = build_rtdetr(variant)
            model.deploy()
            params = count_parameters(model)
            flops = count_flops(model, size)
            path = os.path.join(tmp, f"{variant}.onnx")
            # untrained reference: near-equal scores make the top-K order a tie-break, so the
            # rank-wise parity check is meaningless there (timing only)
            export_detector(model, path, size, parity=trained)
            paths[variant] = path
            rows.append(
                {
                    "model": variant,
                    "precision": "fp32",
                    "params_m": params / 1e6,
                    "gflops": flops,
                    "path": path,
                }
            )
        if args.data:
            calib = calibration_images(args.data, size, 32)
        else:
            calib = np.random.default_rng(0).random((8, 3, *size), dtype=np.float32)
        unshared = os.path.join(tmp, "small_unshared.onnx")
        prepare_mixed_source(paths["small"], unshared)
        for name, src, excl in (
            ("int8_all", paths["small"], None),
            ("int8_mixed", unshared, mixed_exclusions(unshared)),
        ):
            out = os.path.join(tmp, f"small_{name}.onnx")
            quantize_static_qdq(
                src,
                out,
                ArrayCalibrationReader("images", calib),
                nodes_to_exclude=excl,
                preprocess=excl is None,
            )
            rows.append(
                {
                    "model": "small",
                    "precision": name,
                    "params_m": rows[0]["params_m"],
                    "gflops": rows[0]["gflops"],
                    "path": out,
                }
            )
        for r in rows:
            t = measure_in_subprocess(r["path"], [1, 3, *size], args.runs, args.threads)
            r.update(
                size_mb=os.path.getsize(r["path"]) / 1e6,
                latency_ms=t["latency_ms_median"],
                latency_p90_ms=t["latency_ms_p90"],
                fps=t["fps"],
                peak_rss_mb=t.get("peak_rss_mb_psutil", t["peak_rss_mb"]),
            )
            r.pop("path")
            print(
                f"{r['model']:8s} {r['precision']:10s} {r['latency_ms']:8.1f} ms "
                f"{r['fps']:6.2f} FPS {r['params_m']:.2f} M {r['gflops']:.2f} GFLOPs"
            )
    meta = {
        "command": "python " + " ".join(sys.argv),
        "input_size": size,
        "threads": args.threads,
        "runs": args.runs,
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "weights": "trained small" if args.checkpoint else "random init (timing only)",
        "note": "shared 2-core machine: other jobs ran concurrently, timings are noisy",
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    fp32 = {r["model"]: r for r in rows if r["precision"] == "fp32"}
    lines = [
        "# RT-DETR throughput, ONNX Runtime CPU",
        "",
        f"Command: `{meta['command']}`  ",
        f"Input {size[0]}x{size[1]}, batch 1, {args.threads} intra-op thread(s), median of "
        f"{args.runs} runs in a fresh process; ORT {meta['onnxruntime']}, {meta['cpu_count']} "
        f"CPUs ({meta['cpu']}); weights: {meta['weights']}. {meta['note']}.",
        "",
        "| model | precision | params (M) | GFLOPs | size (MB) | latency (ms) | FPS | "
        "peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['params_m']:.2f} | {r['gflops']:.2f} | "
            f"{r['size_mb']:.2f} | {r['latency_ms']:.1f} | {r['fps']:.2f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    speed = fp32["ref_v2s"]["latency_ms"] / fp32["small"]["latency_ms"]
    lines += ["", f"small FP32 is {speed:.2f}x faster than the RT-DETRv2-S-sized reference.", ""]
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
