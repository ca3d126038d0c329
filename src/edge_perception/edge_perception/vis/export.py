"""Export split of the VIS model: keyframe, non-keyframe and head ONNX graphs (+ MACs per path).

Three graphs, so TensorRT can build each component at its own precision (the ``yolact`` preset:
backbone, protonet and flow net INT8; encoder / warping fuse, decoder and heads FP16) and the
runtime can pick the path per frame (names in docs/CONTRACTS.md, "Video instance segmentation"):

- ``<name>_key.onnx`` (:class:`KeyGraph`): ``images`` -> ``p3``, ``s2``, ``queries``,
  ``query_boxes``, ``query_logits`` (the head's inputs: the ``num_top`` queries of highest class
  score, of the decoder's full set here and of ``nonkey_queries`` on non-keyframes) and
  ``key_p4``, ``key_p5``,
  ``key_flow_feat`` (the keyframe state the runtime keeps for later frames);
- ``<name>_nonkey.onnx`` (:class:`NonKeyGraph`): ``images``, ``key_p4``, ``key_p5``,
  ``key_flow_feat`` (and, for a model with ``nonkey_propagate``, ``key_queries`` /
  ``key_boxes``: the key graph's ``queries`` / ``query_boxes``) -> ``p3``, ``s2``, ``queries``,
  ``query_boxes``, ``query_logits`` and ``mean_flow`` [N] (mean flow magnitude in input pixels,
  for the keyframe policy);
- ``<name>_head.onnx`` (:class:`HeadGraph`): ``p3``, ``s2``, ``queries``, ``query_boxes``,
  ``query_logits`` -> ``boxes`` [N, K, 4] (x1, y1, x2, y2 input pixels), ``scores`` [N, K],
  ``labels`` [N, K] int64, ``masks`` [N, K, H/4, W/4] float32 probabilities over the whole grid
  (not cropped: upsample, crop to the box, threshold 0.5 -- ``runtime.vis.paste_masks``; see
  ``vis.heads.mask_probs``), ``embeddings`` [N, K, E] (L2-normalised). The ``K`` best
  (query, class) pairs (a query may appear with two labels, as in the detector's graph), sorted,
  no NMS.

:func:`path_costs` counts parameters and MACs (:mod:`edge_perception.flops` convention) of the
key path (key + head) and the non-key path (non-key + head).
"""

from __future__ import annotations

import copy
import os
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from edge_perception.detection.box_ops import cxcywh_to_xyxy
from edge_perception.export import check_parity, export_onnx
from edge_perception.flops import count_cost
from edge_perception.runtime.vis import PROPAGATED
from edge_perception.vis.heads import mask_probs
from edge_perception.vis.model import VISModel
from edge_perception.vis.propagate import top_queries

HEAD_INPUTS = ["p3", "s2", "queries", "query_boxes", "query_logits"]
KEY_INPUTS = ["images"]
KEY_OUTPUTS = HEAD_INPUTS + ["key_p4", "key_p5", "key_flow_feat"]
NONKEY_INPUTS = ["images", "key_p4", "key_p5", "key_flow_feat"]
NONKEY_OUTPUTS = HEAD_INPUTS + ["mean_flow"]


def nonkey_inputs(model: VISModel) -> List[str]:
    """The non-key graph's input names for ``model`` (with :data:`PROPAGATED` when it
    propagates the keyframe's queries)."""
    return NONKEY_INPUTS + (list(PROPAGATED) if model.propagator is not None else [])


HEAD_OUTPUTS = ["boxes", "scores", "labels", "masks", "embeddings"]


def _head_inputs(out: Dict[str, Any], k: int) -> Tuple[Tensor, ...]:
    """The head's inputs with only the ``k`` queries of highest class score (the ones the head
    keeps): both paths hand the head the same number of queries, whatever they decoded."""
    top = top_queries(out, k)
    f = out["features"]
    return f["p3"], f["s2"], top["queries"], top["boxes"], top["logits"]


