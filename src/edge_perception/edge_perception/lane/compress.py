"""``edge-perception lane-quantize``: FP32 / PTQ / QAT / dynamic INT8 of a lane model, compared.

One command: export FP32 ONNX from a ``lane-train`` checkpoint; static PTQ (QDQ, UINT8 activations,
INT8 per-channel weights, calibration on ``--calib-images`` training images); dynamic INT8; QAT
fine-tuning (``--qat-epochs``) exported to QDQ; then for every variant the validation mIoU / line
F1 (ONNX Runtime), file size, FPS and peak RAM (each in its own subprocess), written to
``<bench>.json`` + ``<bench>.md``. The accuracy gate promotes the best INT8 variant to
``<models-dir>/<name>_int8.onnx`` only if its mIoU is within ``--max-drop`` points of FP32; the
FP32 model is always written to ``<models-dir>/<name>.onnx``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, List, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from edge_perception.export import atomic_write_bytes, write_json, write_manifest
from edge_perception.lane.data import LaneDataset, stack_images
from edge_perception.lane.evaluate import evaluate_path
from edge_perception.lane.export import INPUT_NAMES, OUTPUT_NAMES, export_lane_model
from edge_perception.lane.losses import SegLoss
from edge_perception.lane.model import load_checkpoint
from edge_perception.quant.gate import accuracy_gate, copy_model, promote
from edge_perception.quant.onnx_tools import op_histogram
from edge_perception.quant.ptq import (
    ArrayCalibrationReader,
    quantize_dynamic_int8,
    quantize_static_qdq,
)
from edge_perception.quant.qat import export_qat_onnx, qat_finetune


def command_line() -> str:
    """This invocation as an ``edge-perception lane-quantize ...`` command line."""
    argv = sys.argv[1:]
    if argv and argv[0] == "lane-quantize":
        argv = argv[1:]
    return " ".join(["edge-perception lane-quantize"] + argv)


def calibration_images(data: str, size, count: int, seed: int = 0) -> np.ndarray:
    """``count`` training-split images, evenly spread over the sorted split (reproducible)."""
    from edge_perception.lane.data import list_samples

    samples = list_samples(data, "train")
    idx = np.linspace(0, len(samples) - 1, num=min(count, len(samples))).round().astype(int)
    return stack_images([samples[i][0] for i in idx], size)


def run(args: argparse.Namespace) -> Dict[str, object]:
    """Produce every variant, measure them, apply the gate; returns the comparison dict."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, ck = load_checkpoint(args.checkpoint)
    size = tuple(int(s) for s in ck.get("input_size", (192, 320)))  # type: ignore[union-attr]
    work = args.work_dir
    os.makedirs(work, exist_ok=True)
    base_info = {
        "command": command_line(),
        "checkpoint": os.path.abspath(args.checkpoint),
        "seed": ck.get("seed"),
        "data_version": ck.get("data_version"),
        "train_epochs": int(ck.get("epoch", -1)) + 1,  # type: ignore[arg-type]
        "loss": ck.get("loss"),
        "train_command": _train_command(args.checkpoint),
        "eval_split": "val",
    }
    paths: Dict[str, str] = {"fp32": os.path.join(work, "fp32.onnx")}
    export_lane_model(model, paths["fp32"], size, dict(base_info))  # type: ignore[arg-type]
    timings: Dict[str, float] = {}
    t0 = time.perf_counter()
    calib = calibration_images(args.data, size, args.calib_images, args.seed)
    paths["ptq"] = os.path.join(work, f"ptq_{args.calib_method}.onnx")
    quantize_static_qdq(
        paths["fp32"],
        paths["ptq"],
        ArrayCalibrationReader(INPUT_NAMES[0], calib),
        method=args.calib_method,
        symmetric_activations=args.symmetric,
    )
    timings["ptq_s"] = time.perf_counter() - t0
    paths["dynamic"] = os.path.join(work, "dynamic.onnx")
    quantize_dynamic_int8(paths["fp32"], paths["dynamic"])
    if args.qat_epochs > 0:
        t0 = time.perf_counter()
        train_ds = LaneDataset(
            args.data, "train", size, augment=True, limit=args.qat_limit, seed=args.seed
        )
        loader = DataLoader(
            train_ds,
            batch_size=args.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(args.seed),
        )
        crit = SegLoss(str(ck.get("loss") or "bce_dice"))
        qmodel = qat_finetune(
            model.train(),
            loader,
            crit,
            epochs=args.qat_epochs,
            lr=args.qat_lr,
            progress=not args.quiet,
            set_epoch=train_ds.set_epoch,
        )
        paths["qat"] = os.path.join(work, "qat.onnx")
        example = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(args.seed))
        export_qat_onnx(qmodel.deploy(), (example,), paths["qat"], INPUT_NAMES, OUTPUT_NAMES)
        timings["qat_s"] = time.perf_counter() - t0
    rows: Dict[str, Dict[str, object]] = {}
    from edge_perception.quant.measure import measure_in_subprocess

    for name, path in paths.items():
        m = evaluate_path(
            path,
            args.data,
            "val",
            limit=args.val_limit,
            threads=args.threads,
            progress=not args.quiet,
        )
        perf = measure_in_subprocess(path, (1, 3, *size), runs=args.runs, threads=args.threads)
        hist = op_histogram(path)
        rows[name] = {
            "path": path,
            "miou": m["miou"],
            "line_f1": m["line_f1"],
            "iou": m["iou"],
            "size_mb": os.path.getsize(path) / 2**20,
            **perf,
            "qdq_nodes": hist.get("QuantizeLinear", 0) + hist.get("DequantizeLinear", 0),
            "val_frames": m["frames"],
        }
        if not args.quiet:
            print(f"{name}: mIoU {m['miou']:.4f}, {perf['fps']:.1f} FPS", flush=True)
    # candidate: the fastest INT8 variant that passes the gate (INT8 exists for speed and size);
    # if none passes, the most accurate one, so the report says by how much it failed
    int8 = [k for k in ("ptq", "qat") if k in rows]
    fp32_miou = float(rows["fp32"]["miou"])  # type: ignore[arg-type]
    ok = [
        k
        for k in int8
        if accuracy_gate(
            fp32_miou,
            float(rows[k]["miou"]),
            "miou",  # type: ignore[arg-type]
            args.max_drop,
        ).passed
    ]
    if ok:
        best = max(ok, key=lambda k: float(rows[k]["fps"]))  # type: ignore[arg-type]
    else:
        best = max(int8, key=lambda k: float(rows[k]["miou"]))  # type: ignore[arg-type]
    decision = accuracy_gate(
        float(rows["fp32"]["miou"]),
        float(rows[best]["miou"]),  # type: ignore[arg-type]
        "miou",
        args.max_drop,
    )
    result = {
        "input_size": list(size),
        "threads": args.threads,
        "rows": rows,
        "gate": {"candidate": best, **decision.as_dict()},
        "timings": timings,
        "machine": _machine(),
    }
    if args.models_dir:
        fp32_dest = os.path.join(args.models_dir, f"{args.name}.onnx")
        copy_model(paths["fp32"], fp32_dest)
        metrics = {"val": {k: rows["fp32"][k] for k in ("miou", "line_f1", "iou")}}
        write_manifest(fp32_dest, _manifest(base_info, size, "fp32", metrics, rows["fp32"]))
        int8_dest = os.path.join(args.models_dir, f"{args.name}_int8.onnx")
        metrics8 = {"val": {k: rows[best][k] for k in ("miou", "line_f1", "iou")}}
        man8 = _manifest(base_info, size, f"int8-{best}", metrics8, rows[best])
        passed = promote(decision, paths[best], int8_dest, man8)
        if passed:
            write_manifest(int8_dest, dict(man8, gate=decision.as_dict()))
        result["promoted"] = int8_dest if passed else None
        print(("promoted " + int8_dest) if passed else ("kept FP32 only: " + decision.reason))
    if args.bench:
        write_json(args.bench + ".json", result)
        atomic_write_bytes(args.bench + ".md", markdown(result, args).encode("utf-8"))
    return result


