"""Compact training checkpoints for the repository (``models/checkpoints/``) and back.

A ``det-train`` ``last.pt`` of ``small`` holds the weights, their EMA and AdamW's two moments, all
fp32 (~27 MB). ``compact`` keeps weights, EMA, RNG states and the schedule position exact and
stores the two Adam moments as bfloat16 (8 exponent bits: the tiny second moments keep their
range, unlike fp16, which flushes values below 6e-8 to zero); ``expand`` turns them back into
fp32 so ``det-train --resume`` loads a normal checkpoint. The continuation from an expanded
checkpoint differs from an uninterrupted run only by the moments' rounding (relative 2^-9)::

    python -m edge_perception.detection.checkpoint compact out/det_long/last.pt \\
        models/checkpoints/det_long_last.pt
    python -m edge_perception.detection.checkpoint expand models/checkpoints/det_long_last.pt \\
        out/det_long/last.pt
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional

import torch

MOMENTS = ("exp_avg", "exp_avg_sq")


def _convert(state: Dict[str, Any], dtype: torch.dtype) -> Dict[str, Any]:
    out = dict(state)
    opt = dict(out["optimizer"])
    opt["state"] = {
        k: {
            name: (v.to(dtype) if name in MOMENTS and torch.is_tensor(v) else v)
            for name, v in st.items()
        }
        for k, st in opt["state"].items()
    }
    out["optimizer"] = opt
    return out


def _save(state: Dict[str, Any], path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def compact(src: str, dst: str) -> int:
    """Write the compact form of ``src`` to ``dst``; returns its size in bytes."""
    state = torch.load(src, map_location="cpu", weights_only=False)
    if "optimizer" not in state or "ema" not in state:
        raise ValueError(f"{src}: not a det-train checkpoint (no optimizer / ema)")
    _save(_convert(state, torch.bfloat16), dst)
    return os.path.getsize(dst)


def expand(src: str, dst: str) -> None:
    """Write ``src`` (compact) with fp32 moments to ``dst``, ready for ``--resume``."""
    state = torch.load(src, map_location="cpu", weights_only=False)
    _save(_convert(state, torch.float32), dst)


def cli(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m edge_perception.detection.checkpoint",
        description="compact (bfloat16 Adam moments) or expand a det-train checkpoint",
    )
    p.add_argument("action", choices=("compact", "expand"))
    p.add_argument("src")
    p.add_argument("dst")
    a = p.parse_args(argv)
    if not os.path.isfile(a.src):
        print(f"error: {a.src}: no such checkpoint file", file=sys.stderr)
        return 2
    try:
        if a.action == "compact":
            size = compact(a.src, a.dst)
            print(f"wrote {a.dst} ({size / 1e6:.1f} MB)")
        else:
            expand(a.src, a.dst)
            print(f"wrote {a.dst}")
    except (ValueError, KeyError, RuntimeError) as exc:
        print(f"error: {a.src}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