class KeyGraph(nn.Module):
    """Keyframe path up to the head's inputs (module docstring)."""

    def __init__(self, model: VISModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tuple[Tensor, ...]:
        m = self.model
        feats = m.key_features(images)
        out = m.decode(feats)
        out["features"] = feats
        return (*_head_inputs(out, m.cfg.num_top), feats["p4"], feats["p5"], feats["flow_feat"])


class NonKeyGraph(nn.Module):
    """Non-keyframe path up to the head's inputs, plus the mean flow (module docstring)."""

    def __init__(self, model: VISModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        images: Tensor,
        key_p4: Tensor,
        key_p5: Tensor,
        key_flow_feat: Tensor,
        key_queries: Optional[Tensor] = None,
        key_boxes: Optional[Tensor] = None,
    ) -> Tuple[Tensor, ...]:
        m = self.model
        key = {"p4": key_p4, "p5": key_p5, "flow_feat": key_flow_feat}
        feats = m.nonkey_features(images, key)
        if m.propagator is not None:
            if key_queries is None or key_boxes is None:
                raise ValueError("a propagating model's non-key graph needs key_queries/boxes")
            key.update(queries=key_queries, boxes=key_boxes)
            out = m.propagate(feats, key, (int(images.shape[2]), int(images.shape[3])))
        else:
            out = m.decode(feats, layers=m.cfg.nonkey_layers, queries=m.cfg.nonkey_queries)
        out["features"] = feats
        mean_flow = feats["flow16"].norm(dim=1).flatten(1).mean(1)
        return (*_head_inputs(out, m.cfg.num_top), mean_flow)


class HeadGraph(nn.Module):
    """Protonet, query heads, top-K and mask assembly (module docstring)."""

    def __init__(self, model: VISModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, p3: Tensor, s2: Tensor, queries: Tensor, query_boxes: Tensor, query_logits: Tensor
    ) -> Tuple[Tensor, ...]:
        return self.assemble(self.model.protonet(p3, s2), queries, query_boxes, query_logits)

    def assemble(
        self,
        protos: Tensor,
        queries: Tensor,
        query_boxes: Tensor,
        query_logits: Tensor,
        coeff_queries: Optional[Tensor] = None,
    ) -> Tuple[Tensor, ...]:
        """The head's outputs from given ``protos``; ``coeff_queries`` (default ``queries``), in
        the order of ``queries``, are the hidden states the coefficients and embeddings come
        from (bench/vis_nonkey_probe.py swaps prototypes and coefficients with it)."""
        m = self.model
        if coeff_queries is None:
            coeff_queries = queries
        # top K over (query, class) pairs, as the detector's own postprocess: a query whose
        # class is ambiguous (truck / bus) keeps both labels, each with its score and the mask
        c = int(query_logits.shape[2])
        k = min(m.cfg.num_top, int(queries.shape[1]) * c)
        scores, index = torch.topk(query_logits.sigmoid().flatten(1), k, dim=1)
        labels = index % c
        idx = torch.div(index, c, rounding_mode="floor")
        q = torch.gather(coeff_queries, 1, idx[..., None].expand(-1, -1, queries.shape[-1]))
        boxes = torch.gather(query_boxes, 1, idx[..., None].expand(-1, -1, 4))
        coeffs, emb = m.query_heads(q)
        masks = mask_probs(coeffs, protos)
        h, w = int(protos.shape[2]) * 4, int(protos.shape[3]) * 4
        scale = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
        return cxcywh_to_xyxy(boxes) * scale, scores, labels.to(torch.int64), masks, emb


def example_inputs(
    model: VISModel, input_size: Tuple[int, int], batch: int = 1, seed: int = 0
) -> Dict[str, Dict[str, Tensor]]:
    """Random images and the tensors the key graph makes of them, as inputs of all three graphs
    (the non-key graph gets a second random frame against the first frame's state)."""
    g = torch.Generator().manual_seed(seed)
    h, w = input_size
    img0 = torch.rand(batch, 3, h, w, generator=g)
    img1 = (img0 + 0.05 * torch.rand(batch, 3, h, w, generator=g)).clamp(0, 1)
    with torch.no_grad():
        key_out = KeyGraph(model.eval())(img0)
    head = dict(zip(HEAD_INPUTS, key_out[: len(HEAD_INPUTS)]))
    state = dict(zip(KEY_OUTPUTS[len(HEAD_INPUTS) :], key_out[len(HEAD_INPUTS) :]))
    if model.propagator is not None:
        state.update({n: head[src] for n, src in PROPAGATED.items()})
    return {
        "key": {"images": img0},
        "nonkey": {"images": img1, **state},
        "head": head,
    }


def export_vis(
    model: VISModel,
    out_prefix: str,
    input_size: Tuple[int, int],
    opset: int = 17,
    parity: bool = True,
    atol: float = 1e-3,
    seed: int = 0,
    dynamic_batch: bool = False,
) -> Dict[str, Any]:
    """Write ``<out_prefix>_{key,nonkey,head}.onnx``; check ONNX Runtime parity on each.

    The input's ``1 / std`` is folded into the stem's first conv
    (:meth:`VISModel.fold_input_std`, exact) on a copy of ``model``. The graphs are exported for
    batch 1 (a video stream is decoded frame by frame, each frame against its own stream's
    keyframe state): with every shape static, ONNX Runtime folds the exporter's shape arithmetic
    (~250 Shape / Gather / Unsqueeze / Concat nodes in the non-key graph) and applies the fusions
    that need known shapes (NCHWc nearest upsampling, Gemm, SkipLayerNormalization); the
    non-key and head graphs gain most (bench/vis_speed.md times the exported graphs).
    ``dynamic_batch`` keeps the batch dimension symbolic (``N``) instead.

    Returns ``{"paths": {...}, "parity": {...}}``; raises RuntimeError when a check fails.
    """
    h, w = int(input_size[0]), int(input_size[1])
    if h % 32 or w % 32:
        raise ValueError(f"input size {input_size} must be multiples of 32")
    if opset < 16:
        raise ValueError(f"opset {opset} lacks GridSample; use >= 16")
    model = copy.deepcopy(model).eval()  # the caller's model keeps its weights
    model.fold_input_std()
    ex = example_inputs(model, (h, w), seed=seed)
    graphs = {
        "key": (KeyGraph(model), KEY_INPUTS, KEY_OUTPUTS),
        "nonkey": (NonKeyGraph(model), nonkey_inputs(model), NONKEY_OUTPUTS),
        "head": (HeadGraph(model), HEAD_INPUTS, HEAD_OUTPUTS),
    }
    os.makedirs(os.path.dirname(os.path.abspath(out_prefix)), exist_ok=True)
    paths, reports = {}, {}
    for name, (graph, ins, outs) in graphs.items():
        path = f"{out_prefix}_{name}.onnx"
        feeds = ex[name]
        export_onnx(
            graph,
            tuple(feeds[k] for k in ins),
            path,
            ins,
            outs,
            opset=opset,
            dynamic_batch=dynamic_batch,
        )
        paths[name] = path
        if parity:
            rep = check_parity(graph, path, {k: feeds[k] for k in ins}, atol=atol)
            reports[name] = rep.as_dict()
            if not rep.ok:
                raise RuntimeError(f"ONNX parity check failed for {path}: {rep.as_dict()}")
    return {"paths": paths, "parity": reports}


def path_costs(model: VISModel, input_size: Tuple[int, int]) -> Dict[str, Dict[str, float]]:
    """MACs (and params) per graph and per path at ``input_size`` (batch 1).

    ``{"key": {...}, "nonkey": {...}, "head": {...}, "key_path": {"macs"}, "nonkey_path":
    {"macs"}, "ratio": nonkey_path / key_path}``; each graph entry also has ``by_module``
    (MACs per top-level module of the VIS model: det.backbone, det.encoder, ...).
    """
    model.eval()
    ex = example_inputs(model, input_size)
    graphs = {
        "key": (KeyGraph(model), KEY_INPUTS),
        "nonkey": (NonKeyGraph(model), nonkey_inputs(model)),
        "head": (HeadGraph(model), HEAD_INPUTS),
    }
    res: Dict[str, Any] = {}
    for name, (graph, ins) in graphs.items():
        cost = count_cost(graph, *[ex[name][k] for k in ins])
        by: Dict[str, int] = {}
        for layer, _, macs in cost.layers:
            parts = layer.split(".")[1:]  # drop "model"
            mod = ".".join(parts[:2]) if parts and parts[0] == "det" else parts[0]
            by[mod] = by.get(mod, 0) + macs
        res[name] = {"macs": cost.macs, "by_module": by}
    res["key_path"] = {"macs": res["key"]["macs"] + res["head"]["macs"]}
    res["nonkey_path"] = {"macs": res["nonkey"]["macs"] + res["head"]["macs"]}
    res["ratio"] = res["nonkey_path"]["macs"] / max(1, res["key_path"]["macs"])
    return res
