"""The RT-DETR-style detector and its named variants (``build_rtdetr``).

Variants (7 classes by default, the project's object table):

- ``tiny``: a few hundred thousand parameters, for tests only;
- ``small``: the edge model (the default), depthwise-separable backbone, 128-d hybrid encoder,
  3 decoder layers, 100 queries; budget <= 5 M parameters and <= 6 GFLOPs at 640x640;
- ``small_s2``: ``small`` whose encoder and decoder also use the stride-4 S2 level;
- ``ref_v2s``: an RT-DETRv2-S-sized reference of the same family (ResNet-18-like basic-block
  backbone, 256-d encoder, 3 decoder layers, 300 queries; ~20 M parameters), used only in
  ``bench/det_throughput.py`` for the speed comparison.

Input: ``images`` [N, 3, H, W] RGB in [0, 1] (H, W multiples of 32); mean/std normalisation is
part of the model (and thus of the exported graph).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from edge_perception.detection.backbone import Backbone
from edge_perception.detection.decoder import RTDETRDecoder
from edge_perception.detection.dense_head import DenseHead
from edge_perception.detection.encoder import HybridEncoder
from edge_perception.detection.postprocess import DetectionPostprocessor

NUM_OBJECT_CLASSES = 7  # carla_bridge.classes.OBJECT_CLASSES (read by data, not imported here)


@dataclass
class RTDETRConfig:
    """Every hyper-parameter of the architecture (stored in checkpoints to rebuild the model)."""

    num_classes: int = NUM_OBJECT_CLASSES
    backbone_channels: Tuple[int, ...] = (32, 64, 128, 256)
    backbone_depths: Tuple[int, ...] = (1, 2, 3, 2)
    backbone_block: str = "dw"
    stem_channels: int = 16
    hidden_dim: int = 128
    encoder_heads: int = 4
    encoder_ffn: int = 512
    fusion_depth: int = 1
    use_s2: bool = False
    num_queries: int = 100
    decoder_layers: int = 3
    decoder_heads: int = 4
    decoder_points: int = 4
    decoder_ffn: int = 512
    num_denoising: int = 100
    label_noise_ratio: float = 0.5
    box_noise_scale: float = 1.0
    num_top: int = 100
    dropout: float = 0.0
    dense_head: bool = False  # training-only dense one-to-many head (dense_head.py)
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> RTDETRConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown RT-DETR config keys: {sorted(unknown)}")
        d = dict(d)
        for k in ("backbone_channels", "backbone_depths"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


VARIANTS: Dict[str, Dict[str, Any]] = {
    "tiny": dict(
        backbone_channels=(8, 16, 24, 32),
        backbone_depths=(1, 1, 1, 1),
        stem_channels=8,
        hidden_dim=32,
        encoder_heads=2,
        encoder_ffn=64,
        num_queries=20,
        decoder_layers=2,
        decoder_heads=2,
        decoder_points=2,
        decoder_ffn=64,
        num_denoising=10,
        num_top=20,
    ),
    "small": {},
    "small_s2": dict(use_s2=True),
    "ref_v2s": dict(
        backbone_channels=(64, 128, 256, 512),
        backbone_depths=(3, 3, 3, 2),
        backbone_block="basic",
        stem_channels=32,
        hidden_dim=256,
        encoder_heads=8,
        encoder_ffn=1024,
        fusion_depth=3,
        num_queries=300,
        decoder_layers=3,
        decoder_heads=8,
        decoder_points=4,
        decoder_ffn=1024,
        num_top=300,
    ),
}


class RTDETR(nn.Module):
    """Backbone -> hybrid encoder -> decoder; ``deploy()`` switches to the exported contract.

    ``forward(images, targets=None)``: in training/eval mode returns the decoder's output dict
    (normalised cxcywh boxes, class logits, plus the auxiliary outputs in training); in deploy mode
    returns ``(boxes, scores, labels)`` per :class:`DetectionPostprocessor`.
    """

    def __init__(self, cfg: RTDETRConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.backbone = Backbone(
            cfg.backbone_channels, cfg.backbone_depths, cfg.backbone_block, cfg.stem_channels
        )
        self.encoder = HybridEncoder(
            self.backbone.out_channels,
            cfg.hidden_dim,
            cfg.encoder_heads,
            cfg.encoder_ffn,
            cfg.fusion_depth,
            cfg.use_s2,
            cfg.dropout,
        )
        self.decoder = RTDETRDecoder(
            cfg.hidden_dim,
            cfg.num_classes,
            cfg.num_queries,
            cfg.decoder_layers,
            cfg.decoder_heads,
            self.encoder.num_levels,
            cfg.decoder_points,
            cfg.decoder_ffn,
            cfg.num_denoising,
            cfg.label_noise_ratio,
            cfg.box_noise_scale,
            cfg.dropout,
        )
        self.dense_head = (
            DenseHead(cfg.hidden_dim, cfg.num_classes) if cfg.dense_head else None
        )  # training only: never run in eval / deploy mode, not in the exported graph
        self.postprocessor = DetectionPostprocessor(cfg.num_classes, cfg.num_top)
        self.deploy_mode = False

    def set_eval_layers(self, k: int) -> None:
        """Run only the first ``k`` decoder layers at inference (no retraining needed)."""
        self.decoder.set_eval_layers(k)

    def deploy(self, on: bool = True) -> RTDETR:
        """Switch to (or from) the deployment contract; also sets eval mode when switching on."""
        self.deploy_mode = on
        if on:
            self.eval()
        return self

    def forward(self, images: Tensor, targets: Optional[List[Dict[str, Tensor]]] = None) -> Any:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
        x = (images - self.mean) / self.std
        feats = self.encoder(self.backbone(x))
        out = self.decoder(feats, targets)
        if self.training and self.dense_head is not None:
            out["dense_outputs"] = self.dense_head(feats)
        if self.deploy_mode:
            h, w = int(images.shape[2]), int(images.shape[3])
            return self.postprocessor(out["pred_logits"], out["pred_boxes"], (h, w))
        return out


def build_rtdetr(variant: str = "small", **overrides: Any) -> RTDETR:
    """Model of a named variant (see the module docstring); ``overrides`` replace config fields."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown RT-DETR variant {variant!r}; known: {', '.join(VARIANTS)}")
    cfg = dict(VARIANTS[variant])
    cfg.update(overrides)
    return RTDETR(RTDETRConfig.from_dict(cfg))


