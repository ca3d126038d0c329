"""``edge-perception lane-export``: lane checkpoint -> ONNX (contract I/O), parity check, manifest.

The graph takes ``images`` float32 ``[N, 3, H, W]`` RGB in ``[0, 1]`` and returns ``logits``
float32 ``[N, C, H, W]`` and ``mask`` uint8 ``[N, H, W]`` (docs/CONTRACTS.md); H, W are fixed to
the training size, N is dynamic. Export fails (and writes nothing) when ONNX Runtime disagrees with
PyTorch beyond ``--atol``.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from dataclasses import asdict
from typing import Dict, Optional, Sequence, Tuple

import torch

from edge_perception.export import check_parity, export_onnx, write_manifest
from edge_perception.lane import LANE_CLASSES
from edge_perception.lane.model import LaneUNet, load_checkpoint

INPUT_NAMES = ("images",)
OUTPUT_NAMES = ("logits", "mask")


def export_lane_model(
    model: LaneUNet,
    path: str,
    size: Tuple[int, int],
    info: Optional[Dict[str, object]] = None,
    atol: float = 1e-3,
    seed: int = 0,
) -> Dict[str, object]:
    """Export ``model`` at ``size`` (H, W) to ``path``, check parity, write the sidecar manifest.

    Returns the manifest dict. Raises ``RuntimeError`` (and removes the file) if parity fails.
    """
    model = copy.deepcopy(model).deploy()  # the caller's model keeps its mode
    g = torch.Generator().manual_seed(seed)
    example = torch.rand(1, 3, size[0], size[1], generator=g)
    export_onnx(model, (example,), path, INPUT_NAMES, OUTPUT_NAMES)
    probe = torch.rand(2, 3, size[0], size[1], generator=g)
    report = check_parity(model, path, {"images": probe}, atol=atol)
    if not report.ok:
        os.unlink(path)
        raise RuntimeError(f"ONNX parity failed for {path}: {report.as_dict()}")
    data: Dict[str, object] = {
        "task": "lane_segmentation",
        "classes": list(LANE_CLASSES),
        "input_size": [int(size[0]), int(size[1])],
        "input_format": "RGB float32 in [0, 1], NCHW; normalisation inside the graph",
        "input_names": list(INPUT_NAMES),
        "output_names": list(OUTPUT_NAMES),
        "model_config": asdict(model.config),
        "parity": report.as_dict(),
        "precision": "fp32",
    }
    data.update(info or {})
    write_manifest(path, data)
    return data


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edge-perception lane-export``."""
    parser.description = __doc__
    parser.add_argument("--checkpoint", required=True, help="lane-train checkpoint (.pt)")
    parser.add_argument("--out", required=True, help="output .onnx path")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="input size (default: the training size stored in the checkpoint)",
    )
    parser.add_argument("--atol", type=float, default=1e-3, help="logits parity tolerance")
    parser.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    model, ck = load_checkpoint(args.checkpoint)
    size: Sequence[int] = args.size or ck.get("input_size", (192, 320))  # type: ignore[assignment]
    info = {
        "command": " ".join(["edge-perception lane-export"] + sys.argv[1:]),
        "checkpoint": os.path.abspath(args.checkpoint),
        "seed": ck.get("seed"),
        "data_version": ck.get("data_version"),
        "metrics": {"val": ck.get("metrics")},
        "train_epoch": int(ck.get("epoch", -1)) + 1,  # type: ignore[arg-type]
        "loss": ck.get("loss"),
    }
    data = export_lane_model(model, args.out, (int(size[0]), int(size[1])), info, args.atol)
    print(f"wrote {args.out} ({data['parity']})")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m edge_perception.lane.export")
    register(p)
    sys.exit(main(p.parse_args()))
