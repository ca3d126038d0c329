"""``edge-perception vis-train`` / ``vis-export`` / ``vis-eval``: the VIS model's commands.

- ``vis-train`` is :mod:`edge_perception.vis.train` (stages image -> flow -> video, resumable);
- ``vis-export`` writes ``<out>_key.onnx``, ``<out>_nonkey.onnx``, ``<out>_head.onnx`` from a
  ``vis-train`` checkpoint (ONNX Runtime parity checked per graph) and the manifest
  ``<out>_key.json`` (class names, input size, I/O names, MACs per path, commands, seed, data
  version) that the node reads::

      edge-perception vis-train --stage video ... --out runs/vis_video
      edge-perception vis-export --checkpoint runs/vis_video/best.pt --out models/vis_small

- ``vis-eval`` runs the exported graphs through the node's pipeline
  (:mod:`edge_perception.vis.video_eval`) in image mode (every frame a keyframe) and video mode
  (the keyframe policy, K = 5 by default) over the val split: frame mask AP, YouTube-VIS video AP,
  HOTA / IDF1 / MOTA on the split's track ids, mean per-frame cost and the key ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Optional

from edge_perception.config import OBJECT_CLASS_NAMES


def register_train(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edge-perception vis-train`` (``python -m edge_perception.vis.train``'s)."""
    from edge_perception.vis import train

    parser.description = (train.__doc__ or "").split("\n\n")[0]
    train.register(parser)
    parser.set_defaults(run=train.main)


def register_export(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edge-perception vis-export``."""
    parser.description = "Export a vis-train checkpoint to the key / nonkey / head ONNX graphs."
    parser.add_argument("--checkpoint", required=True, help="vis-train checkpoint (best.pt)")
    parser.add_argument(
        "--out", required=True, help="output prefix: <out>_key.onnx, _nonkey, _head, _key.json"
    )
    parser.add_argument("--input-size", type=int, nargs=2, default=None, metavar=("H", "W"))
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument(
        "--dynamic-batch",
        action="store_true",
        help="symbolic batch dimension (default: batch 1, every shape static, which ONNX Runtime "
        "runs faster: vis.export.export_vis)",
    )
    parser.add_argument("--no-ema", action="store_true", help="raw weights instead of the EMA")
    parser.add_argument("--no-parity", action="store_true", help="skip the ORT parity checks")
    parser.add_argument("--note", action="append", default=[], help="provenance line (repeat)")
    parser.set_defaults(run=export_main)


def _data_version(root: Optional[str]) -> Optional[str]:
    path = os.path.join(root, "manifest.json") if root else ""
    if not path or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("data_version")


def export_main(args: argparse.Namespace) -> int:
    """Body of ``vis-export``: the three graphs, parity, the manifest beside the key graph."""
    import torch

    from edge_perception.datafiles import load_torch
    from edge_perception.export import write_manifest
    from edge_perception.runtime import vis as rv
    from edge_perception.vis import export as vx
    from edge_perception.vis.export import export_vis, path_costs
    from edge_perception.vis.model import vis_from_checkpoint

    torch.set_num_threads(1)
    ckpt = load_torch(args.checkpoint, "vis-train checkpoint", keys=("vis_config", "model"))
    model = vis_from_checkpoint(ckpt, use_ema=not args.no_ema).eval()
    train_args: Any = ckpt.get("args", {})
    size = tuple(args.input_size or train_args.get("input_size", (288, 480)))
    info = export_vis(
        model,
        args.out,
        size,
        opset=args.opset,
        parity=not args.no_parity,
        dynamic_batch=args.dynamic_batch,
    )
    costs = path_costs(model, size)
    n = model.num_classes
    key = info["paths"]["key"]
    manifest = {
        "task": "vis",
        "variant": train_args.get("variant"),
        "stage": ckpt.get("stage"),
        "class_names": OBJECT_CLASS_NAMES[:n] if n <= len(OBJECT_CLASS_NAMES) else None,
        "input_size": list(size),
        "graphs": {g: os.path.basename(p) for g, p in info["paths"].items()},
        "io": {
            "key": {"inputs": ["images"], "outputs": rv.KEY_OUTPUTS},
            "nonkey": {"inputs": vx.nonkey_inputs(model), "outputs": rv.NONKEY_OUTPUTS},
            "head": {"inputs": rv.HEAD_INPUTS, "outputs": rv.HEAD_OUTPUTS},
        },
        "nonkey_layers": model.cfg.nonkey_layers,
        "nonkey_propagate": model.propagator is not None,
        "mask_margin": model.cfg.mask_margin,
        "batch": "N" if args.dynamic_batch else 1,
        "macs": {
            "key_path": costs["key_path"]["macs"],
            "nonkey_path": costs["nonkey_path"]["macs"],
            "ratio": costs["ratio"],
        },
        "command": " ".join(["edge-perception", "vis-export", *sys.argv[2:]]),
        "train_command": train_args.get("command"),
        "seed": train_args.get("seed"),
        "data_version": _data_version(train_args.get("data")),
        "iterations": ckpt.get("iteration"),
        "best_mask_ap": ckpt.get("best"),
        "parity": info["parity"],
        "notes": list(args.note),
    }
    write_manifest(key, manifest)
    total = sum(os.path.getsize(p) for p in info["paths"].values())
    print(
        "wrote %s (%.2f MB in 3 graphs); non-key / key path MACs %.3f"
        % (", ".join(info["paths"].values()), total / 1e6, costs["ratio"])
    )
    return 0


def register_eval(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edge-perception vis-eval``."""
    from edge_perception.runtime.preprocess import add_interpolation_argument

    parser.description = (
        "Image mode and video mode (keyframe policy) of an exported VIS model over a split: frame "
        "mask AP, YouTube-VIS video AP, HOTA / IDF1 / MOTA, per-frame cost."
    )
    parser.add_argument("--model", required=True, help="<name>_key.onnx (siblings beside it)")
    parser.add_argument("--data", required=True, help="carla-bridge generate data set root")
    parser.add_argument("--split", default="val")
    parser.add_argument(
        "--modes", nargs="+", default=["image", "video"], choices=["image", "video"]
    )
    parser.add_argument("--keyframe-interval", type=int, default=5, help="video mode K")
    parser.add_argument(
        "--max-keyframe-age", type=float, default=0.0, help="video mode: s (0 = off: K only)"
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=None,
        help="publish threshold (default: the node's score_threshold)",
    )
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--max-sequences", type=int, default=None)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PARAM=VALUE",
        help="a vis_node parameter for both modes (repeat), e.g. track_appearance_weight=0.5; "
        "YAML values, validated like the node's parameters",
    )
    add_interpolation_argument(parser)
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--md", default=None, help="write the Markdown tables here")
    parser.set_defaults(run=eval_main)


def eval_main(args: argparse.Namespace) -> int:
    """Body of ``vis-eval`` (see :mod:`edge_perception.vis.video_eval`)."""
    from edge_perception.vis.video_eval import evaluate, markdown, node_overrides

    try:
        node_overrides(args.set)
    except ValueError as exc:
        print("vis-eval: error: --set: %s" % exc, file=sys.stderr)
        return 2
    result = evaluate(args)
    text = markdown(result)
    print(text)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2, sort_keys=True)
    if args.md:
        os.makedirs(os.path.dirname(os.path.abspath(args.md)), exist_ok=True)
        with open(args.md, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0
