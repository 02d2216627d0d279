"""The built-in dataset: seeded, procedurally drawn shapes written as a labeled image folder.

Why procedural: no downloads, identical pixels on every machine (identical PNG bytes with the same
Pillow build; ``pixels_sha256`` in dataset.json is the portable check), and hard enough that
distillation and INT8 quantization show up in top-1. The label is the SHAPE of the main (largest)
object; colour, background, position, scale, rotation, clutter, noise and blur are nuisances, and
the classes come in confusable groups (circle/ellipse/ring/crescent, triangle/arrow,
square/pentagon/hexagon, plus/x-cross/star).

Every image draws from its own generator seeded by (seed, split, class, index), so generation is
order-independent and can run in parallel.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import io
import json
import math
import multiprocessing
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from coatnet_edge.atomic import atomic_path
from coatnet_edge.data.camera import blur_then_noise
from coatnet_edge.data.glyphs import GLYPH_CLASSES, generate_glyph
from coatnet_edge.errors import CoatnetEdgeError

DATASET_NAME = "coatnet-edge-synth"
FORMAT_VERSION = 1
GENERATOR_VERSION = "2"  # bump whenever a pixel can change for the same config
INFO_FILE = "dataset.json"
SPLITS = ("train", "val")
CLASSES = ("circle", "ellipse", "ring", "crescent", "triangle", "arrow",
           "square", "pentagon", "hexagon", "plus", "x_cross", "star")

_SS = 4  # supersampling factor for anti-aliased edges
_PNG = {"format": "PNG", "compress_level": 6, "optimize": False}  # fixed: same pixels -> same bytes
_MIN_SIZE, _MAX_SIZE = 16, 1024

Polygon = np.ndarray  # (N, 2) float, unit coordinates, circumradius ~1
Parts = list[tuple[Polygon, int]]  # polygons painted in order; 255 adds, 0 cuts a hole


FAMILIES = ("shapes", "glyphs")  # shapes: this module; glyphs: data/glyphs.py (matplotlib's fonts)


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Equal configs (and generator version) give byte-identical datasets."""

    seed: int = 0
    image_size: int = 80
    train_per_class: int = 300
    val_per_class: int = 100
    num_classes: int = len(CLASSES)
    family: Literal["shapes", "glyphs"] = "shapes"

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise CoatnetEdgeError(f"unknown dataset family '{self.family}'", fix=f"use one of: {', '.join(FAMILIES)}")

        def check(name: str, lo: int, hi: int | None = None) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise CoatnetEdgeError(f"SynthConfig.{name} must be an integer, got {value!r}",
                                       fix=f"pass an integer {name}")
            if value < lo or (hi is not None and value > hi):
                bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
                raise CoatnetEdgeError(f"SynthConfig.{name}={value} is out of range",
                                       fix=f"choose {name} {bound}")
            object.__setattr__(self, name, int(value))

        check("seed", 0)
        check("image_size", _MIN_SIZE, _MAX_SIZE)
        check("train_per_class", 1)
        check("val_per_class", 1)
        check("num_classes", 2, len(family_classes(self.family)))

    @property
    def classes(self) -> tuple[str, ...]:
        return family_classes(self.family)[: self.num_classes]

    def per_class(self, split: str) -> int:
        return self.train_per_class if split == "train" else self.val_per_class


# ---- shapes ---------------------------------------------------------------------------------------

def _ellipse(rx: float, ry: float, cx: float = 0.0, n: int = 64) -> Polygon:
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), ry * np.sin(t)], axis=1)


def _regular(n: int, rng: np.random.Generator, jitter: float, inner: float | None = None) -> Polygon:
    k = 2 * n if inner else n
    t = np.pi / 2 + 2 * np.pi * np.arange(k) / k
    r = np.ones(k)
    if inner:
        r[1::2] = inner
    r *= 1 + rng.uniform(-jitter, jitter, k)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _cross(w: float) -> Polygon:
    return np.array([(w, w), (1, w), (1, -w), (w, -w), (w, -1), (-w, -1), (-w, -w), (-1, -w),
                     (-1, w), (-w, w), (-w, 1), (w, 1)], dtype=float)


