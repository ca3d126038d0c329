"""Lane-segmentation dataset over the carla_bridge on-disk layout (docs/CONTRACTS.md).

Reads ``<root>/<split>/images/<seq>/<idx>.jpg`` and ``<root>/<split>/lane_class/<seq>/<idx>.png``
(8-bit palette PNG whose values are lane class indices). Images are resized to the training size
once and kept in memory (``cache=True``; a 192x320 frame is 0.2 MB), then augmented per sample.

Augmentations (``augment=True``, training split only) chosen for forward-facing driving cameras:
- random scale + crop (zoom 1.0-1.3 around a random centre) - distance/focal-length variation;
- horizontal flip (p = 0.5) - label-safe because the classes are per line *type* (solid/dashed),
  not left/right ego lines; if such classes are added, they must be swapped here;
- brightness / contrast jitter - sun, shade, exposure;
- Gaussian blur (p = 0.2) - motion and focus blur.
No vertical flips or large rotations: the horizon and road geometry stay plausible.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from edge_perception import datafiles
from edge_perception.lane import LANE_CLASSES, LINE_CLASSES
from edge_perception.runtime.preprocess import shrink_flag

LINE_COVER = 0.25  # fraction of a shrunk pixel's footprint that makes it a line pixel


def read_class_png(path: str) -> np.ndarray:
    """uint8 H x W class indices of a palette PNG (OpenCV would expand the palette to colours);
    a missing, corrupt or wrong-kind file is a :class:`~edge_perception.datafiles.DataError`."""
    return datafiles.read_png(
        path,
        "lane class PNG",
        modes=("P", "L"),
        hint="8-bit palette or grey; regenerate the data set with carla-bridge generate",
    ).astype(np.uint8, copy=False)


def read_rgb(path: str) -> np.ndarray:
    """uint8 H x W x 3 RGB image; missing / corrupt / truncated files are DataErrors naming it."""
    return datafiles.read_rgb(path)


def load_manifest(root: str) -> Dict[str, object]:
    """The data set's manifest.json, after checking its lane class table matches ours."""
    path = os.path.join(root, "manifest.json")
    if not os.path.isdir(root):
        raise datafiles.MissingDataError(root, "data set directory not found")
    manifest = datafiles.read_json(
        path,
        "data set manifest",
        hint=f"{root} is not a carla_bridge data set (create one with `carla-bridge generate`)",
    )
    classes = manifest.get("classes")
    table = classes.get("lane") if isinstance(classes, dict) else None
    if table is None:
        table = _find_key(manifest, "lane_classes")
    if table is not None and tuple(table) != LANE_CLASSES:
        raise datafiles.DataError(
            path,
            f"lane class table {table} differs from edge_perception's {LANE_CLASSES};"
            " regenerate the data or update edge_perception.lane.LANE_CLASSES",
        )
    return manifest


def _find_key(d: object, key: str) -> Optional[object]:
    if isinstance(d, dict):
        if key in d:
            return d[key]
        for v in d.values():
            found = _find_key(v, key)
            if found is not None:
                return found
    return None


def list_samples(
    root: str, split: str, skip: Optional[datafiles.SkipLog] = None
) -> List[Tuple[str, str]]:
    """Sorted (image path, lane_class path) pairs of a split.

    An image without its label (or a label without its image) is a
    :class:`~edge_perception.datafiles.MissingDataError` naming the missing file: never a sample
    silently left out of training or scoring. With ``skip`` (``--skip-bad``) it is recorded there
    and the pair dropped instead.
    """
    label_dir = Path(root) / split / "lane_class"
    image_dir = Path(root) / split / "images"
    if not label_dir.is_dir():
        raise datafiles.MissingDataError(
            str(label_dir), f"not found; split {split!r} missing (splits are 'train' and 'val')"
        )
    labels = {(p.parent.name, p.stem) for p in label_dir.glob("*/*.png")}
    images = {(p.parent.name, p.stem) for p in image_dir.glob("*/*.jpg")}
    pairs = []
    for seq, stem in sorted(labels | images):
        jpg = image_dir / seq / (stem + ".jpg")
        png = label_dir / seq / (stem + ".png")
        if (seq, stem) not in images:
            err = datafiles.MissingDataError(str(jpg), f"image not found (its label {png} is)")
        elif (seq, stem) not in labels:
            err = datafiles.MissingDataError(str(png), f"label PNG not found for image {jpg}")
        else:
            pairs.append((str(jpg), str(png)))
            continue
        (skip or datafiles.SkipLog(False)).add(err)
    if not pairs:
        raise datafiles.MissingDataError(str(label_dir), "holds no lane_class PNGs")
    return pairs