def model_from_checkpoint(ckpt: Dict[str, Any], use_ema: bool = True) -> Any:
    """Rebuild a model from a training checkpoint (config + EMA or raw weights): an
    :class:`RTDETR`, or a :class:`~edge_perception.detection.yolox.YOLOX` when the config says
    ``"model": "yolox"`` (the dense baseline)."""
    if "config" not in ckpt:
        raise ValueError("checkpoint lacks 'config': not written by det-train?")
    if ckpt["config"].get("model") == "yolox":
        from edge_perception.detection.yolox import YOLOX, YOLOXConfig

        model: nn.Module = YOLOX(YOLOXConfig.from_dict(ckpt["config"]))
    else:
        model = RTDETR(RTDETRConfig.from_dict(ckpt["config"]))
    key = "ema" if use_ema and ckpt.get("ema") is not None else "model"
    model.load_state_dict(ckpt[key])
    return model


def count_parameters(model: nn.Module) -> int:
    """Parameters used at inference (a training-only dense head is not counted)."""
    skip = (
        {id(p) for p in model.dense_head.parameters()}
        if getattr(model, "dense_head", None)
        else set()
    )
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def config_dict(model: nn.Module) -> Dict[str, Any]:
    """The model's config dataclass as a JSON-friendly dict (tuples as lists)."""
    d = asdict(model.cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
