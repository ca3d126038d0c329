"""Image-mode evaluation of the VIS model (every frame a keyframe): mask AP and box AP.

Runs the exported-graph modules (:class:`~edge_perception.vis.export.KeyGraph` +
:class:`~edge_perception.vis.export.HeadGraph`) in PyTorch on the val split, maps masks and boxes
back to the original frame (undo the letterbox), and scores them with
:func:`edge_perception.metrics.vis.frame_mask_ap` and the COCO box AP.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from pycocotools import mask as mask_utils

from edge_perception.metrics.coco import coco_map
from edge_perception.metrics.vis import frame_mask_ap
from edge_perception.runtime.preprocess import Transform
from edge_perception.runtime.vis import MASK_STRIDE, paste_masks
from edge_perception.vis.data import ClipDataset
from edge_perception.vis.export import HeadGraph, KeyGraph
from edge_perception.vis.model import VISModel


def to_results(
    outputs: Tuple[torch.Tensor, ...],
    image_id: int,
    scale: float,
    orig_hw: Tuple[int, int],
    min_score: float = 0.01,
    mask_margin: float = 0.0,
) -> List[Dict[str, Any]]:
    """COCO result dicts (``bbox`` and ``segmentation``) of one image's head outputs; masks
    cropped to the box grown by ``mask_margin`` (``runtime.vis.paste_masks``)."""
    boxes, scores, labels, masks, _ = (o.numpy() for o in outputs)
    keep = np.flatnonzero(scores >= min_score)
    h0, w0 = orig_hw
    # the node's own pasting: upsample inside each box at the original size, threshold 0.5
    grid = (int(masks.shape[1]) * MASK_STRIDE, int(masks.shape[2]) * MASK_STRIDE)
    tf = Transform(src_hw=(h0, w0), dst_hw=grid, scale_x=scale, scale_y=scale)
    cam_boxes = tf.boxes_to_source(boxes[keep])
    full_masks = paste_masks(masks[keep], cam_boxes, tf, margin=mask_margin)
    res = []
    for j, i in enumerate(keep):
        b, s, c, full = cam_boxes[j], scores[i], labels[i], full_masks[j]
        rle = mask_utils.encode(np.asfortranarray(full.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        x1, y1, x2, y2 = (float(v) for v in b)
        res.append(
            {
                "image_id": image_id,
                "category_id": int(c) + 1,
                "score": float(s),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "segmentation": rle,
            }
        )
    return res


@torch.no_grad()
def evaluate_image_mode(
    model: VISModel,
    root: str,
    input_size: Tuple[int, int],
    max_images: int = 100,
) -> Dict[str, float]:
    """``mask_ap``, ``mask_ap50``, ``box_ap`` on the first ``max_images`` val frames (masks
    cropped to the box grown by the model's ``mask_margin``)."""
    ds = ClipDataset(root, "val", input_size, frames=1, with_flow=False, max_clips=max_images)
    was = model.training
    model.eval()
    key, head = KeyGraph(model), HeadGraph(model)
    results: List[Dict[str, Any]] = []
    ids = []
    for i in range(len(ds)):
        item = ds[i][0]
        t = item["target"]
        info = ds.images[t["image_id"]]
        out = head(*key(item["image"][None])[:5])
        out = tuple(o[0] for o in out)
        hw = (info["height"], info["width"])
        results += to_results(
            out, t["image_id"], t["scale"], hw, mask_margin=model.cfg.mask_margin
        )
        ids.append(t["image_id"])
    model.train(was)
    gt = os.path.join(root, "val", "annotations", "coco.json")
    segm = frame_mask_ap(
        gt, [{k: v for k, v in r.items() if k != "bbox"} for r in results], image_ids=ids
    )
    box = coco_map(
        gt, [{k: v for k, v in r.items() if k != "segmentation"} for r in results], image_ids=ids
    )
    return {"mask_ap": segm.map, "mask_ap50": segm.map50, "box_ap": box.map}