def resize_pair(
    image: np.ndarray, mask: np.ndarray, size: Tuple[int, int], interpolation: str = "area"
) -> Tuple[np.ndarray, np.ndarray]:
    """Resize an RGB image and its class mask to ``size = (H, W)``.

    The image: area averaging when shrinking (``interpolation="area"``, the training default) or
    bilinear (``"linear"``, what the nodes use by default; ``lane-eval --interpolation``).

    The mask is resized nearest-neighbour, except that when shrinking, a target pixel becomes a
    lane-line pixel if lines cover at least ``LINE_COVER`` of its footprint: nearest sampling
    would break 1-2 px painted lines into dots, which are neither learnable nor fair to score.
    """
    h, w = size
    shrink = mask.shape[0] > h or mask.shape[1] > w
    interp = shrink_flag(interpolation) if shrink else cv2.INTER_LINEAR
    out = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
    if shrink:
        covers = [
            cv2.resize((mask == c).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
            for c in LINE_CLASSES
        ]
        line = np.maximum(*covers) >= LINE_COVER
        best = np.where(covers[1] > covers[0], LINE_CLASSES[1], LINE_CLASSES[0])
        out[line] = best[line]
    return cv2.resize(image, (w, h), interpolation=interp), out


def augment_pair(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
) -> Tuple[np.ndarray, np.ndarray]:
    """Photometric + geometric augmentation of one resized pair (see the module docstring)."""
    h, w = mask.shape
    s = rng.uniform(1.0, 1.3)
    cx = rng.uniform(w / (2 * s), w - w / (2 * s))
    cy = rng.uniform(h / (2 * s), h - h / (2 * s))
    flip = rng.random() < 0.5
    sx = -s if flip else s
    # maps source (x, y) -> destination: zoom by s around (cx, cy) to the image centre
    m = np.array([[sx, 0.0, w / 2 - sx * cx], [0.0, s, h / 2 - s * cy]], dtype=np.float64)
    image = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    mask = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)
    img = image.astype(np.float32)
    contrast = rng.uniform(0.7, 1.3)
    brightness = rng.uniform(-30.0, 30.0)
    img = (img - img.mean()) * contrast + img.mean() + brightness
    if rng.random() < 0.2:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=rng.uniform(0.5, 1.5))
    return np.clip(img, 0, 255).astype(np.uint8), mask


class LaneDataset(Dataset):
    """(image float32 3xHxW in [0,1], class mask int64 HxW) pairs of one split.

    ``size`` is (H, W) (multiples of 32 for the U-Net); ``limit`` keeps the first N frames (sorted
    by sequence and index, so the subset is reproducible); ``seed`` drives the augmentation (each
    sample index draws from its own stream per epoch, see :meth:`set_epoch`).
    """

    def __init__(
        self,
        root: str,
        split: str,
        size: Tuple[int, int] = (192, 320),
        augment: bool = False,
        limit: Optional[int] = None,
        seed: int = 0,
        cache: bool = True,
        interpolation: str = "area",
        skip: Optional[datafiles.SkipLog] = None,
    ) -> None:
        shrink_flag(interpolation)  # raises on an unknown name
        self.interpolation = interpolation
        if size[0] % 32 or size[1] % 32:
            raise ValueError(f"size {size} must be multiples of 32 (U-Net down-samples 5 times)")
        self.root, self.split, self.size = root, split, tuple(size)
        self.manifest = load_manifest(root)
        self.samples = list_samples(root, split, skip)
        if limit is not None:
            self.samples = self.samples[: int(limit)]
        if skip is not None and skip.allow:  # read every sample now; drop and record bad ones
            good = []
            for pair in self.samples:
                try:
                    self._read(*pair)
                    good.append(pair)
                except datafiles.DataError as exc:
                    skip.add(exc)
            self.samples = good
            if not self.samples:
                raise datafiles.DataError(str(Path(root) / split), "no readable sample left")
        self.augment, self.seed, self.epoch = augment, seed, 0
        self._cache: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
        self.cache = cache

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draw (call once per epoch for fresh, reproducible samples)."""
        self.epoch = epoch

    def load(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        """Resized (RGB uint8, class uint8) of sample i, without augmentation."""
        if i in self._cache:
            return self._cache[i]
        image, mask = self._read(*self.samples[i])
        pair = resize_pair(image, mask, self.size, self.interpolation)
        if self.cache:
            self._cache[i] = pair
        return pair

    @staticmethod
    def _read(jpg: str, png: str) -> Tuple[np.ndarray, np.ndarray]:
        image, mask = read_rgb(jpg), read_class_png(png)
        if image.shape[:2] != mask.shape:
            raise datafiles.DataError(
                png, f"label is {mask.shape} but its image {jpg} is {image.shape[:2]}"
            )
        if int(mask.max()) >= len(LANE_CLASSES):
            raise datafiles.DataError(
                png, f"holds class {int(mask.max())} >= {len(LANE_CLASSES)} classes"
            )
        return image, mask

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load(i)
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            image, mask = augment_pair(image, mask, rng)
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0
        return x, torch.from_numpy(mask.astype(np.int64))

    def class_pixel_means(self) -> np.ndarray:
        """Mean pixels per image of each class at the training size (class-balanced weights)."""
        counts = np.zeros(len(LANE_CLASSES), dtype=np.float64)
        for i in range(len(self)):
            counts += np.bincount(self.load(i)[1].ravel(), minlength=len(LANE_CLASSES))
        return counts / max(1, len(self))


def stack_images(paths: Sequence[str], size: Tuple[int, int]) -> np.ndarray:
    """float32 N x 3 x H x W batch in [0, 1] of image files resized to ``size`` (calibration)."""
    out = np.empty((len(paths), 3, size[0], size[1]), dtype=np.float32)
    for k, p in enumerate(paths):
        img = cv2.resize(read_rgb(p), (size[1], size[0]), interpolation=cv2.INTER_AREA)
        out[k] = img.transpose(2, 0, 1) / 255.0
    return out
