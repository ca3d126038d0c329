"""``edge-perception trt-build``: build (or check) a TensorRT engine from an ONNX model, offline.

Examples::

    edge-perception trt-build models/lane.onnx --precision fp16
    edge-perception trt-build models/rtdetr.onnx --precision int8 --policy rtdetr \\
        --calib-data data/carla --calib-images 100
    edge-perception trt-build models/lane_qdq.onnx --precision int8      # explicit (Q/DQ) INT8
    edge-perception trt-build models/yolact.onnx --precision int8 --policy yolact \\
        --dla-core 0 --calib-data data/carla                             # DLA + GPU fallback
    edge-perception trt-build models/yolact.onnx --policy yolact --explain-policy  # no TensorRT

Exit status: 0 built / cache valid, 1 build failed or (``--check``) engine stale, 2 bad arguments.
The engine goes beside the model as ``<stem>.<precision>[.dla<N>].engine`` with its ``.json``
key sidecar, unless ``--output`` / ``--cache-dir`` say otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, Tuple

from .builder import BuildError, BuildOptions
from .calibrator import ALGORITHMS, DEFAULT_NUM_IMAGES, CalibrationError
from .policy import PRECISIONS, PRESETS, PolicyError, load_policy
from .shapes import Shape, parse_shape_arg

PROG = "edge-perception trt-build"


def _shape(text: str) -> Tuple[str, Tuple[Shape, Shape, Shape]]:
    try:
        return parse_shape_arg(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected an integer, got %r" % text) from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive, got %d" % value)
    return value


def _dla_core(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a DLA core index (0 or 1 on Xavier)") from None
    if value < 0:
        raise argparse.ArgumentTypeError("DLA core must be >= 0, got %d" % value)
    return value


def register(parser: argparse.ArgumentParser) -> None:
    """Add the trt-build arguments to ``parser`` and set ``run``."""
    parser.description = __doc__.split("\n\n")[0] if __doc__ else None
    parser.add_argument("model", help="ONNX model (FP32, or Q/DQ for explicit INT8)")
    parser.add_argument("-o", "--output", help="engine path (default: beside the model)")
    parser.add_argument("--cache-dir", help="folder for engines (default: the model's folder)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp16",
        help="widest kernel set: fp32, fp16, or int8 (= INT8 + FP16)",
    )
    parser.add_argument(
        "--policy",
        help="precision policy: preset (%s) or YAML/JSON file" % ", ".join(sorted(PRESETS)),
    )
    parser.add_argument("--dla-core", type=_dla_core, help="build for this DLA core")
    parser.add_argument(
        "--no-gpu-fallback",
        action="store_true",
        help="with --dla-core: fail when a layer cannot run on the DLA",
    )
    parser.add_argument(
        "--workspace-mb",
        type=_positive,
        default=1024,
        help="builder workspace memory-pool limit in MiB (default 1024)",
    )
    parser.add_argument(
        "--timing-cache", help="timing cache file (default: timing.cache beside the engine)"
    )
    parser.add_argument(
        "--shape",
        type=_shape,
        action="append",
        default=[],
        metavar="NAME:DIMS[,OPT,MAX]",
        help="input shape, e.g. images:1x3x384x640 (repeatable)",
    )
    parser.add_argument(
        "--opt-level",
        type=int,
        choices=range(0, 6),
        metavar="0-5",
        help="builder optimisation level (TensorRT >= 8.6)",
    )
    cal = parser.add_argument_group("INT8 calibration (implicit quantisation)")
    cal.add_argument("--calib-data", help="dataset root (<root>/<split>/images) or image folder")
    cal.add_argument("--calib-split", default="train", help="dataset split (default train)")
    cal.add_argument(
        "--calib-images",
        type=_positive,
        default=DEFAULT_NUM_IMAGES,
        help="images used (default %d; 50-100 recommended)" % DEFAULT_NUM_IMAGES,
    )
    cal.add_argument("--calib-batch", type=_positive, default=8, help="calibration batch size")
    cal.add_argument(
        "--calibrator",
        choices=ALGORITHMS,
        default="entropy",
        help="entropy (IInt8EntropyCalibrator2, default) or minmax",
    )
    cal.add_argument("--calib-cache", help="calibration cache (default <engine>.calib)")
    act = parser.add_mutually_exclusive_group()
    act.add_argument("--force", action="store_true", help="rebuild even if the cache is valid")
    act.add_argument(
        "--check",
        action="store_true",
        help="only check the cached engine's key (exit 1 when stale)",
    )
    act.add_argument(
        "--explain-policy",
        action="store_true",
        help="print which ONNX nodes each policy rule selects, then exit",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="TensorRT verbose log")
    parser.set_defaults(run=run)


def _usage_error(message: str) -> int:
    sys.stderr.write("%s: error: %s\n" % (PROG, message))
    return 2


def options_from_args(args: argparse.Namespace) -> BuildOptions:
    """Validated :class:`BuildOptions` from parsed arguments (raises Build/PolicyError)."""
    shapes: Dict[str, Tuple[Shape, Shape, Shape]] = {}
    for name, triple in args.shape:
        if name in shapes:
            raise BuildError("--shape given twice for input %r" % name)
        shapes[name] = triple
    opts = BuildOptions(
        precision=args.precision,
        policy=load_policy(args.policy),
        dla_core=args.dla_core,
        gpu_fallback=not args.no_gpu_fallback,
        workspace_mb=args.workspace_mb,
        timing_cache=args.timing_cache,
        calib_data=args.calib_data,
        calib_split=args.calib_split,
        calib_images=args.calib_images,
        calib_batch=args.calib_batch,
        calib_algorithm=args.calibrator,
        calib_cache=args.calib_cache,
        shapes=shapes,
        optimization_level=args.opt_level,
        verbose=args.verbose,
    )
    opts.validate()
    return opts


def _explain(args: argparse.Namespace, opts: BuildOptions) -> Dict[str, Any]:
    from .policy import onnx_node_names, rule_matches, summarize

    if opts.policy is None:
        raise PolicyError("--explain-policy needs --policy")
    names = onnx_node_names(args.model)
    rules = []
    for rule, matched in rule_matches(opts.policy, names):
        rules.append(
            {
                "pattern": rule.pattern,
                "precision": rule.precision,
                "nodes": len(matched),
                "examples": matched[:5],
            }
        )
    return {
        "policy": opts.policy.name,
        "nodes": len(names),
        "precisions": summarize(opts.policy, names),
        "rules": rules,
    }


def run(args: argparse.Namespace) -> int:
    """Entry point of the sub-command; returns the exit status."""
    if not os.path.isfile(args.model):
        return _usage_error("model %s does not exist" % args.model)
    if not args.model.endswith(".onnx"):
        return _usage_error("model must be an .onnx file, got %s" % args.model)
    try:
        opts = options_from_args(args)
    except (BuildError, PolicyError) as exc:
        return _usage_error(str(exc))
    if opts.calib_data and not os.path.isdir(opts.calib_data):
        return _usage_error("--calib-data %s is not a folder" % opts.calib_data)

    if args.explain_policy:
        try:
            explained = _explain(args, opts)
        except PolicyError as exc:
            return _usage_error(str(exc))
        if args.json:
            print(json.dumps(explained, indent=2))
        else:
            print(
                "policy %s over %d ONNX nodes: %s"
                % (explained["policy"], explained["nodes"], explained["precisions"])
            )
            for r in explained["rules"]:
                flag = "" if r["nodes"] else "   <- matches nothing"
                print(
                    "  %-60s %-5s %4d nodes%s" % (r["pattern"], r["precision"], r["nodes"], flag)
                )
                for ex in r["examples"]:
                    print("      %s" % ex)
        return 0

    from . import cache as cache_mod
    from .builder import build_engine, ensure_engine, rebuild_command

    engine_path = args.output or cache_mod.engine_path_for(
        args.model, opts.precision, opts.dla_core, args.cache_dir
    )
    from . import INSTALL_HINT, tensorrt_available

    if not tensorrt_available():
        sys.stderr.write("%s: cannot build here: %s\n" % (PROG, INSTALL_HINT))
        return 1
    result: Dict[str, Any]
    try:
        if args.check:
            try:
                path, key, how = ensure_engine(
                    args.model, opts, engine_path, build_if_missing=False
                )
            except cache_mod.EngineCacheError as exc:
                print(str(exc))
                return 1
            result = {"engine": path, "state": how, "key": key.diagnostics()}
        elif args.force:
            report = build_engine(args.model, engine_path, opts)
            result = {
                "engine": engine_path,
                "state": "built",
                "key": report.key.diagnostics(),
                "build": report.to_dict(),
            }
        else:
            path, key, how = ensure_engine(args.model, opts, engine_path, build_if_missing=True)
            result = {"engine": path, "state": how, "key": key.diagnostics()}
            doc = cache_mod.read_sidecar(path) or {}
            if "build" in doc:
                result["build"] = doc["build"]
    except (BuildError, CalibrationError, cache_mod.EngineCacheError) as exc:
        sys.stderr.write("%s: %s\n" % (PROG, exc))
        sys.stderr.write("rebuild command: %s\n" % rebuild_command(args.model, opts))
        return 1
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print("%s: %s (%s)" % (result["state"], result["engine"], result["key"]["engine_key"]))
        fallback = result.get("build", {}).get("gpu_fallback_layers") or []
        if fallback:
            print(
                "%d layer(s) fell back from DLA to GPU: %s" % (len(fallback), ", ".join(fallback))
            )
    return 0
