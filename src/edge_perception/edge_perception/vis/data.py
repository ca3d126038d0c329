"""Clips for video instance segmentation training: frames, instance masks, track ids, flow.

Reads the carla_bridge layout (docs/CONTRACTS.md) through files only (no carla_bridge import):
``<split>/annotations/coco.json`` (per-frame RLE masks, ``track_id``, ``ignore``; images carry
``video_id``, ``sequence``, ``frame_index``), ``<split>/images/...`` and
``<split>/flow/<seq>/<idx:06d>.npz`` (backward flow: ``p + flow[p]`` is where pixel ``p`` of a
frame was in the previous frame).

A clip is ``frames`` (2 or 3) frames of one sequence, the first being the keyframe, later ones
``1..max_gap`` frames apart each. Per frame: the letterboxed image and a target dict
(``labels``, ``boxes`` normalised cxcywh, ``ignore_boxes``, ``masks`` [n, H, W] uint8 at the
input size, ``track_ids`` [n] (data set ids, unique per split), ``image_id``); per non-first
frame the backward flow from that frame to the *keyframe* (the per-frame flows chained with
``cv2.remap``, in input pixels) and its validity. Augmentation (``augment=True``), the same for
every frame of a clip: horizontal flip (flow ``u`` negated) and photometric jitter; seeded by
(seed, epoch, index) like the detector's data.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import Tensor
from torch.utils.data import Dataset

from edge_perception.detection.data import letterbox, photometric, read_rgb


def read_flow(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(flow float32 H x W x 2, valid bool H x W)`` of one ``.npz`` flow file."""
    with np.load(path) as z:
        return np.ascontiguousarray(z["flow"], np.float32), np.asarray(z["valid"], bool)


