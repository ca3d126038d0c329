"""Video instance segmentation model: the RT-DETR detector + YOLACT-style masks + feature warping.

Built by composition on :class:`edge_perception.detection.model.RTDETR` (``self.det``; its
weights keep their names under ``det.``, so a ``det-train`` checkpoint warm-starts it):

- **keyframe path** (:meth:`VISModel.forward_key`): the full backbone (S2..S5) and hybrid encoder
  (P3, P4, P5 at strides 8/16/32), the decoder with all its layers, then the heads: protonet on P3
  + the stride-4 skip S2, per-query mask coefficients and embeddings. The keyframe state kept for
  later frames is ``(P4, P5, reduced S3)``.
- **non-keyframe path** (:meth:`VISModel.forward_nonkey`): the backbone only up to S3 (stride 8),
  :class:`~edge_perception.vis.flow.FeatFlowNet` between the current and the keyframe's reduced
  S3, the keyframe's *final* encoder maps P4 / P5 warped to the current frame (plus per-channel
  scale / bias), a light stride-8 fuse rebuilding P3 from the current S3, then the decoder with
  only ``nonkey_layers`` layers over ``nonkey_queries`` selected queries (at inference; training
  runs every layer over every query, deeply supervised) and the same heads; or, with
  ``nonkey_propagate``, no query selection at all: the keyframe's ``num_top`` decoded queries,
  their boxes moved by the flow, refined by one decoder layer of their own
  (:class:`~edge_perception.vis.propagate.QueryPropagator`).

Each path's output dict is the decoder's (``pred_logits``, ``pred_boxes``, ``pred_queries``, aux /
encoder / denoising outputs in training) plus ``pred_coeffs`` [B, Q, k], ``pred_embeds`` [B, Q, E]
(also per aux output), ``protos`` [B, k, H/4, W/4], ``semantic`` (training only) and
``features`` (``s2``, ``s3``, ``p3``, ``p4``, ``p5``, ``flow_feat``; non-key also the flows).
Masks are :func:`~edge_perception.vis.heads.mask_probs` of coefficients and prototypes, cropped to
the box at the output resolution.

Variants: ``tiny`` (tests only; on the detector's ``tiny``) and ``small`` (on ``det_small``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from edge_perception.detection.model import RTDETR, RTDETRConfig, build_rtdetr, config_dict
from edge_perception.vis.flow import FeatFlowNet, WarpFuse, warp
from edge_perception.vis.heads import ProtoNet, QueryHeads, SemanticHead
from edge_perception.vis.propagate import QueryPropagator, top_queries

KeyState = Dict[str, Tensor]


@dataclass
class VISConfig:
    """Hyper-parameters of the VIS additions (the detector has its own :class:`RTDETRConfig`)."""

    num_protos: int = 32
    proto_dim: int = 32
    embed_dim: int = 32
    flow_reduce: int = 16
    flow_hidden: int = 32
    #: radius (stride-16 cells) of the flow net's local cost volume; 0 = none (vis/flow.py)
    flow_corr_radius: int = 0
    nonkey_layers: int = 1
    #: queries the non-key decoder selects from the encoder tokens at inference (0: the
    #: detector's own number, 100 for ``small``). Measured (MACs, 288x480): the decoder's cost is
    #: mostly per token, not per query (token projection + scores over all ~2800 tokens, the
    #: deformable value projection), so 50 queries cut the non-key path only from 0.42 to 0.40
    #: of the key path; off by default (no retraining needed either way)
    nonkey_queries: int = 0
    num_top: int = 50
    #: non-key path decodes the keyframe's ``num_top`` queries (moved by the flow, one layer of
    #: their own) instead of selecting queries over all tokens (vis/propagate.py)
    nonkey_propagate: bool = False
    semantic_head: bool = True
    #: the mask loss's region is the ground-truth box grown by this fraction of its size per
    #: side (``vis-train --mask-margin``); the runtime crops masks to boxes grown the same
    #: (``runtime.vis.paste_masks``; ``vis-export`` writes it to the manifest)
    mask_margin: float = 0.0
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> VISConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown VIS config keys: {sorted(unknown)}")
        return cls(**d)


VARIANTS: Dict[str, Dict[str, Any]] = {
    "tiny": dict(
        det="tiny",
        vis=dict(
            num_protos=8,
            proto_dim=8,
            embed_dim=8,
            flow_reduce=8,
            flow_hidden=8,
            nonkey_layers=1,
            nonkey_queries=14,
            num_top=10,
            nonkey_propagate=True,
            flow_corr_radius=1,
        ),
    ),
    "small": dict(det="small", vis=dict(nonkey_propagate=True, flow_corr_radius=3)),
}


class VISModel(nn.Module):
    """Detector + mask / embedding heads + flow-warped non-key path (module docstring)."""

    def __init__(self, det: RTDETR, cfg: VISConfig) -> None:
        super().__init__()
        if det.cfg.use_s2:
            raise ValueError("the VIS model needs a detector without the S2 encoder level")
        if not 1 <= cfg.nonkey_layers <= det.cfg.decoder_layers:
            raise ValueError(f"nonkey_layers must be in 1..{det.cfg.decoder_layers}")
        if cfg.nonkey_queries and not cfg.num_top <= cfg.nonkey_queries <= det.cfg.num_queries:
            raise ValueError(
                f"nonkey_queries must be 0 or in {cfg.num_top}..{det.cfg.num_queries} (num_top.."
                f"the detector's queries), got {cfg.nonkey_queries}"
            )
        self.det = det
        self.cfg = cfg
        hidden = det.cfg.hidden_dim
        s2_ch, s3_ch = det.backbone.out_channels[0], det.backbone.out_channels[1]
        self.protonet = ProtoNet(hidden, s2_ch, cfg.proto_dim, cfg.num_protos)
        self.query_heads = QueryHeads(hidden, cfg.num_protos, cfg.embed_dim)
        self.semantic_head = (
            SemanticHead(hidden, det.cfg.num_classes) if cfg.semantic_head else None
        )  # training only
        self.flow_net = FeatFlowNet(
            s3_ch, hidden, cfg.flow_reduce, cfg.flow_hidden, cfg.flow_corr_radius
        )
        self.fuse = WarpFuse(det.encoder.input_proj[0], hidden)
        self.propagator = QueryPropagator(det.decoder) if cfg.nonkey_propagate else None
        self.std_folded = False  # fold_input_std (export only)

    @property
    def num_classes(self) -> int:
        return self.det.cfg.num_classes

    def _normalise(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
        if self.std_folded:
            return images - self.det.mean
        # x * (1/std): ORT runs a broadcast Mul ~4x faster than a Div over the whole image
        return (images - self.det.mean) * (1.0 / self.det.std)

    def fold_input_std(self) -> None:
        """Fold the input normalisation's ``1 / std`` into the stem's first conv, in place (for
        export; the weights no longer fit training): ``conv(W, (x - m) / s)`` equals
        ``conv(W / s, x - m)`` exactly, zero padding included (the padded value is 0 either
        way), so the graph loses one full-resolution elementwise op per frame. Idempotent."""
        if self.std_folded:
            return
        conv = self.det.backbone.stem[0][0]
        if not isinstance(conv, nn.Conv2d) or conv.groups != 1 or conv.in_channels != 3:
            raise TypeError(f"the stem starts with {type(conv).__name__}, not a dense 3-ch conv")
        with torch.no_grad():
            conv.weight.mul_((1.0 / self.det.std).reshape(1, 3, 1, 1))
        self.std_folded = True

    def backbone_to_s3(self, images: Tensor) -> List[Tensor]:
        """The partial backbone: ``[S2, S3]`` (strides 4 and 8) of RGB ``images`` in [0, 1]."""
        bb = self.det.backbone
        s2 = bb.stages[0](bb.stem(self._normalise(images)))
        return [s2, bb.stages[1](s2)]

    def key_features(self, images: Tensor) -> Dict[str, Tensor]:
        """Full backbone + encoder: ``s2``, ``s3``, ``p3``, ``p4``, ``p5``, ``flow_feat``."""
        s2, s3 = self.backbone_to_s3(images)
        s4 = self.det.backbone.stages[2](s3)
        s5 = self.det.backbone.stages[3](s4)
        p3, p4, p5 = self.det.encoder([s2, s3, s4, s5])
        return {
            "s2": s2,
            "s3": s3,
            "p3": p3,
            "p4": p4,
            "p5": p5,
            "flow_feat": self.flow_net.reduce(s3),
        }

    def nonkey_features(self, images: Tensor, key: KeyState) -> Dict[str, Tensor]:
        """Partial backbone + flow + warp + stride-8 fuse (``key``: ``p4``, ``p5``,
        ``flow_feat`` of the keyframe)."""
        s2, s3 = self.backbone_to_s3(images)
        cur = self.flow_net.reduce(s3)
        fl = self.flow_net(cur, key["flow_feat"])
        hw = (int(images.shape[2]), int(images.shape[3]))
        feats = {"s2": s2, "s3": s3, "flow_feat": cur}
        feats.update(self.warp_key(s3, key, fl, hw))
        feats.update(fl)
        return feats

    def warp_key(
        self, s3: Tensor, key: KeyState, fl: Dict[str, Tensor], image_hw: Tuple[int, int]
    ) -> Dict[str, Tensor]:
        """``p4`` / ``p5``: the keyframe's maps warped by ``fl``'s ``flow16`` / ``flow32`` and
        scaled by its ``scale*`` / ``bias*`` (a :class:`FeatFlowNet` output, or any flows of
        that layout); ``p3``: the stride-8 fuse of the current ``s3`` with the warped ``p4``."""
        p4 = warp(key["p4"], fl["flow16"], image_hw) * (1 + fl["scale16"]) + fl["bias16"]
        p5 = warp(key["p5"], fl["flow32"], image_hw) * (1 + fl["scale32"]) + fl["bias32"]
        return {"p3": self.fuse(s3, p4), "p4": p4, "p5": p5}

    def decode(
        self,
        feats: Dict[str, Tensor],
        targets: Optional[List[Dict[str, Tensor]]] = None,
        layers: Optional[int] = None,
        queries: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Decoder on ``[p3, p4, p5]``; ``layers`` limits the layers and ``queries`` the selected
        queries, at inference only (training always decodes the detector's full set)."""
        dec = self.det.decoder
        saved = dec.eval_layers, dec.num_queries
        if layers is not None:
            dec.set_eval_layers(layers)
        if queries and not self.training:
            dec.num_queries = int(queries)
        try:
            return dec([feats["p3"], feats["p4"], feats["p5"]], targets)
        finally:
            dec.eval_layers, dec.num_queries = saved

    def add_heads(self, out: Dict[str, Any], feats: Dict[str, Tensor]) -> Dict[str, Any]:
        """Protonet, per-query coefficients / embeddings (also of aux outputs), semantic."""
        out["protos"] = self.protonet(feats["p3"], feats["s2"])
        for o in [out, *out.get("aux_outputs", [])]:
            o["pred_coeffs"], o["pred_embeds"] = self.query_heads(o["pred_queries"])
        if self.training and self.semantic_head is not None:
            out["semantic"] = self.semantic_head(feats["p3"])
        out["features"] = feats
        return out

    def forward_key(
        self, images: Tensor, targets: Optional[List[Dict[str, Tensor]]] = None
    ) -> Dict[str, Any]:
        """Keyframe path (module docstring)."""
        feats = self.key_features(images)
        out = self.decode(feats, targets)
        if self.training and self.det.dense_head is not None:
            out["dense_outputs"] = self.det.dense_head([feats["p3"], feats["p4"], feats["p5"]])
        return self.add_heads(out, feats)

    def forward_nonkey(
        self,
        images: Tensor,
        key: KeyState,
        targets: Optional[List[Dict[str, Tensor]]] = None,
    ) -> Dict[str, Any]:
        """Non-keyframe path against the keyframe state ``key`` (module docstring)."""
        feats = self.nonkey_features(images, key)
        if self.propagator is not None:
            out = self.propagate(feats, key, (int(images.shape[2]), int(images.shape[3])))
        else:
            out = self.decode(feats, targets, self.cfg.nonkey_layers, self.cfg.nonkey_queries)
        return self.add_heads(out, feats)

    def propagate(
        self, feats: Dict[str, Tensor], key: KeyState, image_hw: Tuple[int, int]
    ) -> Dict[str, Any]:
        """The propagating non-key decoder (``key``: ``queries`` / ``boxes`` of the keyframe)."""
        if self.propagator is None:
            raise ValueError("this model was built without nonkey_propagate")
        if "queries" not in key or "boxes" not in key:
            raise ValueError("the keyframe state lacks 'queries' / 'boxes' (key_state of a "
                             "keyframe output of a propagating model)")  # fmt: skip
        return dict(
            self.propagator(
                self.det.decoder,
                [feats["p3"], feats["p4"], feats["p5"]],
                key["queries"],
                key["boxes"],
                feats["flow16"],
                image_hw,
            )
        )

    def key_state(self, out: Dict[str, Any]) -> KeyState:
        """What a keyframe leaves for the following non-keyframes: ``p4``, ``p5``, ``flow_feat``
        and, when propagating, the ``num_top`` best queries' ``queries`` / ``boxes`` (detached:
        the non-key loss does not train the keyframe's decoder through them)."""
        f = out["features"]
        state = {"p4": f["p4"], "p5": f["p5"], "flow_feat": f["flow_feat"]}
        if self.propagator is not None:
            top = top_queries(out, self.cfg.num_top)
            state["queries"] = top["queries"].detach()
            state["boxes"] = top["boxes"].detach()
        return state

    def forward(
        self,
        images: Tensor,
        targets: Optional[List[Dict[str, Tensor]]] = None,
        key: Optional[KeyState] = None,
    ) -> Dict[str, Any]:
        """``forward_key`` without ``key``, else ``forward_nonkey``."""
        if key is None:
            return self.forward_key(images, targets)
        return self.forward_nonkey(images, key, targets)


