"""Training augmentation with Pillow + NumPy: random-resized crop and horizontal flip.

Each call takes its own ``numpy.random.Generator`` so an epoch's augmentations are a pure function
of (seed, epoch, sample index): resumed and multi-worker/multi-process runs see the same pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from coatnet_edge.data.preprocess import RESAMPLE, PreprocessConfig, normalize, to_rgb


@dataclass(frozen=True)
class AugmentConfig:
    scale: tuple[float, float] = (0.25, 1.0)  # area fraction of the crop (timm/ImageNet: 0.08-1)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5

    def to_dict(self) -> dict:
        return {"scale": list(self.scale), "ratio": list(self.ratio), "hflip": self.hflip}


def random_resized_crop_box(width: int, height: int, rng: np.random.Generator,
                            scale: tuple[float, float], ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """(left, top, w, h) of a crop with random area and aspect (torchvision's rule, 10 tries, then center)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def train_transform(img: Image.Image, cfg: PreprocessConfig, rng: np.random.Generator,
                    aug: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """Random-resized crop to ``cfg.image_size``, random flip, then the shared normalization."""
    img = to_rgb(img)
    left, top, w, h = random_resized_crop_box(img.width, img.height, rng, aug.scale, aug.ratio)
    size = cfg.image_size
    img = img.resize((size, size), RESAMPLE[cfg.interpolation], box=(left, top, left + w, top + h))
    if rng.random() < aug.hflip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return normalize(img, cfg)
