"""``edge-perception lane-eval``: per-class IoU, mIoU, lane-line F1 of a checkpoint or ONNX model.

The model runs at its input size (from the checkpoint or the ONNX graph); labels are resized to it
with nearest-neighbour sampling, so the line tolerance is in pixels of that size. ONNX models run
through a real ONNX Runtime CPU session (output ``mask``). Results go to JSON and a Markdown table.

``--polylines`` also scores the lane *lines* the node would publish: the runtime's line extraction
(:func:`edge_perception.lane.postprocess.extract_lines`, ``--row-step``) on each predicted mask,
against the dataset's ground-truth polylines (``annotations/lanes.json``) scaled to the model
size, with :class:`edge_perception.metrics.lanes.LaneLineMeter` (``--line-x-tol`` pixels).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from edge_perception.config import LINE_EXTEND
from edge_perception.datafiles import DataError, SkipLog
from edge_perception.export import ort_session, write_json
from edge_perception.lane import LANE_CLASSES, LINE_CLASSES
from edge_perception.lane.data import LaneDataset
from edge_perception.metrics.lanes import LaneLineMeter, Line
from edge_perception.metrics.segmentation import SegmentationMeter
from edge_perception.runtime.preprocess import add_interpolation_argument

Predictor = Callable[[np.ndarray], np.ndarray]  # N x 3 x H x W float32 -> N x H x W class ids


def torch_predictor(model: torch.nn.Module) -> Predictor:
    """Arg-max predictor of a PyTorch lane model (training or deploy mode)."""
    model.eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = model(torch.from_numpy(x))
        logits = out[0] if isinstance(out, (tuple, list)) else out
        return logits.argmax(1).numpy().astype(np.uint8)

    return run


def onnx_predictor(path: str, threads: int = 1) -> Tuple[Predictor, Tuple[int, int]]:
    """Predictor over an ONNX lane model and its (H, W) input size."""
    sess = ort_session(path, threads)
    names = [o.name for o in sess.get_outputs()]
    if "mask" not in names and "logits" not in names:
        raise DataError(
            path, f"is not a lane model: outputs {names} lack 'mask'/'logits' (docs/CONTRACTS.md)"
        )
    shape = sess.get_inputs()[0].shape
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
        raise DataError(path, f"input shape {shape} is not a static N x 3 x H x W")
    in_name = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        if "mask" in names:
            return sess.run(["mask"], {in_name: x})[0]
        return sess.run(["logits"], {in_name: x})[0].argmax(1).astype(np.uint8)

    return run, (int(shape[2]), int(shape[3]))


def ground_truth_lines(dataset: LaneDataset) -> List[List[Line]]:
    """Per sample of ``dataset``, its ground-truth polylines in model-input pixels.

    Types: ``double`` (two solid lines) counts as ``solid``, the runtime's two line types.
    """
    folder = os.path.join(dataset.root, dataset.split)
    path = os.path.join(folder, "annotations", "lanes.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: --polylines needs the dataset's lane lines")
    with open(path, encoding="utf-8") as f:
        by_name = {im["file_name"]: im["lines"] for im in json.load(f)["images"]}
    cam = dataset.manifest["generator"]["scenario"]["camera"]
    sx = dataset.size[1] / float(cam["width"])
    sy = dataset.size[0] / float(cam["height"])
    out: List[List[Line]] = []
    for jpg, _png in dataset.samples:
        name = os.path.relpath(jpg, os.path.join(folder, "images")).replace(os.sep, "/")
        lines = by_name.get(name, [])
        out.append(
            [
                (
                    np.asarray(ln["points"], np.float64) * (sx, sy),
                    "dashed" if ln["type"] == "dashed" else "solid",
                )
                for ln in lines
            ]
        )
    return out


def evaluate(
    predict: Predictor,
    dataset: LaneDataset,
    batch_size: int = 4,
    tol: float = 2.0,
    progress: bool = True,
    polylines: Optional[LaneLineMeter] = None,
    line_options: Optional[Dict[str, Any]] = None,
    lines_from_labels: bool = False,
) -> Dict[str, object]:
    """Run ``predict`` over ``dataset`` and return :meth:`SegmentationMeter.compute` + timing;
    with ``polylines``, also the lane-line scores (key ``polylines``, see the module docstring).

    ``line_options``: keyword arguments of ``extract_lines`` (``row_step``, ``merge_gap``, ...).
    ``lines_from_labels``: trace the lines on the ground-truth class masks instead of the
    predictions — the score the tracer reaches with a perfect network (its upper bound)."""
    from edge_perception.lane.postprocess import DEFAULT_EXTEND, extract_lines

    meter = SegmentationMeter(LANE_CLASSES, line_classes=LINE_CLASSES, tol=tol)
    gt_lines = ground_truth_lines(dataset) if polylines is not None else []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    t0 = time.perf_counter()
    seen, line_s = 0, 0.0
    opts = dict(line_options or {})
    opts.setdefault("extend", DEFAULT_EXTEND)
    for x, y in tqdm(loader, desc="eval", disable=not progress, leave=False):
        masks = predict(x.numpy())
        meter.update(masks, y.numpy())
        if polylines is not None:
            traced = y.numpy().astype(np.uint8) if lines_from_labels else masks
            for mask in traced:
                t = time.perf_counter()
                found = extract_lines(mask, **opts)
                line_s += time.perf_counter() - t
                polylines.update([(ln.points, ln.type) for ln in found], gt_lines[seen])
                seen += 1
    out = meter.compute()
    out["seconds"] = time.perf_counter() - t0
    if polylines is not None:
        out["polylines"] = polylines.compute()
        out["polylines"].update(
            opts,
            traced_on="labels" if lines_from_labels else "predictions",
            extract_ms=1e3 * line_s / max(1, seen),
        )
    return out


def markdown_table(rows: Sequence[Tuple[str, Dict[str, object]]]) -> str:
    """Markdown table: one row per (name, metrics) with mIoU, per-class IoU, line F1."""
    head = ["model", "mIoU"] + [f"IoU {c}" for c in LANE_CLASSES] + ["line P", "line R", "line F1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def f(v: object) -> str:
        return "n/a" if v is None else f"{float(v):.4f}"  # type: ignore[arg-type]

    for name, m in rows:
        iou = m["iou"]
        cells = [name, f(m["miou"])] + [f(iou[c]) for c in LANE_CLASSES]  # type: ignore[index]
        cells += [f(m["line_precision"]), f(m["line_recall"]), f(m["line_f1"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def polyline_table(rows: Sequence[Tuple[str, Dict[str, object]]]) -> str:
    """Markdown table of the polyline scores (rows evaluated with ``--polylines``)."""
    head = ["model", "row step", "extend", "line P", "line R", "line F1", "type acc", "extract ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in rows:
        q = m["polylines"]  # type: ignore[index]
        cells = [name, str(q.get("row_step", 1)), str(q.get("extend", 0.0))] + [
            "n/a" if q[k] is None else "%.4f" % q[k]
            for k in ("precision", "recall", "f1", "type_accuracy")
        ]
        lines.append("| " + " | ".join(cells + ["%.2f" % q["extract_ms"]]) + " |")
    return "\n".join(lines) + "\n"


def evaluate_path(
    model_path: str,
    data: str,
    split: str = "val",
    size: Optional[Tuple[int, int]] = None,
    limit: Optional[int] = None,
    tol: float = 2.0,
    threads: int = 1,
    progress: bool = True,
    polylines: Optional[LaneLineMeter] = None,
    line_options: Optional[Dict[str, Any]] = None,
    lines_from_labels: bool = False,
    interpolation: str = "area",
    skip: Optional[SkipLog] = None,
) -> Dict[str, object]:
    """Evaluate a ``.pt`` checkpoint or ``.onnx`` model file on a data split (polyline options:
    see :func:`evaluate`). A bad sample is a DataError unless ``skip`` allows skipping it; the
    skipped files are then listed in the result (``skipped``)."""
    if model_path.endswith(".onnx"):
        predict, model_size = onnx_predictor(model_path, threads)
        if size is not None and tuple(size) != model_size:
            raise DataError(model_path, f"takes input size {model_size}, not --size {size}")
    else:
        from edge_perception.lane.model import load_checkpoint

        torch.set_num_threads(threads)
        model, ckpt = load_checkpoint(model_path)
        predict = torch_predictor(model)
        model_size = tuple(size or ckpt.get("input_size", (192, 320)))  # type: ignore[assignment]
    ds = LaneDataset(
        data,
        split,
        size=model_size,
        limit=limit,
        cache=False,
        interpolation=interpolation,
        skip=skip,
    )
    out = evaluate(predict, ds, tol=tol, progress=progress, polylines=polylines,
                   line_options=line_options, lines_from_labels=lines_from_labels)  # fmt: skip
    out.update(
        model=os.path.abspath(model_path),
        split=split,
        input_size=list(model_size),
        interpolation=interpolation,
        frames=len(ds),
        skipped=list(skip.skipped) if skip is not None else [],
    )
    return out


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edge-perception lane-eval``."""
    parser.description = __doc__
    parser.add_argument("--model", required=True, help="lane-train checkpoint (.pt) or .onnx")
    parser.add_argument("--data", required=True, help="carla_bridge data set root")
    parser.add_argument("--split", default="val")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None)
    parser.add_argument("--limit", type=int, default=None, help="first N frames only")
    parser.add_argument("--tol", type=float, default=2.0, help="lane-line F1 tolerance (px)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--polylines", action="store_true", help="also score the extracted lane lines"
    )
    parser.add_argument("--row-step", type=int, default=1, help="line extraction row step")
    add_interpolation_argument(parser)
    parser.add_argument(
        "--merge-gap", type=int, default=None, help="line joining gap in rows (0 = off)"
    )
    parser.add_argument(
        "--line-extend",
        type=float,
        default=LINE_EXTEND,
        help="continue lines below their lowest traced row, up to this many times their "
        "traced height (0 = off; the lane node's line_extend)",
    )
    parser.add_argument(
        "--lines-from-labels",
        action="store_true",
        help="trace the lines on the ground-truth masks (the tracer's upper bound)",
    )
    parser.add_argument(
        "--line-x-tol", type=float, default=8.0, help="polyline x tolerance (model px)"
    )
    parser.add_argument(
        "--line-min-acc", type=float, default=0.85, help="row fraction a matched line must hit"
    )
    parser.add_argument("--out", default=None, help="JSON result path")
    parser.add_argument("--md", default=None, help="Markdown table path")
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip missing / corrupt samples (counted and listed) instead of stopping",
    )
    parser.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    meter = (
        LaneLineMeter(x_tol=args.line_x_tol, min_accuracy=args.line_min_acc)
        if args.polylines
        else None
    )
    line_options: Dict[str, Any] = {"row_step": args.row_step, "extend": args.line_extend}
    skip = SkipLog(args.skip_bad)
    if args.merge_gap is not None:
        line_options["merge_gap"] = args.merge_gap
    res = evaluate_path(
        args.model, args.data, args.split, args.size, args.limit, args.tol, args.threads,
        polylines=meter, line_options=line_options, lines_from_labels=args.lines_from_labels,
        interpolation=args.interpolation, skip=skip,
    )  # fmt: skip
    if skip.skipped:
        import sys

        print(skip.summary(), file=sys.stderr)
    table = markdown_table([(os.path.basename(args.model), res)])
    if meter is not None:
        table += "\n" + polyline_table([(os.path.basename(args.model), res)])
    print(table)
    if args.out:
        write_json(args.out, res)
    if args.md:
        from edge_perception.export import atomic_write_bytes

        atomic_write_bytes(args.md, table.encode("utf-8"))
    return 0


if __name__ == "__main__":
    import sys

    p = argparse.ArgumentParser(prog="python -m edge_perception.lane.evaluate")
    register(p)
    sys.exit(main(p.parse_args()))
