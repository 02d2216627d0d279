"""The one image sampler: a seeded, class-stratified sample of a folder, preprocessed like the model.

Calibration sets, evaluation sets and the accuracy budget's images are all ``ImageSample``s. The
chosen file list is hashed into every INT8 artifact's manifest, so two artifacts calibrated on the
same images can be recognised as such. Torch-free: the same sample feeds NNCF, ONNX Runtime and
OpenVINO.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coatnet_edge.data.folders import ImageFolder, Skipped, scan_folder
from coatnet_edge.data.preprocess import PreprocessConfig, load_image, preprocess_image
from coatnet_edge.errors import CoatnetEdgeError

DEFAULT_SIZE = 300
MIN_IMAGES = 10
MIN_SOURCE_FRACTION = 0.5  # images whose short side is under half the input size are upscaled >2x


@dataclass(frozen=True)
class Purpose:
    """What a sample is for, and the options that set its size and folder: an error names the caller's own."""

    name: str  # "calibration", "evaluation", ...: the error says "usable <name> images"
    size_option: str
    dir_option: str


CALIBRATION = Purpose("calibration", "--calib-size", "--calib-dir")
HELD_OUT = Purpose("held-out", "--score-size", "--calib-dir")  # the calibration folder beyond its sample


@dataclass
class ImageSample:
    root: Path
    paths: list[Path]
    images: np.ndarray  # float32 (N, 3, S, S), preprocessed
    preprocess: PreprocessConfig
    seed: int
    skipped: list[Skipped] = field(default_factory=list)
    labels: np.ndarray | None = None  # int64 (N,) for a labeled folder, else None
    classes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    @functools.cached_property
    def sha256(self) -> str:
        """Hash of the chosen files (relative paths + contents), in the order used."""
        digest = hashlib.sha256()
        for path in self.paths:
            digest.update(path.relative_to(self.root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()

    def head(self, n: int) -> ImageSample:
        """The first ``n`` images (the order is the seeded, class-interleaved one, so any prefix is balanced)."""
        return dataclasses.replace(self, paths=self.paths[:n], images=self.images[:n],
                                   labels=None if self.labels is None else self.labels[:n])

    def batches(self, batch_size: int = 1) -> Iterator[np.ndarray]:
        for start in range(0, len(self.images), batch_size):
            yield self.images[start:start + batch_size]

    def describe(self) -> dict:
        return {"root": str(self.root), "size": len(self), "seed": self.seed, "sha256": self.sha256,
                "skipped": [str(s.path) for s in self.skipped], "preprocess": self.preprocess.to_dict()}


def build_calibration_set(calib_dir: str | Path, preprocess: PreprocessConfig, *, size: int = DEFAULT_SIZE,
                          seed: int = 0, min_images: int = MIN_IMAGES, warn_short: bool = True,
                          purpose: Purpose = CALIBRATION, labeled: bool | None = None,
                          exclude: frozenset[Path] = frozenset()) -> ImageSample:
    """Pick ``size`` images (stratified over class subfolders when present), decode and preprocess them.

    ``exclude``: paths never picked (e.g. the calibration images, for a held-out sample of the same folder).
    ``purpose``: what the images are for; an error names its options (e.g. ``--eval-size`` / ``--eval-dir``).

    Unreadable files are skipped and listed; fewer usable images than asked is a warning, fewer than
    ``min_images`` an error (``warn_short=False`` when ``size`` is only a cap, as for evaluation sets).
    """
    if size < 1:
        raise CoatnetEdgeError(f"{purpose.size_option} must be >= 1, got {size}",
                               fix=f"e.g. {purpose.size_option} 300")
    folder = scan_folder(calib_dir, labeled=labeled, verify=False)
    order = [p for p in _stratified_order(folder, np.random.default_rng(seed)) if p not in exclude]
    picked = _Picked(folder, calib_dir, preprocess, seed)
    picked.take(order, size)
    return picked.sample(min_images, size, warn_short, purpose)


def split_calibration_folder(calib_dir: str | Path, preprocess: PreprocessConfig, *, calib_size: int = DEFAULT_SIZE,
                             score_size: int, seed: int = 0, min_score_images: int = MIN_IMAGES
                             ) -> tuple[ImageSample, ImageSample | None]:
    """The calibration sample and the held-out sample beyond it, from one scan and one seeded order of the folder.

    The calibration sample is exactly ``build_calibration_set(calib_dir, size=calib_size, seed=seed)``; the
    held-out sample is the next ``score_size`` usable images of the same order (``None`` when fewer than
    ``min_score_images`` are left): never a calibration image, and the same images every time.
    """
    folder = scan_folder(calib_dir, verify=False)
    order = _stratified_order(folder, np.random.default_rng(seed))
    calib = _Picked(folder, calib_dir, preprocess, seed)
    rest = order[calib.take(order, calib_size):]
    calib_sample = calib.sample(MIN_IMAGES, calib_size, True, CALIBRATION)
    if score_size < 1:
        return calib_sample, None
    held = _Picked(folder, calib_dir, preprocess, seed)
    held.take(rest, score_size)
    if len(held.paths) < min_score_images:
        return calib_sample, None
    return calib_sample, held.sample(min_score_images, score_size, False, HELD_OUT)


class _Picked:
    """Images taken in order from a scanned folder: decoded, preprocessed, unreadable ones skipped and listed."""

    def __init__(self, folder: ImageFolder, root: str | Path, preprocess: PreprocessConfig, seed: int) -> None:
        self.folder, self.root, self.preprocess, self.seed = folder, Path(root), preprocess, seed
        self.paths: list[Path] = []
        self.arrays: list[np.ndarray] = []
        self.short_sides: list[int] = []
        self.skipped: list[Skipped] = list(folder.skipped)

    def take(self, order: list[Path], size: int) -> int:
        """Take usable images from ``order`` until ``size``; returns how far into ``order`` it read."""
        read = 0
        for path in order:
            if len(self.paths) == size:
                break
            read += 1
            try:
                img = load_image(path)
                self.arrays.append(preprocess_image(img, self.preprocess))
                self.short_sides.append(min(img.size))
                self.paths.append(path)
            except CoatnetEdgeError as err:
                self.skipped.append(Skipped(path, err.reason))
        return read

    def sample(self, min_images: int, size: int, warn_short: bool, purpose: Purpose) -> ImageSample:
        """The images taken, checked: enough of them, and not so small that deployment would look different."""
        root, pre = self.root, self.preprocess
        if len(self.paths) < min_images:
            raise CoatnetEdgeError(f"only {len(self.paths)} usable {purpose.name} images ({len(self.skipped)} "
                                   f"skipped); at least {min_images} are needed", path=root,
                                   fix=f"point {purpose.dir_option} at a folder of a few hundred representative "
                                       "images")
        median_side = int(np.median(self.short_sides))
        if median_side < MIN_SOURCE_FRACTION * pre.image_size:
            raise CoatnetEdgeError(
                f"{purpose.name} images are too small for the model: median short side {median_side} px, the model "
                f"takes {pre.image_size}x{pre.image_size} (activation ranges from images upscaled "
                f"{pre.image_size / median_side:.1f}x would not match deployment)", path=root,
                fix=f"use images like the ones the model will see (at least "
                    f"{int(MIN_SOURCE_FRACTION * pre.image_size)} px), or a model built for this size")
        if len(self.paths) < size and warn_short:
            warnings.warn(f"{root}: {len(self.paths)} usable {purpose.name} images, fewer than the {size} asked for "
                          f"({purpose.size_option})", stacklevel=3)
        label_of = {s.path: s.label for s in self.folder.samples}
        labels = np.array([label_of[p] for p in self.paths], dtype=np.int64) if self.folder.labeled else None
        return ImageSample(root, self.paths, np.stack(self.arrays), pre, self.seed, self.skipped, labels,
                           list(self.folder.classes))


def _stratified_order(folder: ImageFolder, rng: np.random.Generator) -> list[Path]:
    """Seeded shuffle; with classes, interleave them round-robin so any prefix is balanced."""
    if not folder.labeled:
        return [folder.samples[i].path for i in rng.permutation(len(folder.samples))]
    per_class: dict[int, list[Path]] = {}
    for sample in folder.samples:
        per_class.setdefault(sample.label, []).append(sample.path)
    queues = [[paths[i] for i in rng.permutation(len(paths))] for _, paths in sorted(per_class.items())]
    order = []
    for rank in range(max(len(q) for q in queues)):
        order += [q[rank] for q in queues if rank < len(q)]
    return order