def _shape(name: str, rng: np.random.Generator) -> Parts:
    """Polygons of one class instance; shape parameters vary within the class."""
    u = rng.uniform
    if name == "circle":
        return [(_ellipse(1, 1), 255)]
    if name == "ellipse":
        return [(_ellipse(1, u(0.42, 0.68)), 255)]
    if name == "ring":
        r = u(0.45, 0.68)
        return [(_ellipse(1, 1), 255), (_ellipse(r, r), 0)]
    if name == "crescent":
        r = u(0.75, 0.95)
        return [(_ellipse(1, 1), 255), (_ellipse(r, r, cx=u(0.35, 0.6)), 0)]
    if name == "triangle":
        return [(_regular(3, rng, 0.08), 255)]
    if name == "arrow":
        hb, hw, sw = u(-0.1, 0.3), u(0.5, 0.75), u(0.14, 0.26)  # head base x, head/shaft half-widths
        return [(np.array([(1, 0), (hb, hw), (hb, sw), (-1, sw), (-1, -sw), (hb, -sw), (hb, -hw)]), 255)]
    if name == "square":
        return [(_regular(4, rng, 0.05), 255)]
    if name == "pentagon":
        return [(_regular(5, rng, 0.04), 255)]
    if name == "hexagon":
        return [(_regular(6, rng, 0.04), 255)]
    if name in ("plus", "x_cross"):
        return [(_cross(u(0.18, 0.3)), 255)]
    if name == "star":
        return [(_regular(5, rng, 0.04, inner=u(0.38, 0.52)), 255)]
    raise ValueError(name)


def _angle(name: str, rng: np.random.Generator) -> float:
    # plus and x_cross differ only by orientation, so theirs is limited (15 deg gap between them)
    if name == "plus":
        return math.radians(rng.uniform(-15, 15))
    if name == "x_cross":
        return math.radians(45 + rng.uniform(-15, 15))
    return rng.uniform(0, 2 * np.pi)


def _alpha(parts: Parts, center: np.ndarray, radius: float, angle: float, aspect: float,
           size: int) -> tuple[int, int, np.ndarray] | None:
    """Coverage in [0, 1] of the posed shape over its bounding box: (x0, y0, HxW alpha)."""
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    polys = [((p * (1.0, aspect)) @ rot.T * radius + center, v) for p, v in parts]
    pts = np.concatenate([p for p, _ in polys])
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
    if x1 <= x0 or y1 <= y0:
        return None
    mask = Image.new("L", ((x1 - x0) * _SS, (y1 - y0) * _SS), 0)
    draw = ImageDraw.Draw(mask)
    for p, v in polys:
        draw.polygon([tuple(q) for q in ((p - (x0, y0)) * _SS).tolist()], fill=v)
    return x0, y0, np.asarray(mask.reduce(_SS), dtype=np.float32) / 255.0


# ---- colour and texture ---------------------------------------------------------------------------

def _colour(rng: np.random.Generator) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.1, 1.0), rng.uniform(0.15, 1.0)),
                    dtype=np.float32)


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return xx, yy


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return a + (b - a) * t[..., None]


