"""COCO detection data over the carla_bridge layout, augmentations, letterbox and collate.

Reads ``<root>/<split>/annotations/coco.json`` and the images it names under
``<root>/<split>/images/`` (docs/CONTRACTS.md). Labels are 0-based class indices
(``category_id - 1``, the project's class table); boxes are returned as normalised cxcywh of the
network input.

Geometry: every image is *letterboxed* -- scaled by ``s = min(H_in / h, W_in / w)`` and padded at
the bottom/right with grey -- so a box in input pixels maps back to the original image by ``/ s``
(``target["scale"]``). Training augmentations (``augment=True``):

- random zoom-in crop (keep 60-100 % of each side; boxes clipped, objects with < 40 % of their area
  left or smaller than 2 px dropped) -- distance variation;
- horizontal flip (p = 0.5; boxes mirrored) -- the classes have no left/right meaning;
- photometric jitter: brightness, contrast, saturation (HSV), p = 0.8 -- light and weather;
- mosaic (``mosaic_prob``, set by the trainer per phase; 0 by default): four images around a
  random centre, each scaled 0.6-1 and cropped to its quadrant -- more objects and contexts per
  sample (DEIM's "dense one-to-one" idea), without shrinking the small objects much.

Ignore-flagged objects and crowd regions are returned apart, as ``target["ignore_boxes"]``
(normalised cxcywh): the loss treats them as neither positive nor negative, like the evaluator.

With ``cache=True`` the decoded images are kept in memory already scaled to fit the input size
(a 384x640 frame is 0.7 MB), so epochs after the first skip JPEG decoding.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from edge_perception import datafiles
from edge_perception.runtime.preprocess import PAD_VALUE, shrink_flag


def read_rgb(path: str) -> np.ndarray:
    """uint8 H x W x 3 RGB image; a missing, truncated or undecodable file raises a
    :class:`~edge_perception.datafiles.DataError` naming the file and the problem."""
    return datafiles.read_rgb(path)


def letterbox(image: np.ndarray, size: Tuple[int, int]) -> Tuple[np.ndarray, float]:
    """Scale ``image`` to fit ``size`` (H, W) keeping its aspect, pad bottom/right; returns
    ``(padded uint8 H x W x 3, scale)``."""
    h, w = image.shape[:2]
    s = min(size[0] / h, size[1] / w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    if (nh, nw) != (h, w):
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (nw, nh), interpolation=interp)
    out = np.full((size[0], size[1], 3), PAD_VALUE, dtype=np.uint8)
    out[:nh, :nw] = image
    return out, s


def photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random brightness / contrast / saturation jitter of a uint8 RGB image."""
    img = image.astype(np.float32)
    img = img * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25)  # contrast, brightness
    mean = img.mean()
    img = (img - mean) * rng.uniform(0.8, 1.2) + mean
    img = np.clip(img, 0, 255).astype(np.uint8)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.6, 1.4), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def hflip(image: np.ndarray, boxes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Mirror an image (a view) and its xyxy pixel boxes left-right."""
    w = image.shape[1]
    flipped = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)
    return image[:, ::-1], flipped.reshape(-1, 4)


def crop_boxes(
    boxes: np.ndarray, labels: np.ndarray, x0: int, y0: int, cw: int, ch: int
) -> Tuple[np.ndarray, np.ndarray]:
    """xyxy pixel boxes of the window ``(x0, y0, cw, ch)``: clipped to it; objects with < 40 %
    of their area left or thinner than 2 px are dropped, ignore regions (label -1) stay while
    any part is visible."""
    if not len(boxes):
        return boxes, labels
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    b = boxes - np.array([x0, y0, x0, y0], dtype=np.float32)
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, cw)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, ch)
    new_area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    keep = (new_area >= 0.4 * np.maximum(area, 1e-6)) & (b[:, 2] - b[:, 0] >= 2)
    keep &= b[:, 3] - b[:, 1] >= 2
    keep |= (labels < 0) & (new_area > 0)
    return b[keep], labels[keep]


def random_crop(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    min_keep: float = 0.6,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop a random window (``min_keep``-1 of each side, same aspect); xyxy pixel boxes follow."""
    h, w = image.shape[:2]
    f = rng.uniform(min_keep, 1.0)
    ch, cw = max(8, int(h * f)), max(8, int(w * f))
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    boxes, labels = crop_boxes(boxes, labels, x0, y0, cw, ch)
    return image[y0 : y0 + ch, x0 : x0 + cw], boxes, labels


class CocoDetection(Dataset):
    """One split of a carla_bridge data set (or any COCO json + image folder).

    ``__getitem__`` returns ``(image [3, H, W] float32 in [0, 1], target)`` with ``target`` keys
    ``labels`` [n] long, ``boxes`` [n, 4] normalised cxcywh, ``ignore_boxes`` [m, 4] (crowd and
    ignore-flagged regions), ``image_id`` int, ``scale`` float (letterbox factor), ``orig_size``
    (h, w). ``ignore_regions=False`` trains ignore-flagged objects as positives (the pre-issue-11
    behaviour, kept for the A/B).
    """

    def __init__(
        self,
        root: str,
        split: str = "train",
        input_size: Tuple[int, int] = (384, 640),
        augment: bool = False,
        num_classes: int = 7,
        cache: bool = False,
        max_images: Optional[int] = None,
        seed: int = 0,
        interpolation: str = "area",
        ignore_regions: bool = True,
    ) -> None:
        self.shrink = shrink_flag(interpolation)
        ann_path = os.path.join(root, split, "annotations", "coco.json")
        if input_size[0] % 32 or input_size[1] % 32:
            raise ValueError(f"input size {input_size} must be multiples of 32 (H, W)")
        hint = (
            f"{root!r} is not a carla_bridge data set with a {split!r} split "
            "(create one with `carla-bridge generate`)"
        )
        datafiles.check_file(ann_path, "coco.json", hint)
        coco = datafiles.read_json(ann_path, "coco.json", ("images", "annotations"), hint=hint)
        self.coco_path = ann_path
        self.image_dir = os.path.join(root, split, "images")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.augment = augment
        self.num_classes = num_classes
        self.images: List[Dict[str, Any]] = sorted(coco["images"], key=lambda im: im["id"])
        if max_images is not None:
            self.images = self.images[:max_images]
        bad = [c for c in coco.get("categories", []) if not 1 <= c["id"] <= num_classes]
        if bad:
            raise datafiles.DataError(ann_path, f"category ids outside 1..{num_classes}: {bad}")
        self.anns: Dict[int, List[Dict[str, Any]]] = {im["id"]: [] for im in self.images}
        # ignore-flagged (tiny / mostly hidden) objects and crowd regions: neither positives nor
        # negatives in training, exactly as the evaluator treats them (docs/CONTRACTS.md)
        self.ignores: Dict[int, List[List[float]]] = {im["id"]: [] for im in self.images}
        for a in coco.get("annotations", []):
            if a["image_id"] not in self.anns:
                continue
            if a.get("iscrowd", 0) or (ignore_regions and a.get("ignore", 0)):
                self.ignores[a["image_id"]].append(a["bbox"])
            else:
                self.anns[a["image_id"]].append(a)
        self.mosaic_prob = 0.0
        self.cache = cache
        self._cache: Dict[int, Tuple[np.ndarray, float]] = {}
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        """Reseed the augmentations (call once per epoch, like ``DistributedSampler``)."""
        self.epoch = epoch

    def _load(self, idx: int) -> Tuple[np.ndarray, float]:
        """Image pre-scaled to fit the input size (cached) and that pre-scale factor."""
        if idx in self._cache:
            return self._cache[idx]
        img = read_rgb(os.path.join(self.image_dir, self.images[idx]["file_name"]))
        h, w = img.shape[:2]
        s = min(1.0, self.input_size[0] / h, self.input_size[1] / w)
        if s < 1.0:
            img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=self.shrink)
        if self.cache:
            self._cache[idx] = (img, s)
        return img, s

    def _raw(self, idx: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Pre-scaled image, xyxy pixel boxes and labels (ignore regions with label -1)."""
        info = self.images[idx]
        img, pre = self._load(idx)
        anns = self.anns[info["id"]]
        ign = self.ignores[info["id"]]
        boxes = (
            np.array([a["bbox"] for a in anns] + list(ign), dtype=np.float32).reshape(-1, 4) * pre
        )
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        labels = np.array([a["category_id"] - 1 for a in anns] + [-1] * len(ign), dtype=np.int64)
        return img, boxes, labels, pre

    def _augment(
        self, img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        if rng.random() < 0.5:
            img, boxes, labels = random_crop(img, boxes, labels, rng)
        if rng.random() < 0.5:
            img, boxes = hflip(img, boxes)
        return img, boxes, labels

    def _mosaic(
        self, idx: int, rng: np.random.Generator
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Four images in a 2 x 2 layout around a random centre, each scaled by 0.6-1 and
        cropped to its quadrant (objects keep most of their size: the small ones are what this
        detector struggles with); boxes clipped and filtered as in :func:`random_crop`."""
        hh, ww = self.input_size
        cy = int(rng.uniform(0.3, 0.7) * hh)
        cx = int(rng.uniform(0.3, 0.7) * ww)
        canvas = np.full((hh, ww, 3), PAD_VALUE, dtype=np.uint8)
        others = rng.integers(0, len(self.images), size=3)
        all_boxes, all_labels = [], []
        quads = [(0, 0, cx, cy), (cx, 0, ww, cy), (0, cy, cx, hh), (cx, cy, ww, hh)]
        for k, (qx0, qy0, qx1, qy1) in enumerate(quads):
            j = idx if k == 0 else int(others[k - 1])
            img, boxes, labels, _ = self._raw(j)
            if rng.random() < 0.5:
                img, boxes = hflip(img, boxes)
            f = rng.uniform(0.6, 1.0)
            h, w = img.shape[:2]
            nh, nw = max(8, round(h * f)), max(8, round(w * f))
            img = cv2.resize(np.ascontiguousarray(img), (nw, nh), interpolation=self.shrink)
            boxes = boxes * np.float32(nw / w)
            qh, qw = qy1 - qy0, qx1 - qx0
            ch, cw = min(qh, nh), min(qw, nw)
            y0 = int(rng.integers(0, nh - ch + 1))
            x0 = int(rng.integers(0, nw - cw + 1))
            # paste so the crop touches the mosaic centre
            py = qy1 - ch if k < 2 else qy0
            px = qx1 - cw if k % 2 == 0 else qx0
            canvas[py : py + ch, px : px + cw] = img[y0 : y0 + ch, x0 : x0 + cw]
            b, lb = crop_boxes(boxes, labels, x0, y0, cw, ch)
            all_boxes.append(b + np.array([px, py, px, py], dtype=np.float32))
            all_labels.append(lb)
        boxes = np.concatenate(all_boxes) if all_boxes else np.zeros((0, 4), np.float32)
        labels = np.concatenate(all_labels) if all_labels else np.zeros((0,), np.int64)
        return canvas, boxes.astype(np.float32), labels

    def __getitem__(self, idx: int) -> Tuple[Tensor, Dict[str, Any]]:
        info = self.images[idx]
        rng = np.random.default_rng((self.seed, self.epoch, idx)) if self.augment else None
        pre = float("nan")  # the pre-scale only defines target["scale"] without augmentation
        if rng is not None and self.mosaic_prob > 0 and rng.random() < self.mosaic_prob:
            img, boxes, labels = self._mosaic(idx, rng)
        else:
            img, boxes, labels, pre = self._raw(idx)
            if rng is not None:
                img, boxes, labels = self._augment(img, boxes, labels, rng)
        if rng is not None and rng.random() < 0.8:
            img = photometric(np.ascontiguousarray(img), rng)
        crop_h, crop_w = img.shape[:2]
        img, s = letterbox(np.ascontiguousarray(img), self.input_size)
        boxes = boxes * s
        keep = (boxes[:, 2] - boxes[:, 0] > 1) & (boxes[:, 3] - boxes[:, 1] > 1)
        keep |= labels < 0
        boxes, labels = boxes[keep], labels[keep]
        hh, ww = self.input_size
        cxcywh = np.stack(
            [
                (boxes[:, 0] + boxes[:, 2]) / 2 / ww,
                (boxes[:, 1] + boxes[:, 3]) / 2 / hh,
                (boxes[:, 2] - boxes[:, 0]) / ww,
                (boxes[:, 3] - boxes[:, 1]) / hh,
            ],
            axis=1,
        ).reshape(-1, 4)
        ign = labels < 0
        target = {
            "labels": torch.from_numpy(labels[~ign]),
            "boxes": torch.from_numpy(cxcywh[~ign].astype(np.float32)),
            "ignore_boxes": torch.from_numpy(cxcywh[ign].astype(np.float32)),
            "image_id": int(info["id"]),
            "scale": float(s * pre) if not self.augment else float("nan"),
            "orig_size": (int(info.get("height", crop_h)), int(info.get("width", crop_w))),
        }
        tensor = torch.from_numpy(img.transpose(2, 0, 1).copy()).float().div_(255.0)
        return tensor, target


def collate(batch: Sequence[Tuple[Tensor, Dict[str, Any]]]) -> Tuple[Tensor, List[Dict[str, Any]]]:
    """Stack the images into [B, 3, H, W]; keep the targets as a list."""
    images = torch.stack([b[0] for b in batch])
    return images, [b[1] for b in batch]
