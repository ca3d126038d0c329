"""INT8 post-training quantisation of the detector with an accuracy gate (``det-quantize``).

    edge-perception det-quantize --onnx models/det_small.onnx --data data/gen \\
        --report bench/det_compression.md

Two ONNX Runtime static QDQ models are built from the FP32 export, both calibrated on training
images (letterboxed exactly like inference):

- ``int8_all``: every quantisable op in INT8;
- ``int8_mixed``: backbone and hybrid encoder in INT8; everything under the ``/decoder/`` and
  ``/postprocessor/`` scopes -- query selection (encoder score/box heads + top-K), the decoder
  layers with their deformable sampling, the per-layer heads and the output top-K -- kept in FP32
  through ``nodes_to_exclude``. Rationale: the convolutional part holds most of the FLOPs and
  quantises well, while the decoder regresses boxes through sigmoid/inverse-sigmoid refinements and
  ranks queries by small score differences, where 8-bit rounding costs mAP at little speed gain.

Each is scored on the validation split (COCO mAP50:95), timed with
:func:`edge_perception.quant.measure.measure_in_subprocess` and sized. The gate
(:func:`edge_perception.quant.gate.accuracy_gate`, <= 1.0 mAP50:95 point drop) decides: the faster
passing INT8 model is promoted to ``<fp32 stem>_int8.onnx``; if none passes nothing is promoted and
the FP32 model stays the deployed one. A JSON + Markdown table is written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from typing import Any, Dict, List, Sequence

import numpy as np

from edge_perception.detection.data import CocoDetection

EXCLUDED_SCOPES = ("/decoder/", "/postprocessor/")
INT8_SCOPES = ("/backbone/", "/encoder/")


def mixed_exclusions(path: str) -> List[str]:
    """Names of the nodes the mixed policy keeps in FP32: every node of ``path`` (a graph prepared
    by :func:`prepare_mixed_source`) outside the backbone and encoder scopes; the input
    normalisation at the root scope stays INT8-eligible."""
    import onnx

    names = [n.name for n in onnx.load(path, load_external_data=False).graph.node]
    root_level = [n for n in names if n.count("/") == 1 and n.startswith("/")]
    keep = set(root_level) | {n for n in names if n.startswith(INT8_SCOPES)}
    return [n for n in names if n not in keep]


def prepare_mixed_source(fp32_path: str, dst: str) -> int:
    """Write the graph the mixed policy quantises (pass ``preprocess=False`` to the quantiser):
    ORT's quantisation pre-processing (shape inference + graph optimisation; the exporter's scoped
    node names survive it), then :func:`unshare_initializers`. Returns the rewired-input count."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(fp32_path, pre, skip_symbolic_shape=True)
        return unshare_initializers(pre, dst)


def unshare_initializers(src: str, dst: str, scopes: Sequence[str] = EXCLUDED_SCOPES) -> int:
    """Copy ``src`` to ``dst`` giving the nodes under ``scopes`` private copies of initializers
    they share with other nodes; returns how many inputs were rewired.

    Identical tensors end up shared (the exporter deduplicates e.g. equal LayerNorm weights of
    encoder and decoder, and graph optimisation removes the Identity nodes in between); the
    quantiser would then feed the decoder the encoder's INT8 copy, silently breaking the
    FP32-decoder policy. Run it on the pre-processed graph.
    """
    import onnx

    model = onnx.load(src)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    users: Dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            if i in inits:
                users[i] = users.get(i, 0) + 1
    rewired = 0
    for n in graph.node:
        if not n.name.startswith(tuple(scopes)):
            continue
        for k, i in enumerate(n.input):
            if i in inits and users[i] > 1:
                copy = onnx.TensorProto()
                copy.CopyFrom(inits[i])
                copy.name = f"{i}__fp32_{rewired}"
                graph.initializer.append(copy)
                n.input[k] = copy.name
                rewired += 1
    onnx.save(model, dst)
    return rewired


