"""``edge-perception``: one entry point whose sub-commands are registered by the modules."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Dict, List, Optional

# sub-command name -> "module:function" that adds its parser; modules are imported lazily so that
# `edge-perception --help` does not import torch.
# Each target module defines ``register(parser)``: it adds its arguments and calls
# ``parser.set_defaults(run=func)`` where ``func(args) -> int`` is the exit status.
SUBCOMMANDS: Dict[str, str] = {
    "lane-train": "edge_perception.lane.train:register",
    "lane-eval": "edge_perception.lane.evaluate:register",
    "lane-export": "edge_perception.lane.export:register",
    "lane-quantize": "edge_perception.lane.compress:register",
    "det-train": "edge_perception.detection.train:register",
    "det-eval": "edge_perception.detection.evaluate:register",
    "det-export": "edge_perception.detection.export:register",
    "det-quantize": "edge_perception.detection.compress:register",
    "det-track-eval": "edge_perception.detection.track_eval:register",
    "vis-train": "edge_perception.vis.cli:register_train",
    "vis-export": "edge_perception.vis.cli:register_export",
    "vis-eval": "edge_perception.vis.cli:register_eval",
    "trt-build": "edge_perception.tensorrt.cli:register",
    "run": "edge_perception.ros.runner:register",
    "demo": "edge_perception.demo:register",
}

# sub-command name -> one line for `edge-perception --help` (kept here: no module is imported)
SUMMARIES: Dict[str, str] = {
    "lane-train": "train a lane segmentation U-Net on a dataset (checkpoints, curves, resume)",
    "lane-eval": "lane mIoU (+ lane-line F1 with --polylines) of a checkpoint / ONNX model",
    "lane-export": "export a lane checkpoint to ONNX, with a parity check",
    "lane-quantize": "INT8 lane models (PTQ, QAT, dynamic) vs FP32 behind the accuracy gate",
    "det-train": "train the RT-DETR-family detector or the YOLOX-nano baseline (resumable)",
    "det-eval": "COCO mAP of a detector checkpoint / ONNX model, per class and size",
    "det-export": "export a detector checkpoint to ONNX (boxes, scores, labels; no NMS)",
    "det-quantize": "INT8 detector variants (all / mixed) vs FP32 behind the mAP gate",
    "det-track-eval": "detector + tracker over a split's sequences: MOTA / IDF1 / HOTA",
    "vis-train": "train the YolactEdge-style video instance segmentation model",
    "vis-export": "export the VIS model's key / non-key / head graphs to ONNX",
    "vis-eval": "video instance segmentation AP of a VIS model on a split",
    "trt-build": "build or check TensorRT engines of a model for this GPU and precision",
    "run": "start a deployment YAML's nodes + lifecycle manager without ros2 launch",
    "demo": "closed-loop demo: scenario publisher, lane + detection nodes, evaluator, report",
}


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="edge-perception",
        description="edge_perception: train, evaluate, export and quantize the models; run the "
        "ROS 2 nodes. `edge-perception COMMAND --help` lists a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, target in SUBCOMMANDS.items():
        summary = SUMMARIES.get(name, "")
        if argv and argv[0] != name:
            sub.add_parser(name, help=summary)
            continue
        module, func = target.split(":")
        register: Callable[[argparse.ArgumentParser], None] = getattr(
            importlib.import_module(module), func
        )
        register(sub.add_parser(name, help=summary, description=summary))
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    return run_guarded(f"edge-perception {args.command}", args.run, args)


def run_guarded(prog: str, func: Callable[..., Optional[int]], *args: object) -> int:
    """``func(*args)``; bad input (a missing, corrupt or wrong data / model file) ends in one line
    ``<prog>: error: <file>: <what is wrong>`` and exit status 2, never a traceback."""
    from edge_perception.backends.base import BackendError
    from edge_perception.datafiles import DataError, cli_error, oserror_line

    try:
        return int(func(*args) or 0)
    except (DataError, BackendError) as exc:
        return cli_error(prog, exc)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        if exc.filename is None:  # not about one of the user's files: a bug, show it all
            raise
        return cli_error(prog, oserror_line(exc))


if __name__ == "__main__":
    sys.exit(main())
