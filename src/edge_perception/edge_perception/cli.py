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


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="edge-perception", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, target in SUBCOMMANDS.items():
        if argv and argv[0] != name:
            sub.add_parser(name, help=f"see edge-perception {name} --help")
            continue
        module, func = target.split(":")
        register: Callable[[argparse.ArgumentParser], None] = getattr(
            importlib.import_module(module), func
        )
        register(sub.add_parser(name))
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
