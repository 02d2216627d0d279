"""What a camera adds to a rendered scene: optics first (Gaussian blur), then sensor noise.

Shared by both built-in dataset families so their nuisance model is the same code; the draws from ``rng``
happen in a fixed order (blur chance, blur sigma, noise chance, noise sigma, noise), which is part of
each family's pixels: change it and the datasets change (bump ``synth.GENERATOR_VERSION``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def blur_then_noise(image: Image.Image, rng: np.random.Generator, *, blur_chance: float,
                    blur_sigma: tuple[float, float], noise_chance: float,
                    noise_sigma: tuple[float, float]) -> Image.Image:
    """``image`` blurred with chance ``blur_chance`` and noised with chance ``noise_chance`` (sigma in 0..255)."""
    if rng.random() < blur_chance:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(*blur_sigma)))
    sigma = rng.uniform(*noise_sigma) if rng.random() < noise_chance else 0.0
    if sigma:
        size = image.size
        noisy = np.asarray(image, dtype=np.float32) + sigma * rng.standard_normal((size[1], size[0], 3), np.float32)
        image = Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8), mode="RGB")
    return image
