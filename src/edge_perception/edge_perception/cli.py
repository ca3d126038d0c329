"""``edge-perception`` command: one entry point whose sub-commands are registered by the modules."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Dict, List, Optional

# sub-command name -> "module:function" that adds its parser; modules are imported lazily so that
# `edge-perception --help` does not import torch.
SUBCOMMANDS: Dict[str, str] = {}


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
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