def chain_flows(flows: Sequence[Tuple[np.ndarray, np.ndarray]]) -> Tuple[np.ndarray, np.ndarray]:
    """Compose backward flows ``[f_c, f_{c-1}, ..., f_{k+1}]`` into the flow from frame ``c`` to
    frame ``k``: ``F(p) = f_c(p) + F'(p + f_c(p))``, validity AND-ed along the chain and False
    where the chain leaves the image."""
    acc, valid = flows[0][0].copy(), flows[0][1].copy()
    h, w = acc.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    for f, v in flows[1:]:
        mx, my = gx + acc[..., 0], gy + acc[..., 1]
        inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        acc = acc + cv2.remap(f, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        vv = cv2.remap(v.astype(np.uint8), mx, my, cv2.INTER_NEAREST) > 0
        valid = valid & vv & inside
    return acc, valid


def flow_to_input(
    flow: np.ndarray,
    valid: np.ndarray,
    size: Tuple[int, int],
    scale_xy: Tuple[float, float],
    offset_xy: Tuple[int, int] = (0, 0),
) -> Tuple[np.ndarray, np.ndarray]:
    """A camera-resolution flow [h, w, 2] and its validity [h, w] placed into a network input of
    ``size`` (H, W): resized (bilinear, validity nearest) to ``round(w * sx) x round(h * sy)``,
    the vectors scaled by ``(sx, sy)`` too, at ``offset_xy`` (x, y); zero / invalid elsewhere
    (the letterbox padding). Returns ``(flow [H, W, 2] float32, valid [H, W] bool)``."""
    h, w = flow.shape[:2]
    sx, sy = float(scale_xy[0]), float(scale_xy[1])
    nh, nw = max(1, round(h * sy)), max(1, round(w * sx))
    x0, y0 = int(offset_xy[0]), int(offset_xy[1])
    fl = np.zeros((*size, 2), np.float32)
    va = np.zeros(size, bool)
    moved = cv2.resize(np.ascontiguousarray(flow), (nw, nh))
    moved[..., 0] *= sx
    moved[..., 1] *= sy
    fl[y0 : y0 + nh, x0 : x0 + nw] = moved
    m = np.ascontiguousarray(valid, np.uint8)
    if (nh, nw) != (h, w):
        m = cv2.resize(m, (nw, nh), interpolation=cv2.INTER_NEAREST)
    va[y0 : y0 + nh, x0 : x0 + nw] = m > 0
    return fl, va


def letterbox_mask(mask: np.ndarray, s: float, size: Tuple[int, int]) -> np.ndarray:
    """A 0/1 mask scaled by ``s`` (nearest) and padded bottom/right to ``size``: bool."""
    h, w = mask.shape
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    out = np.zeros(size, bool)
    m = np.ascontiguousarray(mask, np.uint8)
    if (nh, nw) != (h, w):
        m = cv2.resize(m, (nw, nh), interpolation=cv2.INTER_NEAREST)
    out[:nh, :nw] = m[: size[0], : size[1]] > 0
    return out


class ClipDataset(Dataset):
    """Clips of one split (module docstring); ``__getitem__`` -> list of per-frame dicts with
    ``image`` [3, H, W] float in [0, 1], ``target`` and, from the second frame on, ``flow``
    [2, H, W] (to the keyframe, input pixels) and ``flow_valid`` [H, W] bool."""

    def __init__(
        self,
        root: str,
        split: str = "train",
        input_size: Tuple[int, int] = (288, 480),
        frames: int = 2,
        max_gap: int = 2,
        augment: bool = False,
        with_flow: bool = True,
        max_clips: Optional[int] = None,
        seed: int = 0,
    ) -> None:
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        if input_size[0] % 32 or input_size[1] % 32:
            raise ValueError(f"input size {input_size} must be multiples of 32 (H, W)")
        ann_path = os.path.join(root, split, "annotations", "coco.json")
        if not os.path.isfile(ann_path):
            raise FileNotFoundError(f"{ann_path} not found: not a carla_bridge data set")
        with open(ann_path, encoding="utf-8") as f:
            coco = json.load(f)
        self.root, self.split = root, split
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.frames, self.max_gap = frames, max(1, max_gap)
        self.augment, self.with_flow, self.seed, self.epoch = augment, with_flow, seed, 0
        self.images = {im["id"]: im for im in coco["images"]}
        self.anns: Dict[int, List[Dict[str, Any]]] = {i: [] for i in self.images}
        for a in coco.get("annotations", []):
            if a["image_id"] in self.anns:
                self.anns[a["image_id"]].append(a)
        seqs: Dict[Any, List[Dict[str, Any]]] = {}
        for im in coco["images"]:
            seqs.setdefault(im.get("video_id", im.get("sequence")), []).append(im)
        self.sequences = [
            sorted(v, key=lambda im: im["frame_index"]) for _, v in sorted(seqs.items())
        ]
        self.clips = [
            (s, i) for s, seq in enumerate(self.sequences) for i in range(len(seq) - frames + 1)
        ]
        if max_clips is not None:
            self.clips = self.clips[:max_clips]

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        """Reseed the clip gaps and augmentations."""
        self.epoch = epoch

    def _frame_ids(self, idx: int, rng: np.random.Generator) -> List[int]:
        s, start = self.clips[idx]
        n = len(self.sequences[s])
        pos = [start]
        for _ in range(self.frames - 1):
            room = n - 1 - pos[-1] - (self.frames - len(pos) - 1)
            gap = int(rng.integers(1, min(self.max_gap, room) + 1)) if room > 1 else 1
            pos.append(pos[-1] + gap)
        return pos

    def _flow_to(self, seq: List[Dict[str, Any]], cur: int, key: int) -> Tuple[np.ndarray, ...]:
        chain = []
        for j in range(cur, key, -1):
            name = os.path.splitext(seq[j]["file_name"])[0] + ".npz"
            chain.append(read_flow(os.path.join(self.root, self.split, "flow", name)))
        return chain_flows(chain)

    def _target(
        self, info: Dict[str, Any], s: float, flip: bool
    ) -> Tuple[Dict[str, Any], np.ndarray]:
        hh, ww = self.input_size
        w0 = int(info["width"])
        keep, ign, masks = [], [], []
        for a in self.anns[info["id"]]:
            x, y, bw, bh = (float(v) for v in a["bbox"])
            if flip:
                x = w0 - x - bw
            box = [(x + bw / 2) * s / ww, (y + bh / 2) * s / hh, bw * s / ww, bh * s / hh]
            if a.get("iscrowd", 0) or a.get("ignore", False):
                ign.append(box)
                continue
            m = mask_utils.decode(a["segmentation"])
            if flip:
                m = m[:, ::-1]
            masks.append(letterbox_mask(m, s, self.input_size))
            keep.append((a["category_id"] - 1, int(a.get("track_id", -1)), box))
        target = {
            "labels": torch.tensor([k[0] for k in keep], dtype=torch.long),
            "track_ids": torch.tensor([k[1] for k in keep], dtype=torch.long),
            "boxes": torch.tensor([k[2] for k in keep], dtype=torch.float32).reshape(-1, 4),
            "ignore_boxes": torch.tensor(ign, dtype=torch.float32).reshape(-1, 4),
            "image_id": int(info["id"]),
            "scale": float(s),
        }
        arr = np.stack(masks) if masks else np.zeros((0, hh, ww), bool)
        target["masks"] = torch.from_numpy(arr.astype(np.uint8))
        return target, arr

    def __getitem__(self, idx: int) -> List[Dict[str, Any]]:
        rng = np.random.default_rng((self.seed, self.epoch, idx))
        pos = self._frame_ids(idx, rng if self.augment else np.random.default_rng(idx))
        flip = bool(self.augment and rng.random() < 0.5)
        jitter = int(rng.integers(1 << 31)) if self.augment and rng.random() < 0.8 else None
        seq = self.sequences[self.clips[idx][0]]
        out = []
        for t, p in enumerate(pos):
            info = seq[p]
            img = read_rgb(os.path.join(self.root, self.split, "images", info["file_name"]))
            if flip:
                img = np.ascontiguousarray(img[:, ::-1])
            if jitter is not None:
                img = photometric(img, np.random.default_rng(jitter))
            img, s = letterbox(img, self.input_size)
            target, _ = self._target(info, s, flip)
            item: Dict[str, Any] = {
                "image": torch.from_numpy(img.transpose(2, 0, 1).copy()).float().div_(255.0),
                "target": target,
            }
            if t > 0 and self.with_flow:
                flow, valid = self._flow_to(seq, p, pos[0])
                if flip:
                    flow = flow[:, ::-1] * np.array([-1.0, 1.0], np.float32)
                    valid = valid[:, ::-1]
                fl, va = flow_to_input(flow, valid, self.input_size, (s, s))
                item["flow"] = torch.from_numpy(fl.transpose(2, 0, 1).copy())
                item["flow_valid"] = torch.from_numpy(va)
            out.append(item)
        return out


def collate_clips(batch: Sequence[List[Dict[str, Any]]]) -> Dict[str, Any]:
    """``images`` [B, T, 3, H, W], ``targets`` (T lists of B dicts), and when present ``flows``
    [B, T-1, 2, H, W] and ``flow_valid`` [B, T-1, H, W]."""
    t = len(batch[0])
    out: Dict[str, Any] = {
        "images": torch.stack([torch.stack([f["image"] for f in clip]) for clip in batch]),
        "targets": [[clip[i]["target"] for clip in batch] for i in range(t)],
    }
    if t > 1 and "flow" in batch[0][1]:
        out["flows"] = torch.stack([torch.stack([f["flow"] for f in clip[1:]]) for clip in batch])
        out["flow_valid"] = torch.stack(
            [torch.stack([f["flow_valid"] for f in clip[1:]]) for clip in batch]
        )
    return out


def frames_as_images(batch: Dict[str, Any]) -> Tuple[Tensor, List[Dict[str, Any]]]:
    """A clip batch flattened to single images [B*T, 3, H, W] and their targets (image mode)."""
    images = batch["images"].flatten(0, 1)
    b, t = batch["images"].shape[:2]
    targets = [batch["targets"][j][i] for i in range(b) for j in range(t)]
    return images, targets