def _pattern(rng: np.random.Generator, size: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """A random field in [0, 1] over ``box`` (x0, y0, x1, y1): gradient, noise, stripes, checks, dots."""
    x0, y0, x1, y1 = box
    xx, yy = _grid(size)
    xx, yy = xx[y0:y1, x0:x1], yy[y0:y1, x0:x1]
    th = rng.uniform(0, np.pi)
    c, s = math.cos(th), math.sin(th)
    kind = rng.integers(5)
    if kind == 0:  # linear gradient across the whole image
        lo = min(0.0, c) + min(0.0, s)
        return (xx * c + yy * s - lo) / (abs(c) + abs(s))
    if kind == 1:  # smooth value noise
        g = int(rng.integers(3, 10))
        low = Image.fromarray(rng.random((g, g)).astype(np.float32), mode="F")
        return np.clip(np.asarray(low.resize((size, size), Image.BICUBIC))[y0:y1, x0:x1], 0, 1)
    freq = 2 * np.pi * size / rng.uniform(4, 12)  # period of 4-12 px
    a, b = np.sin(freq * (xx * c + yy * s)), np.sin(freq * (yy * c - xx * s))
    if kind == 2:  # stripes
        return np.clip(0.5 + 2 * a, 0, 1)
    if kind == 3:  # checks
        return np.clip(0.5 + 2 * a * b, 0, 1)
    return np.clip(2 * (a + b) - 2.5, 0, 1)  # dots


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """HxWx3 background and its two palette colours (objects must stand out from both)."""
    c1 = _colour(rng)
    if rng.random() < 0.25:
        return np.broadcast_to(c1, (size, size, 3)).copy(), np.stack([c1, c1])
    c2 = c1 + (_colour(rng) - c1) * rng.uniform(0.2, 0.8)  # limited contrast: texture, not objects
    return _mix(c1, c2, _pattern(rng, size, (0, 0, size, size))), np.stack([c1, c2])


def _object_colour(rng: np.random.Generator, palette: np.ndarray) -> np.ndarray:
    need = rng.uniform(0.3, 0.6)
    for _ in range(32):
        col = _colour(rng)
        if np.linalg.norm(palette - col, axis=1).min() >= need:
            return col
    return 1.0 - palette.mean(axis=0)  # rare: fall back to the complement


def _fill(rng: np.random.Generator, colour: np.ndarray, size: int, box: tuple[int, int, int, int],
          ) -> np.ndarray:
    if rng.random() < 0.6:
        return colour
    shade = np.clip(colour * rng.uniform(0.5, 1.5) + rng.uniform(-0.15, 0.15, 3), 0, 1)
    return _mix(colour, shade.astype(np.float32), _pattern(rng, size, box))


# ---- images ---------------------------------------------------------------------------------------

def _paint(img: np.ndarray, rng: np.random.Generator, name: str, radius: float, center: np.ndarray,
           colour: np.ndarray, thin: bool = False) -> None:
    size = img.shape[0]
    parts = [(np.array([(-1, -0.04), (1, -0.04), (1, 0.04), (-1, 0.04)]), 255)] if thin else _shape(name, rng)
    hit = _alpha(parts, center, radius, _angle(name, rng), rng.uniform(0.88, 1.0), size)
    if hit is None:
        return
    x0, y0, a = hit
    h, w = a.shape
    region = img[y0:y0 + h, x0:x0 + w]
    fill = _fill(rng, colour, size, (x0, y0, x0 + w, y0 + h))
    region += (fill - region) * a[..., None]


def generate_image(class_index: int, rng: np.random.Generator, image_size: int = 80) -> Image.Image:
    """One RGB image whose main (largest) object is a ``CLASSES[class_index]``.

    Everything but the main object's shape is random nuisance, drawn from ``rng``.
    """
    if not 0 <= class_index < len(CLASSES):
        raise CoatnetEdgeError(f"class index {class_index} is out of range",
                               fix=f"use 0..{len(CLASSES) - 1}")
    if not _MIN_SIZE <= image_size <= _MAX_SIZE:
        raise CoatnetEdgeError(f"image_size={image_size} is out of range",
                               fix=f"choose image_size between {_MIN_SIZE} and {_MAX_SIZE}")
    size = image_size
    img, palette = _background(rng, size)
    main_colour = _object_colour(rng, palette)

    # main object: large, kept inside the central crop the model sees
    radius = rng.uniform(0.2, 0.36) * size
    lo = 0.85 * radius + 0.06 * size
    main_center = rng.uniform(lo, size - lo, 2)

    # distractors: clearly smaller, any class (the main one included), a quarter drawn on top
    below, above = [], []
    for _ in range(int(rng.integers(0, 5))):
        spec = (CLASSES[rng.integers(len(CLASSES))], rng.uniform(0.07, 0.15) * size,
                rng.uniform(0, size, 2), main_colour if rng.random() < 0.25 else _object_colour(rng, palette))
        (above if rng.random() < 0.25 else below).append(spec)
    for _ in range(int(rng.integers(0, 3)) if rng.random() < 0.3 else 0):  # thin clutter lines
        below.append(("line", rng.uniform(0.2, 0.5) * size, rng.uniform(0, size, 2), _colour(rng)))

    for name, r, c, col in below:
        _paint(img, rng, name, r, c, col, thin=name == "line")
    _paint(img, rng, CLASSES[class_index], radius, main_center, main_colour)
    for name, r, c, col in above:
        _paint(img, rng, name, r, c, col)

    out = Image.fromarray(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8), mode="RGB")
    return blur_then_noise(out, rng, blur_chance=0.35, blur_sigma=(0.3, 0.9), noise_chance=0.7, noise_sigma=(0, 9))


