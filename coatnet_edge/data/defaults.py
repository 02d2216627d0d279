"""Defaults tied to the built-in dataset (80 px images, models see a 64 px center crop)."""

from __future__ import annotations

from pathlib import Path

from coatnet_edge.data.preprocess import PreprocessConfig

BUILTIN_IMAGE_SIZE = 64
BUILTIN_CROP_PCT = 0.875
SYNTH_INFO_FILE = "dataset.json"


def builtin_preprocess() -> PreprocessConfig:
    return PreprocessConfig(image_size=BUILTIN_IMAGE_SIZE, crop_pct=BUILTIN_CROP_PCT)


def is_builtin_dataset(path: str | Path) -> bool:
    """True for the built-in dataset's root or one of its splits."""
    path = Path(path)
    return (path / SYNTH_INFO_FILE).is_file() or (path.parent / SYNTH_INFO_FILE).is_file()
