"""Keyframe query propagation: the non-key path's decoder without per-token query selection.

The detector's query selection scores and projects *every* encoder token (~2800 at 288x480 for
``small``), which made the decoder the largest part of the non-key path (122 of 223 MMAC) even
with one decoder layer. On a non-keyframe the objects are, with few exceptions, the ones the
keyframe already found, so :class:`QueryPropagator` starts from the keyframe's ``num_top``
decoded queries instead:

1. each keyframe box is moved to the current frame with the non-key path's own stride-16 flow
   (backward flow, current -> keyframe: a keyframe point ``q`` is at about ``q - flow(q)`` now;
   the flow is sampled bilinearly at the box centre, the box size is kept);
2. one decoder layer (self-attention among the propagated queries, deformable cross-attention
   around the moved box into the current frame's warped / fused maps, FFN) refines the keyframe
   query's hidden state, and its own class and box heads give the current frame's logits and box
   (a delta in inverse-sigmoid space on the moved box).

The cross-attention samples the maps *before* the value projection (:func:`sample_then_project`):
bilinear sampling is linear, so projecting the ``Q x heads x levels x points`` sampled vectors
with each head's rows of the projection equals sampling the projected map, and for ~50 queries
it is far cheaper than projecting all ~2800 tokens (the projection was the non-key graph's largest
single kernel); it reads the NCHW maps directly (no flattened memory).

The layer and heads are the propagator's own (the keyframe decoder is not shared, so the key path
is unchanged by training them) and start as copies of the detector's last decoder layer, whose
input distribution (a previous layer's LayerNorm output) the keyframe's final hidden states match.
Objects that enter between two keyframes are found at the next keyframe (the keyframe policy's
interval / age / lost-track triggers bound the wait).
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge_perception.detection.box_ops import inverse_sigmoid
from edge_perception.detection.decoder import RTDETRDecoder
from edge_perception.detection.deform_attn import MSDeformableAttention


def top_queries(out: Dict[str, Any], k: int) -> Dict[str, Tensor]:
    """The ``k`` queries of highest class score of a decoder output: ``queries`` [B, k, D],
    ``boxes`` [B, k, 4] (cxcywh in [0, 1]) and ``logits`` [B, k, C], in descending score."""
    logits = out["pred_logits"]
    k = min(int(k), int(logits.shape[1]))
    idx = torch.topk(logits.max(-1).values, k, dim=1).indices[..., None]
    hid = out["pred_queries"]
    return {
        "queries": torch.gather(hid, 1, idx.expand(-1, -1, hid.shape[-1])),
        "boxes": torch.gather(out["pred_boxes"], 1, idx.expand(-1, -1, 4)),
        "logits": torch.gather(logits, 1, idx.expand(-1, -1, logits.shape[-1])),
    }


def move_boxes(boxes: Tensor, flow: Tensor, image_hw: Tuple[int, int]) -> Tensor:
    """Keyframe boxes [B, K, 4] (cxcywh, normalised) moved by the backward ``flow`` [B, 2, h, w]
    (image pixels) sampled at their centres: centre - flow(centre), size kept."""
    grid = (boxes[..., :2] * 2.0 - 1.0)[:, :, None, :]  # [B, K, 1, 2], x then y
    f = F.grid_sample(flow, grid, mode="bilinear", padding_mode="border", align_corners=False)
    f = f[..., 0].transpose(1, 2)  # [B, K, 2] image pixels
    scale = torch.tensor(
        [1.0 / float(image_hw[1]), 1.0 / float(image_hw[0])], dtype=boxes.dtype,
        device=boxes.device,
    )  # fmt: skip
    centre = (boxes[..., :2] - f * scale).clamp(0.0, 1.0)
    return torch.cat([centre, boxes[..., 2:]], dim=-1)


def in_map_share(grids: Tensor, feats: List[Tensor]) -> Tensor:
    """The weight a zero-padded bilinear sample at ``grids`` [..., L, P, 2] (normalised x, y,
    ``align_corners=False``; level ``l`` on map ``feats[l]``) gives to cells inside the map:
    ``grid_sample`` of a map of ones, computed in closed form per axis (pixel coordinate ``i``:
    ``clamp(min(i + 1, size - i), 0, 1)``), the product of both; [..., L, P]."""
    sizes = [[float(f.shape[3]), float(f.shape[2])] for f in feats]  # (w, h) per level
    size = torch.tensor(sizes, dtype=grids.dtype, device=grids.device)[:, None, :]  # [L, 1, 2]
    pix = ((grids + 1.0) * size - 1.0) * 0.5
    share = torch.minimum(pix + 1.0, size - pix).clamp(0.0, 1.0)
    return share[..., 0] * share[..., 1]


def sample_then_project(
    attn: MSDeformableAttention, query: Tensor, ref_boxes: Tensor, feats: List[Tensor]
) -> Tensor:
    """``attn(query, ref_boxes, memory, shapes)`` (the same function of the same weights) with
    the value projection applied after sampling: ``W_h (sum a s) + b_h (sum a c)`` per head
    ``h``, ``s`` the bilinear samples of the raw maps and ``c`` the samples of a ones map (the
    in-map share of each bilinear kernel, :func:`in_map_share`: zero padding scales the bias
    too).

    query [B, Q, C]; ref_boxes [B, Q, 4] (cxcywh in [0, 1]); feats: the levels [B, C, h, w].
    """
    b, q, _ = query.shape
    heads, levels, points = attn.heads, attn.levels, attn.points
    if len(feats) != levels:
        raise ValueError(f"{len(feats)} feature levels given, the attention has {levels}")
    offsets = attn.sampling_offsets(query).reshape(b, q, heads, levels, points, 2)
    weights = attn.attention_weights(query).reshape(b, q, heads, levels * points)
    weights = weights.softmax(-1).reshape(b, q, heads, levels, points)
    centre = ref_boxes[:, :, None, None, None, :2]
    half = ref_boxes[:, :, None, None, None, 2:] * 0.5
    grids = 2.0 * (centre + offsets / points * half) - 1.0  # [B, Q, heads, L, P, 2]
    agg = query.new_zeros(())
    for lvl, f in enumerate(feats):
        g = grids[:, :, :, lvl].reshape(b, q * heads, points, 2)
        w = weights[:, :, :, lvl].reshape(b, 1, q * heads, points)
        smp = F.grid_sample(f, g, mode="bilinear", padding_mode="zeros", align_corners=False)
        agg = agg + (smp * w).sum(-1)  # [B, C, Q * heads]
    cover = (in_map_share(grids, feats) * weights).sum((-2, -1))  # [B, Q, heads]
    c = int(feats[0].shape[1])
    dh = attn.dim // heads
    # per head h: [B, Q, C] x W_h^T [C, dh] as one batched MatMul over heads
    agg = agg.reshape(b, c, q, heads).permute(0, 3, 2, 1)  # [B, heads, Q, C]
    w_t = attn.value_proj.weight.reshape(heads, dh, c).transpose(1, 2)  # [heads, C, dh]
    out = torch.matmul(agg, w_t)  # [B, heads, Q, dh]
    cover = cover.transpose(1, 2)[..., None]  # [B, heads, Q, 1]
    out = out + cover * attn.value_proj.bias.reshape(heads, 1, dh)
    out = out.permute(0, 2, 1, 3)  # [B, Q, heads, dh]
    return attn.output_proj(out.reshape(b, q, heads * dh))


class QueryPropagator(nn.Module):
    """One decoder layer + heads refining propagated keyframe queries (module docstring)."""

    def __init__(self, decoder: RTDETRDecoder) -> None:
        super().__init__()
        self.layer = copy.deepcopy(decoder.layers[-1])
        self.score_head = copy.deepcopy(decoder.score_heads[-1])
        self.bbox_head = copy.deepcopy(decoder.bbox_heads[-1])

    def init_from(self, decoder: RTDETRDecoder) -> None:
        """(Re)start as a copy of ``decoder``'s last layer and heads."""
        self.layer.load_state_dict(decoder.layers[-1].state_dict())
        self.score_head.load_state_dict(decoder.score_heads[-1].state_dict())
        self.bbox_head.load_state_dict(decoder.bbox_heads[-1].state_dict())

    def layer_forward(self, x: Tensor, pos: Tensor, ref: Tensor, feats: List[Tensor]) -> Tensor:
        """``self.layer(x, pos, ref, memory, shapes)`` with :func:`sample_then_project` as its
        cross-attention (no attention mask: no denoising queries here)."""
        layer = self.layer
        qk = x + pos
        sa, _ = layer.self_attn(qk, qk, x, need_weights=False)
        x = layer.norm1(x + layer.dropout(sa))
        ca = sample_then_project(layer.cross_attn, x + pos, ref, feats)
        x = layer.norm2(x + layer.dropout(ca))
        return layer.norm3(x + layer.dropout(layer.ffn(x)))

    def forward(
        self,
        decoder: RTDETRDecoder,
        feats: List[Tensor],
        queries: Tensor,
        boxes: Tensor,
        flow16: Tensor,
        image_hw: Tuple[int, int],
    ) -> Dict[str, Tensor]:
        """``feats`` the current frame's ``[p3, p4, p5]``; ``queries`` / ``boxes`` the keyframe's
        (detached by the caller in training). Returns ``pred_logits``, ``pred_boxes``,
        ``pred_queries`` like a decoder output, plus ``prop_boxes`` (the moved references)."""
        ref = move_boxes(boxes, flow16, image_hw)
        return dict(self.refine(decoder, feats, queries, ref), prop_boxes=ref)

    def refine(
        self, decoder: RTDETRDecoder, feats: List[Tensor], queries: Tensor, ref: Tensor
    ) -> Dict[str, Tensor]:
        """The layer and heads on ``queries`` around the reference boxes ``ref`` (cxcywh):
        ``pred_logits``, ``pred_boxes`` (a delta on ``ref``), ``pred_queries``."""
        x = self.layer_forward(queries, decoder.query_pos_head(ref), ref, feats)
        return {
            "pred_logits": self.score_head(x),
            "pred_boxes": (self.bbox_head(x) + inverse_sigmoid(ref)).sigmoid(),
            "pred_queries": x,
        }
