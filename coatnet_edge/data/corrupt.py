"""A corrupted copy of an image folder: blur, noise, contrast loss and JPEG artifacts, seeded.

Why: INT8 settings tuned on clean validation images can hide their failures. Quantization error shows
where activations leave the ranges the calibration images set, so the toolkit measures INT8 fidelity on a
corrupted copy of the validation split too (the kinds and severities follow ImageNet-C, Hendrycks &
Dietterich 2019: Gaussian blur, Gaussian noise, contrast, JPEG). Each image gets one kind, cycling in
sorted-path order, so every kind is equally present in every class. Same folder + options, same pixels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageFilter

from coatnet_edge.atomic import atomic_path
from coatnet_edge.data.folders import scan_folder
from coatnet_edge.data.preprocess import PreprocessConfig, load_image, preprocess_image
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.hashing import sha256_text

Corruption = Literal["blur", "noise", "contrast", "jpeg"]
CORRUPTIONS: tuple[str, ...] = typing.get_args(Corruption)
RECORD = ".corruption.json"  # hidden: the folder stays a plain image folder for every scanner
# ImageNet-C's severities 1..5 (blur radius in pixels per 224 px of the shorter side)
_BLUR_RADIUS = (1.0, 2.0, 3.0, 4.0, 6.0)
_NOISE_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)
_CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)
_JPEG_QUALITY = (25, 18, 15, 10, 7)


@dataclass(frozen=True)
class CorruptConfig:
    """Which corruptions, how strong (1-5, ImageNet-C's scale), and the noise seed."""

    kinds: tuple[Corruption, ...] = CORRUPTIONS
    severity: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        kinds = tuple(self.kinds)
        unknown = [k for k in kinds if k not in CORRUPTIONS]
        if not kinds or unknown:
            raise CoatnetEdgeError(f"unknown corruption '{unknown[0] if unknown else ''}'",
                                   fix=f"use some of: {', '.join(CORRUPTIONS)}")
        if isinstance(self.severity, bool) or not 1 <= self.severity <= 5:
            raise CoatnetEdgeError(f"severity must be 1..5, got {self.severity!r}", fix="e.g. --severity 3")
        object.__setattr__(self, "kinds", kinds)


def corrupt_image(img: Image.Image, kind: str, severity: int, rng: np.random.Generator) -> Image.Image:
    """One corruption of an 8-bit RGB image at ``severity`` (1-5)."""
    level = severity - 1
    if kind == "blur":
        return img.filter(ImageFilter.GaussianBlur(_BLUR_RADIUS[level] * min(img.size) / 224))
    x = np.asarray(img, dtype=np.float32) / 255.0
    if kind == "noise":
        x = x + rng.normal(0.0, _NOISE_SIGMA[level], x.shape).astype(np.float32)
    elif kind == "contrast":
        mean = x.mean(axis=(0, 1), keepdims=True)
        x = (x - mean) * _CONTRAST[level] + mean
    elif kind == "jpeg":
        buffer = io.BytesIO()
        img.save(buffer, format="JPEG", quality=_JPEG_QUALITY[level])
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    else:
        raise CoatnetEdgeError(f"unknown corruption '{kind}'", fix=f"use one of: {', '.join(CORRUPTIONS)}")
    return Image.fromarray(np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8))


def _corrupted(path: Path, index: int, config: CorruptConfig) -> tuple[Image.Image, str]:
    """The ``index``-th image of a folder under its corruption: kinds cycle, the noise is seeded per index."""
    kind = config.kinds[index % len(config.kinds)]
    return corrupt_image(load_image(path), kind, config.severity, np.random.default_rng([config.seed, index])), kind


def corrupted_batch(paths: list[Path], preprocess: PreprocessConfig, config: CorruptConfig | None = None, *,
                    severities: tuple[int, ...] | None = None) -> np.ndarray:
    """The images at ``paths`` corrupted as ``write_corrupted`` would (kinds cycled, seeded), preprocessed in memory.

    ``severities``: cycle these too (the kind changes every image, the severity every ``len(kinds)`` images), so
    every kind meets every severity: a held-out score set that covers more kinds of shift than one level does.
    """
    config = config or CorruptConfig()
    levels = severities or (config.severity,)
    out = [preprocess_image(_corrupted(path, i, dataclasses.replace(
        config, severity=levels[(i // len(config.kinds)) % len(levels)]))[0], preprocess)
        for i, path in enumerate(paths)]
    return np.stack(out) if out else np.empty((0, *preprocess.input_shape), dtype=np.float32)


def write_corrupted(src: str | Path, out: str | Path, config: CorruptConfig | None = None, *,
                    progress: Callable[[int, int], None] | None = None) -> Path:
    """Write ``out``: ``src``'s images (same relative paths, as PNG) each under one corruption, and
    ``.corruption.json`` (source, options, the kind of every file, a hash of the pixels). Atomic."""
    config = config or CorruptConfig()
    src, out = Path(src), Path(out)
    folder = scan_folder(src, verify=False)
    if not len(folder):
        raise CoatnetEdgeError("no images to corrupt", path=src, fix="pass an image folder (class subfolders or flat)")
    if out.exists():
        raise CoatnetEdgeError("output folder already exists", path=out, fix="choose a new --out or remove it")
    paths = sorted(folder.paths)
    record: dict[str, Any] = {"source": str(src.resolve()), "config": {**asdict(config), "kinds": list(config.kinds)},
                              "files": {}}
    pixels = []
    with atomic_path(out) as tmp:
        for index, path in enumerate(paths):
            image, kind = _corrupted(path, index, config)
            rel = path.relative_to(src).with_suffix(".png")
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            image.save(tmp / rel)
            record["files"][str(rel)] = kind
            pixels.append(f"{rel}\t{hashlib.sha256(image.tobytes()).hexdigest()}")
            if progress is not None:
                progress(index + 1, len(paths))
        record["pixels_sha256"] = sha256_text("\n".join(pixels))
        (tmp / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return out
