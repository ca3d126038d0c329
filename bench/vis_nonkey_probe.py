"""Why the VIS non-key path loses accuracy: its parts swapped for exact ones, one at a time.

The trained PyTorch model (a ``vis-train`` checkpoint) runs the key path on frame ``i - gap`` and
the non-key path on frame ``i``; the head outputs go through the node's own post-processing
(``VISPipeline.postprocess``, no score threshold, no tracker) and are scored with COCO box and
mask AP like bench/vis_gap.py. Rows:

- ``key path``: the key path on every frame (the reference);
- ``stale keyframe``: the keyframe's own results reused on frame ``i`` (what no update gives);
- ``non-key path``: as deployed;
- ``keyframe queries ... no refinement``: the propagating decoder left out: the keyframe's top
  queries and scores, their boxes moved by the predicted flow (the decoder's input), masks from
  the non-key prototypes;
- ``flow set to zero``: the flow net's output replaced by zero flow (exact at gap 0);
- ``current p4 / p5``: the current frame's own encoder maps instead of the warped keyframe maps;
- ``current p3 / p4 / p5``: all three of the propagating decoder's maps the current frame's own
  (what is left is the propagating decoder itself and the moved boxes it starts from);
- ``protos from the current p3``: the head's prototypes from the current frame's encoder map
  instead of the non-key path's fused one (an oracle for the masks alone);
- ``keyframe protos warped ...``: the keyframe's prototypes warped to the current frame at
  stride 4 (the flow net's stride-16 flow upsampled bilinearly, or the data set's flow pooled to
  stride 4) instead of the protonet on the non-key path's maps, with the refined queries'
  coefficients or (``keyframe masks warped``) the keyframe queries' own: what mask-level
  propagation, which would skip the protonet on non-keyframes, would give;
- ``... moved by the flow's mean over the box`` / ``by the ground-truth flow ...``: the
  ``keyframe queries ... no refinement`` row with the boxes moved by the predicted flow's mean
  over each box, or by the data set's flow (centre sample or box mean): what better box motion
  alone would give;
- ``the propagating decoder's layer applied twice``: its layer run once more on its own output
  (same weights, no further motion): whether iterating the refinement helps untrained;
- ``ground-truth flow``: the data set's backward flow (chained to the keyframe, average-pooled
  over valid pixels to strides 16 and 32 as the flow loss does) instead of the flow net's, for the
  warp, the fuse and the moved boxes (the net's scale / bias kept): what a perfect flow net at
  this resolution would give.

``--gap 0`` runs the non-key path against its own frame's keyframe state: no motion at all, so
every loss left there belongs to the path itself (the propagating decoder, the fused maps), not to
the flow. The mean flow magnitude the flow net predicts is printed per gap (0 px is right at gap
0)::

    python bench/vis_nonkey_probe.py --checkpoint models/checkpoints/vis_ema.pt \\
        --data data/vis_train --gaps 0 1

Writes ``bench/results/<name>.{json,md}`` (default ``vis_nonkey_probe``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from typing import Any, Dict, List, Optional

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import environment, markdown_table, publish_results  # noqa: E402

ROWS = {
    "key": "key path",
    "stale": "stale keyframe",
    "nonkey": "non-key path",
    "moved": "keyframe queries, boxes moved by the flow, no refinement",
    "zero_flow": "flow set to zero",
    "cur_p45": "current p4 / p5",
    "cur_p345": "current p3 / p4 / p5",
    "cur_protos": "protos from the current p3",
    "gt_flow": "ground-truth flow",
    "warp_protos": "keyframe protos warped by the flow",
    "warp_protos_gt": "keyframe protos warped by the ground-truth flow",
    "warp_masks": "keyframe masks warped by the flow",
    "roi_moved": "keyframe queries, boxes moved by the flow's mean over the box, no refinement",
    "gt_moved": "keyframe queries, boxes moved by the ground-truth flow, no refinement",
    "twice": "the propagating decoder's layer applied twice (weight-tied, untrained as such)",
    "gt_roi_moved": "keyframe queries, boxes moved by the ground-truth flow's box mean, "
    "no refinement",
    "keydec_cur": "the key decoder's own last layer (not the propagator) on the current p3 / p4 "
    "/ p5, boxes moved by the flow",
    "keydec_cur_gt": "the key decoder's own last layer on the current p3 / p4 / p5, boxes moved "
    "by the ground-truth flow",
}


def roi_move(boxes: Any, flow: Any, image_hw: Any) -> Any:
    """Keyframe boxes [B, K, 4] (cxcywh, normalised) moved by the mean of the backward
    ``flow`` [B, 2, h, w] (image pixels) over the cells inside each box (its centre sample when
    no cell centre is inside), size kept."""
    import torch
    from edge_perception.vis.heads import box_mask
    from edge_perception.vis.propagate import move_boxes

    inside = box_mask(boxes, (int(flow.shape[2]), int(flow.shape[3])))  # [B, K, h, w]
    n = inside.flatten(2).sum(-1)  # [B, K]
    mean = torch.einsum("bkhw,bchw->bkc", inside, flow) / n.clamp(min=1)[..., None]
    scale = torch.tensor([1.0 / image_hw[1], 1.0 / image_hw[0]], dtype=boxes.dtype)
    centre = (boxes[..., :2] - mean * scale).clamp(0.0, 1.0)
    moved = torch.cat([centre, boxes[..., 2:]], dim=-1)
    return torch.where((n > 0)[..., None], moved, move_boxes(boxes, flow, image_hw))


def gt_flow(frames: List[Dict[str, Any]], cur: int, key: int, tf: Any) -> Any:
    """The data set's backward flow from ``frames[cur]`` to ``frames[key]`` in network input
    pixels (the pipeline's ``Transform`` ``tf``): ``(flow [1, 2, H, W], valid [1, H, W])``
    tensors, or None when a flow file is missing."""
    import torch
    from edge_perception.vis.data import chain_flows, flow_to_input, read_flow

    chain = []
    for j in range(cur, key, -1):
        path = frames[j]["path"].replace(os.sep + "images" + os.sep, os.sep + "flow" + os.sep)
        path = os.path.splitext(path)[0] + ".npz"
        if not os.path.isfile(path):
            return None
        chain.append(read_flow(path))
    if not chain:  # gap 0
        h, w = tf.dst_hw
        return torch.zeros(1, 2, h, w), torch.ones(1, h, w, dtype=torch.bool)
    fl, va = flow_to_input(
        *chain_flows(chain),
        tuple(tf.dst_hw),
        (tf.scale_x, tf.scale_y),
        (int(round(tf.pad_x)), int(round(tf.pad_y))),
    )
    return torch.from_numpy(fl.transpose(2, 0, 1).copy())[None], torch.from_numpy(va)[None]


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="vis-train checkpoint (EMA weights)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--gaps", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="vis_nonkey_probe")
    ap.add_argument(
        "--rows", nargs="+", choices=sorted(ROWS), default=None,
        help="only these rows (the key path always runs); default all",
    )  # fmt: skip
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    args = ap.parse_args(argv)

    import cv2
    import torch
    import torch.nn.functional as F
    from edge_perception.datafiles import load_torch
    from edge_perception.runtime.vis import HEAD_OUTPUTS, VISPipeline, create_vis_backends
    from edge_perception.vis import export as vx
    from edge_perception.vis.criterion import pooled_flow
    from edge_perception.vis.flow import warp
    from edge_perception.vis.model import vis_from_checkpoint
    from edge_perception.vis.propagate import QueryPropagator, move_boxes, top_queries
    from edge_perception.vis.video_eval import box_and_mask_ap, instance_results, load_frames

    torch.set_num_threads(max(1, args.threads))
    ckpt = load_torch(args.checkpoint, "vis-train checkpoint", keys=("vis_config",))
    model = vis_from_checkpoint(ckpt).eval()
    if model.propagator is None:
        raise SystemExit(f"{args.checkpoint}: not a propagating model (nonkey_propagate)")
    head = vx.HeadGraph(model)
    videos, names, coco_path = load_frames(args.data, args.split)
    size = tuple(ckpt.get("args", {}).get("input_size", (288, 480)))
    # the node's own pre- and post-processing (resize, box scaling, mask pasting; no threshold,
    # no tracker) from a pipeline over this checkpoint's graphs (never run here)
    tmp = tempfile.mkdtemp(prefix="vis_probe_")
    key_path = vx.export_vis(model, os.path.join(tmp, "vis"), size, parity=False)["paths"]["key"]
    b = create_vis_backends("onnxruntime", key_path, fuse=False, intra_op_threads=1)
    pipe = VISPipeline(
        b["key"], b["nonkey"], b["head"], class_names=names, score_threshold=0.0,
        mask_margin=model.cfg.mask_margin,
    )  # fmt: skip
    res: Dict[str, Dict[str, List[Dict[str, Any]]]] = {}
    ids: Dict[str, Dict[str, List[int]]] = {}
    flows: Dict[str, List[float]] = {}

    wanted = set(args.rows or ROWS) | {"key"}
    # the key decoder's last layer and heads as they are (the propagator's starting point)
    keydec = QueryPropagator(model.det.decoder).eval()

    def keydec_cur(cur: Dict[str, Any], queries: Any, ref: Any) -> Any:
        maps = [cur["p3"], cur["p4"], cur["p5"]]
        return keydec.refine(model.det.decoder, maps, queries, ref)

    def score(gap: str, row: str, image_id: int, outs: Any, transform: Any) -> None:
        inst = pipe.postprocess(dict(zip(HEAD_OUTPUTS, [o.numpy() for o in outs])), transform)
        ids.setdefault(gap, {}).setdefault(row, []).append(image_id)
        res.setdefault(gap, {}).setdefault(row, []).extend(instance_results(inst, image_id))

    def run_head(out: Dict[str, Any], feats: Dict[str, Any], p3: Any = None) -> Any:
        out = dict(out, features=feats)
        h = list(vx._head_inputs(out, model.cfg.num_top))
        if p3 is not None:
            h[0] = p3
        return head(*h)

    def run_head_protos(out: Dict[str, Any], protos: Any, coeff_queries: Any = None) -> Any:
        top = top_queries(out, model.cfg.num_top)
        if coeff_queries is not None:  # given in out's query order: the same top-K gather
            coeff_queries = top_queries(dict(out, pred_queries=coeff_queries), top["queries"]
                                        .shape[1])["queries"]  # fmt: skip
        return head.assemble(protos, top["queries"], top["boxes"], top["logits"], coeff_queries)

    with torch.no_grad():
        for frames in videos.values():
            imgs, tfs, keys = [], [], []
            for fr in frames:
                rgb = cv2.cvtColor(cv2.imread(fr["path"], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                x, t = pipe.preprocess(rgb)
                imgs.append(torch.from_numpy(np.array(x[pipe.input_name], copy=True)))
                tfs.append(t)
                feats = model.key_features(imgs[-1])
                keys.append((model.decode(feats), feats))
                score("key", "key", fr["image_id"], run_head(*keys[-1]), tfs[-1])
            for gap in args.gaps:
                g = str(gap)
                for i, fr in enumerate(frames):
                    if i - gap < 0:
                        continue
                    kout, kfeats = keys[i - gap]
                    state = model.key_state(dict(kout, features=kfeats))
                    cur_out, cur = keys[i]
                    hw = (int(imgs[i].shape[2]), int(imgs[i].shape[3]))
                    nf = model.nonkey_features(imgs[i], state)
                    flows.setdefault(g, []).append(float(nf["flow16"].norm(dim=1).mean()))
                    iid = fr["image_id"]
                    if "stale" in wanted:
                        score(g, "stale", iid, run_head(kout, kfeats), tfs[i])
                    o = model.propagate(nf, state, hw)
                    if "nonkey" in wanted:
                        score(g, "nonkey", iid, run_head(o, nf), tfs[i])
                    top = top_queries(dict(kout, features=kfeats), model.cfg.num_top)
                    # the keyframe's queries and scores, with boxes set per row
                    kq = {"pred_logits": top["logits"], "pred_queries": top["queries"]}
                    if "moved" in wanted:
                        mv = dict(kq, pred_boxes=o["prop_boxes"])
                        score(g, "moved", iid, run_head(mv, nf), tfs[i])
                    if "roi_moved" in wanted:
                        mv = dict(kq, pred_boxes=roi_move(top["boxes"], nf["flow16"], hw))
                        score(g, "roi_moved", iid, run_head(mv, nf), tfs[i])
                    if "twice" in wanted:
                        o2 = model.propagator.refine(
                            model.det.decoder, [nf["p3"], nf["p4"], nf["p5"]],
                            o["pred_queries"], o["pred_boxes"],
                        )  # fmt: skip
                        score(g, "twice", iid, run_head(o2, nf), tfs[i])
                    if "keydec_cur" in wanted:
                        ok = keydec_cur(cur, state["queries"], o["prop_boxes"])
                        score(g, "keydec_cur", iid, run_head(ok, cur), tfs[i])
                    if "cur_protos" in wanted:
                        score(g, "cur_protos", iid, run_head(o, nf, cur["p3"]), tfs[i])
                    if "zero_flow" in wanted:
                        zf = dict(nf, flow16=torch.zeros_like(nf["flow16"]))
                        o0 = model.propagate(zf, state, hw)
                        score(g, "zero_flow", iid, run_head(o0, zf), tfs[i])
                    f45 = dict(nf, p4=cur["p4"], p5=cur["p5"])
                    if "cur_p45" in wanted:
                        o45 = model.propagate(f45, state, hw)
                        score(g, "cur_p45", iid, run_head(o45, f45), tfs[i])
                    if "cur_p345" in wanted:
                        f345 = dict(f45, p3=cur["p3"])
                        o345 = model.propagate(f345, state, hw)
                        score(g, "cur_p345", iid, run_head(o345, f345), tfs[i])
                    if wanted & {"warp_protos", "warp_masks", "warp_protos_gt"}:
                        kprotos = model.protonet(kfeats["p3"], kfeats["s2"])
                        size4 = tuple(kprotos.shape[-2:])
                    if wanted & {"warp_protos", "warp_masks"}:
                        fl4 = F.interpolate(nf["flow16"], size=size4, mode="bilinear")
                        wp = warp(kprotos, fl4, hw)
                        if "warp_protos" in wanted:
                            score(g, "warp_protos", iid, run_head_protos(o, wp), tfs[i])
                        if "warp_masks" in wanted:
                            wm = run_head_protos(o, wp, state["queries"])
                            score(g, "warp_masks", iid, wm, tfs[i])
                    if not wanted & {
                        "gt_flow",
                        "warp_protos_gt",
                        "gt_moved",
                        "gt_roi_moved",
                        "keydec_cur_gt",
                    }:
                        continue
                    gt = gt_flow(frames, i, i - gap, tfs[i])
                    if gt is None:
                        continue
                    if "gt_moved" in wanted:
                        mv = dict(kq, pred_boxes=move_boxes(top["boxes"], gt[0], hw))
                        score(g, "gt_moved", iid, run_head(mv, nf), tfs[i])
                    if "keydec_cur_gt" in wanted:
                        ok = keydec_cur(cur, top["queries"], move_boxes(top["boxes"], gt[0], hw))
                        score(g, "keydec_cur_gt", iid, run_head(ok, cur), tfs[i])
                    if "gt_roi_moved" in wanted:
                        mv = dict(kq, pred_boxes=roi_move(top["boxes"], gt[0], hw))
                        score(g, "gt_roi_moved", iid, run_head(mv, nf), tfs[i])
                    if "warp_protos_gt" in wanted:
                        wp = warp(kprotos, pooled_flow(gt[0], gt[1], size4)[0], hw)
                        score(g, "warp_protos_gt", iid, run_head_protos(o, wp), tfs[i])
                    if "gt_flow" in wanted:
                        gf = dict(nf)  # the net's scale / bias, the data set's flows
                        for lvl in ("16", "32"):
                            size = tuple(nf["flow" + lvl].shape[-2:])
                            gf["flow" + lvl] = pooled_flow(gt[0], gt[1], size)[0]
                        gf.update(model.warp_key(nf["s3"], state, gf, hw))
                        ogt = model.propagate(gf, state, hw)
                        score(g, "gt_flow", iid, run_head(ogt, gf), tfs[i])

    rows = []
    for gap, per_row in [("key", res["key"])] + [(str(g), res[str(g)]) for g in args.gaps]:
        for row, dets in per_row.items():
            image_ids = ids[gap][row]
            box, segm = box_and_mask_ap(coco_path, dets, image_ids)
            rows.append({
                "gap": gap, "row": ROWS[row], "frames": len(image_ids), "box_ap": box.map,
                "mask_ap": segm.map,
                "mean_flow_px": float(np.mean(flows[gap])) if gap in flows else None,
            })  # fmt: skip
    cmd = "python bench/vis_nonkey_probe.py " + " ".join(sys.argv[1:] if argv is None else argv)
    data = {"command": cmd, "checkpoint": args.checkpoint, "data": args.data,
            "split": args.split, "rows": rows, "environment": environment()}  # fmt: skip
    table = markdown_table(
        [[r["gap"], r["row"], r["frames"], "%.4f" % r["box_ap"], "%.4f" % r["mask_ap"],
          "" if r["mean_flow_px"] is None else "%.1f" % r["mean_flow_px"]] for r in rows],
        ["gap", "non-key path variant", "frames", "box AP", "mask AP", "predicted mean flow px"],
    )  # fmt: skip
    md = "\n".join([
        "# VIS non-key path: where the accuracy goes", "",
        f"Command: `{cmd}`  ",
        f"Checkpoint `{args.checkpoint}`, data `{args.data}` split `{args.split}`; PyTorch, "
        "every head output scored (no score threshold, no tracker) after the node's own "
        "post-processing, as bench/results/vis_gap.md.", "", table, "",
    ]) + "\n"  # fmt: skip
    publish_results(args.name, data, md, args.out)
    pipe.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
