"""RT-DETR decoder: IoU-aware query selection, deformable decoder layers, iterative refinement.

1. The encoder's multi-level maps are flattened into one memory; every token gets an anchor box
   (its cell centre, size ``0.05 * 2**level``, clamped into (0.01, 0.99) so every logit is
   finite -- no infinities in the exported graph).
2. Query selection: an encoder head scores every token (class logits) and regresses a box relative
   to its anchor; the ``K`` tokens with the highest class score become the decoder's initial
   queries (content = the token's feature, reference = its box; both detached). The criterion
   trains these encoder scores with the varifocal loss, whose target is the IoU with the matched
   object, so the score used to select is IoU-aware.
3. Each decoder layer: self-attention (queries + box position embedding; the denoising mask in
   training), multi-scale deformable cross-attention around the reference box, FFN. Every layer
   has its own class and box heads; the box head predicts a delta in inverse-sigmoid space and the
   refined box (detached) is the next layer's reference.

``set_eval_layers(k)`` makes inference stop after the first ``k`` layers and use that layer's
heads, trading accuracy for speed without retraining; training always runs every layer.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from edge_perception.detection.box_ops import inverse_sigmoid
from edge_perception.detection.deform_attn import MSDeformableAttention
from edge_perception.detection.denoising import DenoisingBatch, build_denoising


class MLP(nn.Module):
    """``layers`` Linear layers with ReLU between them."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class DecoderLayer(nn.Module):
    """Self-attention, deformable cross-attention and FFN, each with residual + LayerNorm."""

    def __init__(
        self, dim: int, heads: int, levels: int, points: int, ffn_dim: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = MSDeformableAttention(dim, heads, levels, points)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(ffn_dim, dim),
        )
        self.norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        pos: Tensor,
        ref_boxes: Tensor,
        memory: Tensor,
        shapes: List[Tuple[int, int]],
        attn_mask: Optional[Tensor] = None,
    ) -> Tensor:
        qk = x + pos
        sa, _ = self.self_attn(qk, qk, x, attn_mask=attn_mask, need_weights=False)
        x = self.norm1(x + self.dropout(sa))
        x = self.norm2(x + self.dropout(self.cross_attn(x + pos, ref_boxes, memory, shapes)))
        return self.norm3(x + self.dropout(self.ffn(x)))


def make_anchors(
    shapes: List[Tuple[int, int]], device: torch.device, base: float = 0.05
) -> Tensor:
    """Anchor logits [1, S, 4] (inverse-sigmoid cxcywh) for the flattened levels."""
    anchors = []
    for lvl, (h, w) in enumerate(shapes):
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=torch.float32, device=device),
            torch.arange(w, dtype=torch.float32, device=device),
            indexing="ij",
        )
        cx = (xs.reshape(-1) + 0.5) / w
        cy = (ys.reshape(-1) + 0.5) / h
        wh = torch.full_like(cx, base * 2.0**lvl)
        anchors.append(torch.stack([cx, cy, wh, wh], dim=-1))
    a = torch.cat(anchors).clamp(0.01, 0.99)
    return torch.log(a / (1 - a))[None]


