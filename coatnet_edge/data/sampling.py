"""The one image sampler: a seeded, class-stratified sample of a folder, preprocessed like the model.

Calibration sets, evaluation sets and the accuracy budget's images are all ``ImageSample``s. The
chosen file list is hashed into every INT8 artifact's manifest, so two artifacts calibrated on the
same images can be recognised as such. Torch-free: the same sample feeds NNCF, ONNX Runtime and
OpenVINO.
"""

from __future__ import annotations

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

    @property
    def sha256(self) -> str:
        """Hash of the chosen files (relative paths + contents), in the order used."""
        digest = hashlib.sha256()
        for path in self.paths:
            digest.update(path.relative_to(self.root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()

    def batches(self, batch_size: int = 1) -> Iterator[np.ndarray]:
        for start in range(0, len(self.images), batch_size):
            yield self.images[start:start + batch_size]

    def describe(self) -> dict:
        return {"root": str(self.root), "size": len(self), "seed": self.seed, "sha256": self.sha256,
                "skipped": [str(s.path) for s in self.skipped], "preprocess": self.preprocess.to_dict()}


def build_calibration_set(calib_dir: str | Path, preprocess: PreprocessConfig, *, size: int = DEFAULT_SIZE,
                          seed: int = 0, min_images: int = MIN_IMAGES, warn_short: bool = True,
                          purpose: str = "calibration", labeled: bool | None = None,
                          exclude: frozenset[Path] = frozenset()) -> ImageSample:
    """Pick ``size`` images (stratified over class subfolders when present), decode and preprocess them.

    ``exclude``: paths never picked (e.g. the calibration images, for a held-out sample of the same folder).

    Unreadable files are skipped and listed; fewer usable images than asked is a warning, fewer than
    ``min_images`` an error (``warn_short=False`` when ``size`` is only a cap, as for evaluation sets).
    """
    if size < 1:
        raise CoatnetEdgeError(f"--calib-size must be >= 1, got {size}", fix="e.g. --calib-size 300")
    folder = scan_folder(calib_dir, labeled=labeled, verify=False)
    label_of = {s.path: s.label for s in folder.samples}
    order = _stratified_order(folder, np.random.default_rng(seed))
    paths, arrays, short_sides, skipped = [], [], [], list(folder.skipped)
    for path in order:
        if len(paths) == size:
            break
        if path in exclude:
            continue
        try:
            img = load_image(path)
            arrays.append(preprocess_image(img, preprocess))
            short_sides.append(min(img.size))
            paths.append(path)
        except CoatnetEdgeError as err:
            skipped.append(Skipped(path, str(err).removeprefix(f"{path}: ")))
    if len(paths) < min_images:
        raise CoatnetEdgeError(f"only {len(paths)} usable {purpose} images ({len(skipped)} skipped); "
                               f"at least {min_images} are needed", path=calib_dir,
                               fix="point --calib-dir at a folder of a few hundred representative images")
    median_side = int(np.median(short_sides))
    if median_side < MIN_SOURCE_FRACTION * preprocess.image_size:
        raise CoatnetEdgeError(
            f"{purpose} images are too small for the model: median short side {median_side} px, the model "
            f"takes {preprocess.image_size}x{preprocess.image_size} (activation ranges from images upscaled "
            f"{preprocess.image_size / median_side:.1f}x would not match deployment)", path=calib_dir,
            fix=f"calibrate on images like the ones the model will see (at least "
                f"{int(MIN_SOURCE_FRACTION * preprocess.image_size)} px), or on a model built for this size")
    if len(paths) < size and warn_short:
        warnings.warn(f"{calib_dir}: {len(paths)} usable {purpose} images, fewer than the {size} asked for",
                      stacklevel=2)
    labels = np.array([label_of[p] for p in paths], dtype=np.int64) if folder.labeled else None
    return ImageSample(Path(calib_dir), paths, np.stack(arrays), preprocess, seed, skipped, labels,
                          list(folder.classes))


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