def calibration_images(data_root: str, size: List[int], count: int) -> np.ndarray:
    """``count`` letterboxed training images [N, 3, H, W] float32 in [0, 1], evenly spread."""
    ds = CocoDetection(data_root, "train", (size[0], size[1]), augment=False)
    if len(ds) == 0:
        raise ValueError(f"{data_root}: no training images for calibration")
    idx = np.linspace(0, len(ds) - 1, min(count, len(ds))).round().astype(int)
    return np.stack([ds[int(i)][0].numpy() for i in idx])


def _input_size(path: str) -> List[int]:
    import onnx

    dims = onnx.load(path, load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return [int(dims[2].dim_value), int(dims[3].dim_value)]


def markdown_table(rows: List[Dict[str, Any]], meta: Dict[str, Any]) -> str:
    """The comparison table (model x mAP, size, FPS, RAM) with how it was measured."""
    out = [
        "# Detector compression (FP32 / INT8-all / INT8-mixed)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Validation: {meta['val_images']} images of `{meta['data']}` (split `val`), input "
        f"{meta['input_size'][0]}x{meta['input_size'][1]}; calibration: {meta['calib_images']} "
        f"training images of `{meta.get('calib_data', meta['data'])}` ({meta['method']}); "
        f"ONNX Runtime {meta['ort']} CPU, "
        f"{meta['threads']} thread(s), batch 1, {meta['runs']} timed runs in a fresh process.",
        "",
        "| model | mAP50:95 | mAP50 | size (MB) | latency median (ms) | FPS | peak RSS (MB) "
        "| gate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['name']} | {r['map']:.4f} | {r['map50']:.4f} | {r['size_mb']:.2f} | "
            f"{r['latency_ms']:.1f} | {r['fps']:.1f} | {r['peak_rss_mb']:.0f} | {r['gate']} |"
        )
    out += ["", f"Decision: {meta['decision']}", ""]
    return "\n".join(out)


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edge-perception det-quantize``."""
    parser.add_argument("--onnx", required=True, help="FP32 detector exported by det-export")
    parser.add_argument("--data", required=True, help="carla_bridge data set root")
    parser.add_argument("--out-dir", default=None, help="default: the FP32 model's folder")
    parser.add_argument("--calib-images", type=int, default=64)
    parser.add_argument(
        "--calib-data",
        default=None,
        help="data set whose train split calibrates (default: --data); e.g. the training data "
        "when --data holds only the standard val split",
    )
    parser.add_argument(
        "--symmetric",
        action="store_true",
        help="signed symmetric INT8 activations: one QDQ model for ONNX Runtime and TensorRT",
    )
    parser.add_argument("--val-images", type=int, default=None, help="default: the whole split")
    parser.add_argument("--method", default="minmax", choices=["minmax", "entropy", "percentile"])
    parser.add_argument("--max-drop", type=float, default=1.0, help="gate, mAP50:95 points")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per model")
    parser.add_argument("--report", default=None, help="Markdown table (JSON next to it)")
    parser.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    """Quantise, evaluate, time, gate and report (see the module docstring)."""
    import sys

    import onnxruntime as ort

    from edge_perception.detection.evaluate import evaluate, onnx_predictor
    from edge_perception.export import read_manifest
    from edge_perception.quant.gate import accuracy_gate, promote
    from edge_perception.quant.measure import measure_in_subprocess
    from edge_perception.quant.ptq import ArrayCalibrationReader, quantize_static_qdq

    fp32 = args.onnx
    if not os.path.isfile(fp32):
        raise SystemExit(f"{fp32} does not exist; export it with det-export first")
    out_dir = args.out_dir or os.path.dirname(os.path.abspath(fp32))
    stem = os.path.splitext(os.path.basename(fp32))[0]
    size = _input_size(fp32)
    calib = calibration_images(args.calib_data or args.data, size, args.calib_images)
    work = os.path.join(out_dir, f".{stem}_quant")
    os.makedirs(work, exist_ok=True)
    paths = {"fp32": fp32}
    reader = ArrayCalibrationReader("images", calib)
    paths["int8_all"] = quantize_static_qdq(
        fp32,
        os.path.join(work, "int8_all.onnx"),
        reader,
        method=args.method,
        symmetric_activations=args.symmetric,
    )
    reader.rewind()
    mixed_src = os.path.join(work, "fp32_unshared.onnx")
    prepare_mixed_source(fp32, mixed_src)
    paths["int8_mixed"] = quantize_static_qdq(
        mixed_src,
        os.path.join(work, "int8_mixed.onnx"),
        reader,
        method=args.method,
        nodes_to_exclude=mixed_exclusions(mixed_src),
        preprocess=False,
        symmetric_activations=args.symmetric,
    )
    val = CocoDetection(args.data, "val", (size[0], size[1]), max_images=args.val_images)
    rows: List[Dict[str, Any]] = []
    for name, path in paths.items():
        m = evaluate(onnx_predictor(path, args.threads), val)
        t = measure_in_subprocess(path, [1, 3, *size], runs=args.runs, threads=args.threads)
        rows.append(
            {
                "name": name,
                "path": path,
                "map": m.map,
                "map50": m.map50,
                "size_mb": os.path.getsize(path) / 1e6,
                "latency_ms": t["latency_ms_median"],
                "fps": t["fps"],
                "peak_rss_mb": t.get("peak_rss_mb_psutil", t["peak_rss_mb"]),
                "gate": "reference",
            }
        )
        print(f"{name}: mAP50:95 {m.map:.4f} mAP50 {m.map50:.4f} {t['fps']:.1f} FPS")
    ref = rows[0]
    passing = []
    for r in rows[1:]:
        d = accuracy_gate(ref["map"], r["map"], "map50_95", args.max_drop)
        r["gate"] = ("pass" if d.passed else "fail") + f" ({d.drop_points:+.2f} pt)"
        r["decision"] = d
        if d.passed:
            passing.append(r)
    dest = os.path.join(out_dir, f"{stem}_int8.onnx")
    if passing:
        best = max(passing, key=lambda r: r["fps"])
        manifest = dict(read_manifest(fp32) or {})
        manifest.update(
            precision="int8",
            quantization=best["name"],
            fp32_model=fp32,
            metrics={"map": best["map"], "map50": best["map50"]},
        )
        promote(best["decision"], best["path"], dest, manifest)
        decision = f"promoted `{best['name']}` to `{dest}` (fastest INT8 model within the gate)"
    else:
        for r in rows[1:]:
            promote(r["decision"], r["path"], dest)  # failing: removes any stale INT8 model
        decision = "no INT8 model within the gate; the FP32 model stays deployed"
    print(decision)
    meta = {
        "command": "edge-perception det-quantize " + " ".join(sys.argv[2:]),
        "data": args.data,
        "val_images": len(val),
        "input_size": size,
        "calib_images": len(calib),
        "calib_data": args.calib_data or args.data,
        "method": args.method,
        "ort": ort.__version__,
        "threads": args.threads,
        "runs": args.runs,
        "decision": decision,
    }
    if args.report:
        os.makedirs(os.path.dirname(os.path.abspath(args.report)), exist_ok=True)
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(markdown_table(rows, meta))
        clean = [{k: v for k, v in r.items() if k != "decision"} for r in rows]
        for r in clean:
            r["path"] = r["path"] if r["name"] == "fp32" else None  # temporary files
        with open(os.path.splitext(args.report)[0] + ".json", "w", encoding="utf-8") as f:
            json.dump({"meta": meta, "rows": clean}, f, indent=2)
    shutil.rmtree(work, ignore_errors=True)
    return 0