def build_vis(variant: str = "small", det: Optional[RTDETR] = None, **overrides: Any) -> VISModel:
    """VIS model of a named variant; ``det`` (e.g. a warm-start detector) replaces the fresh one,
    ``overrides`` replace :class:`VISConfig` fields."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown VIS variant {variant!r}; known: {', '.join(VARIANTS)}")
    spec = VARIANTS[variant]
    cfg = dict(spec["vis"])
    cfg.update(overrides)
    if det is None:
        det = build_rtdetr(spec["det"])
    return VISModel(det, VISConfig.from_dict(cfg))


def vis_config_dict(model: VISModel) -> Dict[str, Any]:
    """Both configs (``det`` and ``vis``), what checkpoints store to rebuild the model."""
    return {"det": config_dict(model.det), "vis": asdict(model.cfg)}


def vis_from_config(cfg: Dict[str, Any]) -> VISModel:
    """A freshly initialised model of :func:`vis_config_dict`'s layout."""
    return VISModel(RTDETR(RTDETRConfig.from_dict(cfg["det"])), VISConfig.from_dict(cfg["vis"]))


def vis_from_checkpoint(ckpt: Dict[str, Any], use_ema: bool = True) -> VISModel:
    """Rebuild a model from a ``vis-train`` checkpoint (configs + EMA or raw weights)."""
    if "vis_config" not in ckpt:
        raise ValueError("checkpoint lacks 'vis_config': not written by vis-train?")
    model = vis_from_config(ckpt["vis_config"])
    key = "ema" if use_ema and ckpt.get("ema") is not None else "model"
    model.load_state_dict(ckpt[key])
    return model
