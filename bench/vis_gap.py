"""Where the VIS non-key path loses: box / mask AP against the distance to the keyframe.

For every frame ``i`` of the split's sequences and every gap ``g`` (frames since the keyframe),
the exported non-key graph runs on frame ``i`` against the key graph's state of frame ``i - g``,
then the head graph; all head outputs (the ``K`` best query-class pairs, no score threshold, no
tracker) are scored with COCO box and mask AP over the frames that have such a keyframe. Row
``key`` is the key path on every frame. So the table separates the non-key path's own loss
(gap 1; gap 0, ``--min-gap 0``, runs it against its own frame's keyframe state) from what
motion adds (gap 2, 3, 4) -- the keyframe policy trades exactly this::

    python bench/vis_gap.py --model models/vis_small_key.onnx --data data/vis_train --split val

``--split train --every 15`` scores a sample of the clips the model was trained on instead: a
non-key loss as large there as on val is the path's capacity, not over-fitting.

Writes ``bench/results/<name>.{json,md}`` (default ``vis_gap``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import environment, markdown_table, publish_results  # noqa: E402


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/vis_small_key.onnx")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--min-gap", type=int, default=1,
                    help="0 adds the non-key path against its own frame's keyframe state: "
                         "its loss without any motion")  # fmt: skip
    ap.add_argument("--max-gap", type=int, default=4)
    ap.add_argument(
        "--mask-margin",
        type=float,
        default=None,
        help="mask crop margin (default: the model manifest's mask_margin)",
    )
    ap.add_argument(
        "--every",
        type=int,
        default=1,
        help="score every N-th sequence only (by video id; e.g. a training split's sample: "
        "whether the non-key path's loss is the same on the clips it was trained on)",
    )
    ap.add_argument("--name", default="vis_gap")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    args = ap.parse_args(argv)

    import cv2
    from edge_perception.runtime.vis import (
        HEAD_INPUTS,
        VISPipeline,
        create_vis_backends,
        keyframe_state,
        model_mask_margin,
    )
    from edge_perception.vis.video_eval import box_and_mask_ap, instance_results, load_frames

    if args.every < 1:
        ap.error(f"--every must be >= 1, got {args.every}")
    videos, names, coco_path = load_frames(args.data, args.split)
    videos = {v: videos[v] for v in sorted(videos)[:: args.every]}
    # the three graphs apart: the head runs after each path here
    b = create_vis_backends("onnxruntime", args.model, fuse=False, intra_op_threads=1)
    # the node's own pre- and post-processing (resize, box scaling, mask pasting), no tracker
    margin = model_mask_margin(args.model) if args.mask_margin is None else args.mask_margin
    pipe = VISPipeline(
        b["key"], b["nonkey"], b["head"], class_names=names, score_threshold=0.0,
        mask_margin=margin,
    )  # fmt: skip
    gaps = list(range(max(0, args.min_gap), args.max_gap + 1))
    res: Dict[str, List[Dict[str, Any]]] = {k: [] for k in ["key", *map(str, gaps)]}
    ids: Dict[str, List[int]] = {k: [] for k in res}

    def score(key: str, image_id: int, head: Any, transform: Any) -> None:
        ids[key].append(image_id)
        res[key].extend(instance_results(pipe.postprocess(head, transform), image_id))

    for frames in videos.values():
        feeds, outs, tfs = [], [], []
        for fr in frames:
            rgb = cv2.cvtColor(cv2.imread(fr["path"], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            f, t = pipe.preprocess(rgb)
            feeds.append(np.array(f[pipe.input_name], copy=True))  # the buffer is reused
            tfs.append(t)
            outs.append(b["key"]({"images": feeds[-1]}))
            head = b["head"]({n: outs[-1][n] for n in HEAD_INPUTS})
            score("key", fr["image_id"], head, t)
        for i, fr in enumerate(frames):
            for g in gaps:
                if i - g < 0:
                    continue
                state = keyframe_state(outs[i - g], pipe.propagates)
                nk = b["nonkey"](dict(state, images=feeds[i]))
                head = b["head"]({n: nk[n] for n in HEAD_INPUTS})
                score(str(g), fr["image_id"], head, tfs[i])
    rows = []
    for key in res:
        box, segm = box_and_mask_ap(coco_path, res[key], ids[key])
        rows.append({"path": "key path" if key == "key" else f"non-key, gap {key}",
                     "frames": len(ids[key]), "box_ap": box.map, "box_ap50": box.map50,
                     "mask_ap": segm.map, "mask_ap50": segm.map50})  # fmt: skip
    cmd = "python bench/vis_gap.py " + " ".join(sys.argv[1:] if argv is None else argv)
    data = {"command": cmd, "model": args.model, "data": args.data, "split": args.split,
            "every": args.every, "sequences": len(videos), "rows": rows,
            "environment": environment()}  # fmt: skip
    table = markdown_table(
        [[r["path"], r["frames"], "%.4f" % r["box_ap"], "%.4f" % r["box_ap50"],
          "%.4f" % r["mask_ap"], "%.4f" % r["mask_ap50"]] for r in rows],
        ["path", "frames", "box AP", "box AP50", "mask AP", "mask AP50"],
    )  # fmt: skip
    md = "\n".join([
        "# VIS non-key path against the distance to its keyframe", "",
        f"Command: `{cmd}`  ",
        f"Model `{args.model}`, data `{args.data}` split `{args.split}`"
        + (f" (every {args.every}th sequence: {len(videos)})" if args.every > 1 else "")
        + "; every head output "
        "scored (no score threshold, no tracker), so these APs sit above what the node "
        "publishes (bench/vis_eval.md).", "", table, "",
    ]) + "\n"  # fmt: skip
    publish_results(args.name, data, md, args.out)
    pipe.close()
    return 0 if np.isfinite([r["box_ap"] for r in rows]).all() else 1


if __name__ == "__main__":
    sys.exit(main())
