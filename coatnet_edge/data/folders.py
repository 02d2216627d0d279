"""Image folders: ``root/<class>/<image>`` (labeled) or any tree of images (unlabeled).

Scanning is strict about what it uses and loud about what it drops: every file that is not used
is listed in ``skipped`` with a reason, so a bad image never silently changes a measured accuracy.
Class indices follow torchvision's ``ImageFolder`` (sorted directory names). Torch-free.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coatnet_edge.data.preprocess import load_image
from coatnet_edge.errors import CoatnetEdgeError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})

Progress = Callable[[int, int], None]

# Skipped.kind values, used for the counts in error messages
NOT_IMAGE = "not an image"
UNREADABLE = "unreadable"
OUTSIDE_CLASS = "outside class folders"


@dataclass
class Sample:
    path: Path
    label: int | None


@dataclass
class Skipped:
    path: Path
    reason: str  # one line, without the path
    kind: str = UNREADABLE


@dataclass
class ImageFolder:
    root: Path
    samples: list[Sample]
    classes: list[str] = field(default_factory=list)  # empty when unlabeled
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def labeled(self) -> bool:
        return bool(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray | None:
        """int64 (N,) class indices, or None for an unlabeled folder."""
        if not self.labeled:
            return None
        return np.array([s.label for s in self.samples], dtype=np.int64)

    @property
    def paths(self) -> list[Path]:
        return [s.path for s in self.samples]

    def summary(self) -> str:
        """One line for logs and reports, e.g. ``412 images in 10 classes (2 skipped)``."""
        text = _plural(len(self.samples), "image")
        text += f" in {_plural(len(self.classes), 'class', 'classes')}" if self.labeled else " (unlabeled)"
        if self.skipped:
            text += f" ({len(self.skipped)} skipped)"
        return text


def format_skipped(skipped: list[Skipped], limit: int = 10) -> list[str]:
    """Report lines ``  skipped <path>: <reason>``, at most ``limit`` plus a count of the rest."""
    lines = [f"  skipped {s.path}: {s.reason}" for s in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more skipped")
    return lines


def scan_labeled_folder(
    root: str | Path, *, verify: bool = True, progress: Progress | None = None
) -> ImageFolder:
    """Scan ``root/<class>/**/<image>``; label = index of the class in sorted directory names.

    With ``verify`` every image is fully decoded now, so a corrupt file is reported up front
    instead of failing (or being dropped) in the middle of training or evaluation.
    """
    root = _check_root(root)
    class_dirs = _class_dirs(root)
    loose = [p for p in _visible_files(root) if p.parent == root]
    if not class_dirs:
        raise CoatnetEdgeError(
            "not a labeled folder: expected root/<class>/<image>, found no class subfolders",
            path=root,
            fix="put each class's images in its own subfolder "
            "(calibration and distillation also accept an unlabeled folder of images)",
        )
    classes = [d.name for d in class_dirs]
    skipped = [Skipped(p, "not inside a class folder", OUTSIDE_CLASS) for p in loose]
    files = [(p, label) for label, d in enumerate(class_dirs) for p in _walk_files(d)]
    samples, bad = _collect(root, files, verify=verify, progress=progress)
    skipped = sorted(skipped + bad, key=lambda s: _rel(root, s.path))
    _check_usable(root, samples, skipped)
    counts = Counter(s.label for s in samples)
    for label, d in enumerate(class_dirs):
        if not counts[label]:
            raise CoatnetEdgeError(
                f"class folder '{d.name}' has no usable images",
                path=d,
                fix="add images to it, repair its files, or remove the folder (an empty class breaks "
                "training and evaluation)",
            )
    return ImageFolder(root=root, samples=samples, classes=classes, skipped=skipped)


def scan_unlabeled_folder(
    root: str | Path, *, verify: bool = True, progress: Progress | None = None
) -> ImageFolder:
    """Scan every image under ``root`` (flat or nested), without labels; for calibration/distillation."""
    root = _check_root(root)
    files = [(p, None) for p in _walk_files(root)]
    samples, skipped = _collect(root, files, verify=verify, progress=progress)
    _check_usable(root, samples, skipped)
    return ImageFolder(root=root, samples=samples, classes=[], skipped=skipped)


def scan_folder(
    root: str | Path,
    *,
    labeled: bool | None = None,
    verify: bool = True,
    progress: Progress | None = None,
) -> ImageFolder:
    """Scan a labeled or unlabeled folder; ``labeled=None`` decides from the layout.

    Auto-detect says labeled when there are no loose images at the top and at least one
    subfolder holds images. A nested *unlabeled* tree looks the same: pass ``labeled=False``.
    """
    if labeled is None:
        labeled = looks_labeled(_check_root(root))
    scan = scan_labeled_folder if labeled else scan_unlabeled_folder
    return scan(root, verify=verify, progress=progress)


def looks_labeled(root: str | Path) -> bool:
    """Layout check behind ``scan_folder(labeled=None)``; decodes nothing."""
    root = _check_root(root)
    if any(_is_image_name(p) for p in _visible_files(root) if p.parent == root):
        return False
    return any(_is_image_name(p) for d in _class_dirs(root) for p in _walk_files(d))


def _check_root(root: str | Path) -> Path:
    root = Path(root)
    if not root.exists():
        raise CoatnetEdgeError("image folder not found", path=root, fix="check the path")
    if not root.is_dir():
        raise CoatnetEdgeError(
            "is a file, not a folder",
            path=root,
            fix="pass the folder that holds the images (root/<class>/<image> for labeled data)",
        )
    return root


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _class_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not _hidden(p.name)), key=lambda p: p.name)


def _visible_files(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_file() and not _hidden(p.name))


def _walk_files(top: Path) -> list[Path]:
    """Visible regular files under ``top``, following symlinks once (no loops)."""
    out: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = [d for d in dirnames if not _hidden(d)]
        base = Path(dirpath)
        out.extend(base / f for f in filenames if not _hidden(f) and (base / f).is_file())
    return out


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _collect(
    root: Path, files: list[tuple[Path, int | None]], *, verify: bool, progress: Progress | None
) -> tuple[list[Sample], list[Skipped]]:
    """Split candidates into samples and skipped, in sorted relative-path order."""
    files = sorted(files, key=lambda item: _rel(root, item[0]))
    skipped = [
        Skipped(p, f"not an image file (extension {p.suffix or 'none'})", NOT_IMAGE)
        for p, _ in files
        if not _is_image_name(p)
    ]
    images = [(p, label) for p, label in files if _is_image_name(p)]
    samples: list[Sample] = []
    if verify and progress is not None:
        progress(0, len(images))
    for i, (path, label) in enumerate(images, 1):
        if verify:
            try:
                load_image(path)
            except CoatnetEdgeError as err:
                skipped.append(Skipped(path, str(err).removeprefix(f"{path}: "), UNREADABLE))
                continue
            finally:
                if progress is not None:
                    progress(i, len(images))
        samples.append(Sample(path, label))
    skipped.sort(key=lambda s: _rel(root, s.path))
    return samples, skipped


def _check_usable(root: Path, samples: list[Sample], skipped: list[Skipped]) -> None:
    if samples:
        return
    if not skipped:
        raise CoatnetEdgeError(
            "no images found",
            path=root,
            fix=f"put images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in the folder",
        )
    kinds = Counter(s.kind for s in skipped)
    detail = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    raise CoatnetEdgeError(
        f"0 usable images ({len(skipped)} skipped: {detail}; first: {_rel(root, skipped[0].path)})",
        path=root,
        fix="re-export or remove the unreadable files and put images in supported formats "
        f"({', '.join(sorted(IMAGE_EXTENSIONS))})",
    )


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"