def image_rng(seed: int, split: str, class_index: int, index: int) -> np.random.Generator:
    """The generator of one image: independent of every other image, so order never matters."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), class_index, index]))


def family_classes(family: str) -> tuple[str, ...]:
    return GLYPH_CLASSES if family == "glyphs" else CLASSES


def _render(job: tuple[str, int, str, int, int, int, str]) -> tuple[str, str, str]:
    """Write one PNG under ``root``; top-level so spawn-based worker processes can run it."""
    root, seed, split, class_index, index, size, family = job
    draw = generate_glyph if family == "glyphs" else generate_image
    img = draw(class_index, image_rng(seed, split, class_index, index), size)
    buf = io.BytesIO()
    img.save(buf, **_PNG)
    data = buf.getvalue()
    name = family_classes(family)[class_index]
    rel = f"{split}/{name}/{name}_{index:05d}.png"
    (Path(root) / rel).write_bytes(data)
    return rel, hashlib.sha256(data).hexdigest(), hashlib.sha256(img.tobytes()).hexdigest()


# ---- dataset on disk ------------------------------------------------------------------------------

def _config_record(cfg: SynthConfig) -> dict[str, Any]:
    record = {**asdict(cfg), "generator_version": GENERATOR_VERSION}
    if cfg.family == "shapes":  # as it was before glyphs existed: existing shape datasets stay reusable
        record.pop("family")
    return record


def tree_sha256(files: dict[str, str]) -> str:
    """Hash of a dataset: sha256 over sorted ``"<relative path>\\t<file sha256>\\n"`` lines."""
    return hashlib.sha256("".join(f"{k}\t{files[k]}\n" for k in sorted(files)).encode()).hexdigest()


def load_dataset_info(out_dir: str | Path) -> dict[str, Any]:
    """Read ``dataset.json`` of a generated dataset, or say in one line why it is not one."""
    path = Path(out_dir) / INFO_FILE
    fix = "point at a directory made by write_dataset, or generate it again into an empty directory"
    if not path.is_file():
        raise CoatnetEdgeError(f"no {INFO_FILE}: not a generated dataset", path=Path(out_dir), fix=fix)
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CoatnetEdgeError(f"cannot read dataset info ({err})", path=path, fix=fix) from None
    needed = {"name", "classes", "counts", "config", "sha256", "image_size", "seed"}
    if not isinstance(info, dict) or info.get("name") != DATASET_NAME or not needed <= info.keys():
        raise CoatnetEdgeError("not a coatnet-edge synthetic dataset description", path=path, fix=fix)
    return info


def _reuse(out: Path, cfg: SynthConfig) -> bool:
    """True if ``out`` already holds exactly this dataset; False if it is absent or empty."""
    if not out.exists():
        return False
    fix = "pick an empty --out directory, or delete this one"
    if not out.is_dir():
        raise CoatnetEdgeError("output path exists and is not a directory", path=out, fix=fix)
    names = {p.name for p in out.iterdir()}
    if not names:
        return False
    if not names <= {*SPLITS, INFO_FILE} or INFO_FILE not in names:
        raise CoatnetEdgeError("output directory is not empty and holds no generated dataset",
                               path=out, fix=fix)
    try:
        info = load_dataset_info(out)
    except CoatnetEdgeError:
        raise CoatnetEdgeError(f"output directory holds an unreadable {INFO_FILE}", path=out,
                               fix=fix) from None
    if info["config"] != _config_record(cfg):
        raise CoatnetEdgeError(f"output directory holds a different dataset ({info['config']})",
                               path=out, fix=fix)
    for split in SPLITS:
        for name in cfg.classes:
            if len(list((out / split / name).glob("*.png"))) != cfg.per_class(split):
                raise CoatnetEdgeError(f"dataset is incomplete ({split}/{name})", path=out, fix=fix)
    return True


def _results(jobs: list[tuple], workers: int) -> Iterator[tuple[str, str, str]]:
    if workers == 1:
        yield from map(_render, jobs)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(_render, jobs, chunksize=max(1, min(256, len(jobs) // (8 * workers))))


def write_dataset(out_dir: str | Path, cfg: SynthConfig | None = None, *,
                  progress: Callable[[int, int], None] | None = None, workers: int = 1) -> Path:
    """Generate the dataset at ``out_dir`` (``train/<class>/*.png``, ``val/<class>/*.png``, dataset.json).

    Written into a temporary sibling and renamed, so an interrupted run leaves nothing at
    ``out_dir``. An existing identical dataset is returned as is (a cheap cache); anything else
    already there is an error rather than something we would overwrite.
    """
    cfg = SynthConfig() if cfg is None else cfg
    if not isinstance(cfg, SynthConfig):
        raise CoatnetEdgeError(f"cfg must be a SynthConfig, got {type(cfg).__name__}",
                               fix="pass SynthConfig(...)")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise CoatnetEdgeError(f"workers must be a positive integer, got {workers!r}",
                               fix="pass workers=1 or more")
    out = Path(out_dir)
    if _reuse(out, cfg):
        return out

    with atomic_path(out) as tmp:
        jobs = []
        for split in SPLITS:
            for k, name in enumerate(cfg.classes):
                (tmp / split / name).mkdir(parents=True)
                jobs += [(str(tmp), cfg.seed, split, k, i, cfg.image_size, cfg.family)
                         for i in range(cfg.per_class(split))]
        files: dict[str, str] = {}
        pixels: dict[str, str] = {}
        for rel, file_sha, pixel_sha in _results(jobs, workers):
            files[rel], pixels[rel] = file_sha, pixel_sha
            if progress is not None:
                progress(len(files), len(jobs))
        info = {
            "name": DATASET_NAME,
            "version": FORMAT_VERSION,
            "generator_version": GENERATOR_VERSION,
            "seed": cfg.seed,
            "image_size": cfg.image_size,
            "classes": list(cfg.classes),
            "counts": {s: {name: cfg.per_class(s) for name in cfg.classes} for s in SPLITS},
            "num_images": len(files),
            "config": _config_record(cfg),
            "sha256": tree_sha256(files),
            "sha256_method": "sha256 over sorted '<relative path>\\t<file sha256>\\n' lines",
            # PNG bytes depend on the zlib inside Pillow; decoded pixels do not
            "pixels_sha256": tree_sha256(pixels),
        }
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return out