def _train_command(checkpoint: str) -> Optional[str]:
    """The lane-train command recorded in the checkpoint folder's config.json, if any."""
    import json

    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "config.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    cmd = str(cfg.get("command", ""))
    if "edge_perception/lane/train.py" in cmd.split(" ", 1)[0]:  # recorded from ``python -m``
        cmd = "python -m edge_perception.lane.train " + cmd.split(" ", 1)[-1]
    return cmd


def _manifest(info, size, precision, metrics, row) -> Dict[str, object]:
    from edge_perception.lane import LANE_CLASSES

    return dict(
        info,
        task="lane_segmentation",
        classes=list(LANE_CLASSES),
        input_size=list(size),
        input_names=list(INPUT_NAMES),
        output_names=list(OUTPUT_NAMES),
        precision=precision,
        metrics=metrics,
        input_format="RGB float32 in [0, 1], NCHW; normalisation inside the graph",
        cpu_fps_1thread=row.get("fps"),
    )


def _machine() -> Dict[str, object]:
    import platform

    import onnxruntime

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
    }


def markdown(result: Dict[str, object], args: argparse.Namespace) -> str:
    """The comparison table as Markdown, with the command and the gate decision."""
    rows = result["rows"]  # type: ignore[index]
    lines = [
        "# Lane model compression: FP32 vs INT8 (ONNX Runtime, CPU)",
        "",
        f"Command: `{command_line()}`  ",
        f"Input {result['input_size'][0]}x{result['input_size'][1]}, batch 1, "  # type: ignore
        f"{result['threads']} thread(s); machine: "
        + ", ".join(f"{k} {v}" for k, v in result["machine"].items())  # type: ignore[union-attr]
        + ".  ",
        "mIoU / line F1 (tol 2 px) on the validation split; FPS = 1000 / median latency;"
        " peak RAM = `VmHWM` of a fresh process (Python + NumPy + ORT, no torch) that loads"
        " and runs only that model.",
        "",
        "| variant | mIoU | line F1 | size (MB) | FPS | median ms | peak RAM (MB) | QDQ nodes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():  # type: ignore[union-attr]
        lines.append(
            f"| {name} | {r['miou']:.4f} | {r['line_f1']:.4f} | {r['size_mb']:.3f} | "
            f"{r['fps']:.1f} | {r['latency_ms_median']:.2f} | {r['peak_rss_mb']:.0f} | "
            f"{r['qdq_nodes']} |"
        )
    g = result["gate"]  # type: ignore[index]
    lines += [
        "",
        f"Gate ({g['candidate']}): {g['reason']}; "  # type: ignore[index]
        f"{'promoted' if g['passed'] else 'FP32 kept'}.",
        "",
    ]  # type: ignore[index]
    return "\n".join(lines)


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edge-perception lane-quantize``."""
    parser.description = __doc__
    parser.add_argument("--checkpoint", required=True, help="lane-train checkpoint (.pt)")
    parser.add_argument("--data", required=True, help="carla_bridge data set root")
    parser.add_argument("--work-dir", default="out/lane_compress", help="intermediate models")
    parser.add_argument("--models-dir", default=None, help="promote into this folder (models/)")
    parser.add_argument("--name", default="lane_small", help="model file stem in --models-dir")
    parser.add_argument(
        "--bench", default=None, help="table path stem, e.g. bench/lane_compression"
    )
    parser.add_argument("--calib-images", type=int, default=64)
    parser.add_argument(
        "--symmetric",
        action="store_true",
        help="signed symmetric INT8 activations: one QDQ model for ONNX Runtime and TensorRT",
    )
    parser.add_argument(
        "--calib-method", default="minmax", choices=["minmax", "entropy", "percentile"]
    )
    parser.add_argument("--qat-epochs", type=int, default=2, help="0 skips QAT")
    parser.add_argument("--qat-lr", type=float, default=2e-4)
    parser.add_argument("--qat-limit", type=int, default=None, help="first N train frames for QAT")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--val-limit", type=int, default=None)
    parser.add_argument("--max-drop", type=float, default=1.0, help="gate budget (mIoU points)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per variant")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    parser.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    run(args)
    return 0


def cli(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge_perception.lane.compress")
    register(p)
    return main(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
