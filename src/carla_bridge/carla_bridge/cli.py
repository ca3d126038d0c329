"""``carla-bridge`` command line: one sub-command per entry of ``SUBCOMMANDS``.

Adding a sub-command is one line: ``"name": "package.module:register"``, where
``register(parser: argparse.ArgumentParser) -> None`` adds the arguments and calls
``parser.set_defaults(func=run)`` with ``run(args) -> int``. Only the chosen sub-command's module
is imported, so ROS sub-commands cost nothing (and need no rclpy) for the others.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Dict, List, Optional

SUBCOMMANDS: Dict[str, str] = {
    "generate": "carla_bridge.cli:register_generate",
    "strip": "carla_bridge.cli:register_strip",
    # slots for the ROS tools (carla_bridge/ros/...):
    # "replay": "carla_bridge.ros.replay:register",
    # "record": "carla_bridge.ros.record:register",
    # "publish": "carla_bridge.ros.scenario_publisher:register",
}

HELP = {
    "generate": "render a labelled dataset (train + validation splits)",
    "strip": "draw labelled sample frames of a dataset into one PNG",
}


def register_generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="dataset directory (created / resumed)")
    p.add_argument("--scenario", default=None, help="scenario YAML (config/scenarios/*.yaml)")
    p.add_argument("--train-sequences", type=int, default=16)
    p.add_argument(
        "--val-sequences",
        type=int,
        default=None,
        help="default: the standard VALIDATION_SPLIT size",
    )
    p.add_argument(
        "--frames-per-seq",
        type=int,
        default=None,
        help="default: the scenario's frames (train), VALIDATION_SPLIT's (val)",
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="train split seed (0..9999)")
    p.add_argument("--width", type=int, default=None, help="image width (default 640)")
    p.add_argument("--height", type=int, default=None, help="image height (default 384)")
    p.add_argument("--backend", choices=("synthetic", "carla"), default=None)
    p.add_argument("--host", default=None, help="CARLA host")
    p.add_argument("--port", type=int, default=None, help="CARLA port")
    p.add_argument(
        "--no-effects",
        action="store_true",
        help="synthetic: no sensor noise / rain streaks / blur / glare",
    )
    p.add_argument(
        "--flow-compression",
        choices=("deflate", "store"),
        default="deflate",
        help="flow .npz: deflate (smaller) or store (faster to write)",
    )
    p.set_defaults(func=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    from carla_bridge.dataset.generate import generate_dataset
    from carla_bridge.scenario import ScenarioConfig

    cfg = ScenarioConfig.from_yaml(args.scenario) if args.scenario else ScenarioConfig()
    cam: Dict[str, int] = {}
    if args.width is not None:
        cam["width"] = args.width
    if args.height is not None:
        cam["height"] = args.height
    changes: Dict[str, object] = {"camera": cam} if cam else {}
    if args.backend:
        changes["backend"] = args.backend
    carla = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if carla:
        changes["carla"] = carla
    if changes:
        cfg = cfg.replace(**changes)
    options = {"effects": False} if args.no_effects and cfg.backend == "synthetic" else {}
    manifest = generate_dataset(
        args.out,
        cfg,
        args.train_sequences,
        args.val_sequences,
        args.frames_per_seq,
        workers=args.workers,
        seed=args.seed,
        backend_options=options,
        flow_compression=args.flow_compression,
    )
    sp = manifest["splits"]
    print(
        f"wrote {args.out}: train {sp['train']['frames']} frames / {sp['train']['objects']} "
        f"objects, val {sp['val']['frames']} frames; data_version {manifest['data_version']}"
    )
    return 0


def register_strip(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="dataset directory")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--split", default="train", choices=("train", "val"))
    p.add_argument("--n", type=int, default=8, help="number of frames (spread over the split)")
    p.add_argument("--cols", type=int, default=2)
    p.set_defaults(func=run_strip)


def run_strip(args: argparse.Namespace) -> int:
    from carla_bridge.viz import sample_strip

    path = sample_strip(args.dataset, args.out, split=args.split, n=args.n, cols=args.cols)
    print(f"wrote {path}")
    return 0


def oserror_line(exc: OSError) -> str:
    from edge_perception.datafiles import oserror_line as line

    return line(exc)


def _load_register(spec: str):  # noqa: ANN202 - returns the register callable
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``carla-bridge`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="carla-bridge", description="Generate and inspect labelled driving datasets."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    for name, spec in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=HELP.get(name, spec))
        if name == chosen:
            _load_register(spec)(sp)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, RuntimeError) as exc:  # incl. DataError, CARLA connection errors
        msg = oserror_line(exc) if isinstance(exc, OSError) and exc.filename else str(exc)
        print(
            "carla-bridge %s: error: %s" % (args.command, " ".join(msg.split())), file=sys.stderr
        )
        return 2
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