class RTDETRDecoder(nn.Module):
    """Query selection + decoder stack; see the module docstring.

    ``forward(feats, targets)`` returns a dict with ``pred_logits`` [B, K, C], ``pred_boxes``
    [B, K, 4] (cxcywh in [0, 1]) of the last (or ``eval_layers``-th) layer and, in training,
    ``aux_outputs`` (earlier layers), ``enc_outputs`` (selected encoder proposals),
    ``dn_outputs`` (per layer, denoising queries) and ``dn_meta`` (:class:`DenoisingBatch`).
    Every output set also carries ``pred_queries`` [B, K, hidden]: the decoder layer's query
    hidden states (used by the video instance segmentation heads; unused outputs are pruned from
    an exported graph, so the detection ONNX graph does not change).
    """

    def __init__(
        self,
        hidden_dim: int,
        num_classes: int,
        num_queries: int,
        num_layers: int,
        heads: int,
        levels: int,
        points: int,
        ffn_dim: int,
        num_denoising: int = 100,
        label_noise_ratio: float = 0.5,
        box_noise_scale: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.num_layers = num_layers
        self.num_denoising = num_denoising
        self.label_noise_ratio = label_noise_ratio
        self.box_noise_scale = box_noise_scale
        self.eval_layers = num_layers

        self.enc_output = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim), nn.LayerNorm(hidden_dim)
        )
        self.enc_score_head = nn.Linear(hidden_dim, num_classes)
        self.enc_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3)
        self.query_pos_head = MLP(4, 2 * hidden_dim, hidden_dim, 2)
        self.denoising_embed = nn.Embedding(num_classes + 1, hidden_dim, padding_idx=num_classes)
        self.layers = nn.ModuleList(
            DecoderLayer(hidden_dim, heads, levels, points, ffn_dim, dropout)
            for _ in range(num_layers)
        )
        self.score_heads = nn.ModuleList(
            nn.Linear(hidden_dim, num_classes) for _ in range(num_layers)
        )
        self.bbox_heads = nn.ModuleList(
            MLP(hidden_dim, hidden_dim, 4, 3) for _ in range(num_layers)
        )
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        prior = -torch.log(torch.tensor((1 - 0.01) / 0.01)).item()
        for head in [self.enc_score_head, *self.score_heads]:
            nn.init.constant_(head.bias, prior)
        for mlp in [self.enc_bbox_head, *self.bbox_heads]:
            nn.init.zeros_(mlp.layers[-1].weight)
            nn.init.zeros_(mlp.layers[-1].bias)

    def set_eval_layers(self, k: int) -> None:
        """Use only the first ``k`` decoder layers (1..num_layers) at inference."""
        if not 1 <= int(k) <= self.num_layers:
            raise ValueError(f"eval layers must be in 1..{self.num_layers}, got {k}")
        self.eval_layers = int(k)

    def forward(
        self, feats: List[Tensor], targets: Optional[List[Dict[str, Tensor]]] = None
    ) -> Dict[str, Any]:
        shapes = [(int(f.shape[2]), int(f.shape[3])) for f in feats]
        memory = torch.cat([f.flatten(2).transpose(1, 2) for f in feats], dim=1)  # [B, S, C]
        anchors = make_anchors(shapes, memory.device)

        enc_mem = self.enc_output(memory)
        enc_logits = self.enc_score_head(enc_mem)
        topk = torch.topk(enc_logits.max(-1).values, self.num_queries, dim=1).indices
        gather = topk[..., None]
        selected = torch.gather(enc_mem, 1, gather.expand(-1, -1, self.hidden_dim))
        target = selected.detach()
        # The box head runs on the K selected tokens only (per-token MLP: the same values and
        # gradients as running it on all S tokens and gathering, at K/S of the cost).
        sel_anchors = torch.gather(
            anchors.expand(topk.shape[0], -1, -1), 1, gather.expand(-1, -1, 4)
        )
        ref_logits = self.enc_bbox_head(selected) + sel_anchors
        sel_logits = torch.gather(enc_logits, 1, gather.expand(-1, -1, self.num_classes))

        dn: Optional[DenoisingBatch] = None
        attn_mask = None
        if self.training and targets is not None:
            dn = build_denoising(
                targets,
                self.num_classes,
                self.num_queries,
                self.num_denoising,
                self.label_noise_ratio,
                self.box_noise_scale,
            )
        ref = ref_logits.detach()
        if dn is not None:
            target = torch.cat([self.denoising_embed(dn.labels), target], dim=1)
            ref = torch.cat([dn.ref_logits, ref], dim=1)
            attn_mask = dn.attn_mask
        elif self.training:
            # keep the denoising embedding in the graph (zero gradient) so that DDP, which waits
            # for a gradient of every parameter, also works on batches without denoising
            target = target + 0.0 * self.denoising_embed.weight.sum()
        ref_boxes = ref.sigmoid()

        n_layers = self.num_layers if self.training else self.eval_layers
        x = target
        logits_all, boxes_all, hidden_all = [], [], []
        for i in range(n_layers):
            pos = self.query_pos_head(ref_boxes)
            x = self.layers[i](x, pos, ref_boxes, memory, shapes, attn_mask)
            boxes = (self.bbox_heads[i](x) + inverse_sigmoid(ref_boxes)).sigmoid()
            if self.training or i == n_layers - 1:
                logits_all.append(self.score_heads[i](x))
                boxes_all.append(boxes)
                hidden_all.append(x)
            ref_boxes = boxes.detach()

        n_dn = dn.num_dn if dn is not None else 0
        out: Dict[str, Any] = {
            "pred_logits": logits_all[-1][:, n_dn:],
            "pred_boxes": boxes_all[-1][:, n_dn:],
            "pred_queries": hidden_all[-1][:, n_dn:],
        }
        if self.training:
            out["aux_outputs"] = [
                {
                    "pred_logits": lg[:, n_dn:],
                    "pred_boxes": bx[:, n_dn:],
                    "pred_queries": hs[:, n_dn:],
                }
                for lg, bx, hs in zip(logits_all[:-1], boxes_all[:-1], hidden_all[:-1])
            ]
            out["enc_outputs"] = {"pred_logits": sel_logits, "pred_boxes": ref_logits.sigmoid()}
            if dn is not None:
                out["dn_outputs"] = [
                    {"pred_logits": lg[:, :n_dn], "pred_boxes": bx[:, :n_dn]}
                    for lg, bx in zip(logits_all, boxes_all)
                ]
                out["dn_meta"] = dn
        return out
