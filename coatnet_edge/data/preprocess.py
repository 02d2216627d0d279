"""The one image preprocessing: used by training, calibration, evaluation and the torch-free predictor.

Pillow + NumPy only (never torch), so an edge box needs nothing more to feed a runtime. The geometry
and arithmetic follow timm's eval transform (``Resize(floor(size / crop_pct))`` on the shorter side,
``CenterCrop(size)``, ``ToTensor``, ``Normalize``) on PIL images, so a timm-trained checkpoint sees
the same pixels here as it did in timm. One deliberate difference: EXIF orientation is applied.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from coatnet_edge.errors import CoatnetEdgeError

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)

RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}
INTERPOLATIONS = tuple(RESAMPLE)

_BAD_IMAGE_FIX = "re-export the image (e.g. as JPEG or PNG) or remove it from the folder"
_MODES_16BIT = ("I;16", "I;16L", "I;16B", "I;16N")


@dataclass(frozen=True)
class PreprocessConfig:
    """Eval-time preprocessing; stored in manifests so every artifact is fed the same pixels."""

    image_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN
    std: tuple[float, ...] = IMAGENET_DEFAULT_STD
    channels: int = 3  # 1: grayscale ('L', as timm loads images for in_chans=1 models), one mean/std value


    def __post_init__(self) -> None:
        size = self.image_size
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise _config_error(f"image_size must be a positive integer, got {size!r}", "e.g. image_size=224")
        crop = self.crop_pct
        if isinstance(crop, bool) or not isinstance(crop, (int, float)) or not 0.0 < crop <= 1.0:
            raise _config_error(f"crop_pct must be in (0, 1], got {crop!r}", "e.g. crop_pct=0.875 (timm's)")
        interp = self.interpolation.lower() if isinstance(self.interpolation, str) else self.interpolation
        if interp not in RESAMPLE:
            raise _config_error(
                f"unknown interpolation {self.interpolation!r}", f"use one of {', '.join(INTERPOLATIONS)}"
            )
        if self.channels not in (1, 3):
            raise _config_error(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels!r}", "e.g. channels=3")
        mean = _per_channel("mean", self.mean, self.channels)
        std = _per_channel("std", self.std, self.channels)
        if not all(s > 0 for s in std):
            raise _config_error(f"std values must be > 0, got {std}", "e.g. std=(0.229, 0.224, 0.225)")
        object.__setattr__(self, "crop_pct", float(crop))
        object.__setattr__(self, "interpolation", interp)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def resize_size(self) -> int:
        """Shorter side before the center crop; exactly timm's eval ``scale_size``."""
        return math.floor(self.image_size / self.crop_pct)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one preprocessed image: what models and exported graphs take."""
        return (self.channels, self.image_size, self.image_size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str | Path | None = None) -> PreprocessConfig:
        """Inverse of ``to_dict``; ``source`` (e.g. a manifest file) is named in errors."""
        if not isinstance(d, Mapping):
            raise CoatnetEdgeError(
                f"preprocessing config must be a mapping, got {type(d).__name__}",
                path=source,
                fix="write it as a JSON object with keys image_size, crop_pct, interpolation, mean, std",
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CoatnetEdgeError(
                f"unknown preprocessing key(s): {', '.join(map(str, unknown))}",
                path=source,
                fix=f"remove them; known keys are {', '.join(sorted(known))}",
            )
        try:
            return cls(**d)
        except CoatnetEdgeError as err:
            if source is None:
                raise
            raise _with_path(err, source) from err


def _with_path(err: CoatnetEdgeError, path: str | Path) -> CoatnetEdgeError:
    fix_suffix = f" — fix: {' '.join(err.fix.split())}" if err.fix else ""
    return CoatnetEdgeError(str(err).removesuffix(fix_suffix), path=path, fix=err.fix)


def _config_error(message: str, fix: str) -> CoatnetEdgeError:
    return CoatnetEdgeError(f"invalid preprocessing config: {message}", fix=fix)


def _per_channel(name: str, value: Any, channels: int) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != channels or not all(math.isfinite(v) for v in out):
        what, example = ("3 finite numbers (R, G, B)", "(0.5, 0.5, 0.5)") if channels == 3 else \
            ("1 finite number (grayscale)", "(0.5,)")
        raise _config_error(f"{name} must be {what}, got {value!r}", f"e.g. {name}={example}")
    return out


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB, scaling high-bit-depth data instead of clipping it.

    Alpha is dropped without compositing (``convert('RGB')``), as timm/torchvision loaders do, so
    models see the same pixels they were trained on.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _MODES_16BIT or mode == "I":
        return Image.fromarray(_int_to_uint8(np.asarray(img), mode)).convert("RGB")
    if mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        return Image.fromarray(np.rint(np.clip(arr, 0.0, 255.0)).astype(np.uint8)).convert("RGB")
    if mode in ("P", "PA"):
        img = img.convert("RGBA")  # resolves palette transparency; alpha is then dropped like RGBA
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise CoatnetEdgeError(
            f"cannot convert image mode {mode} to RGB ({exc})", fix=_BAD_IMAGE_FIX
        ) from exc


def _int_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    # NOTE: Pillow's convert() clips 16-bit data to 255 (a mid-gray becomes white); scale by the range.
    # Mode "I" is a 32-bit container that Pillow fills with 16-bit data (PGM, some TIFFs): treat it as
    # 16-bit when the values fit, else scale by the int32 range.
    wide = arr.astype(np.int64)
    if mode in _MODES_16BIT or (wide.size and wide.min() >= 0 and wide.max() <= 0xFFFF):
        return ((np.clip(wide, 0, 0xFFFF) + 128) // 257).astype(np.uint8)
    top = 2**31 - 1
    return np.rint(np.clip(wide, 0, top) * (255.0 / top)).astype(np.uint8)


def _upright(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # a malformed EXIF block should not cost us the pixels
        return img


def load_image(path: str | Path) -> Image.Image:
    """Fully decode an image file to 8-bit RGB, upright per EXIF; any failure is a one-line error."""
    path = Path(path)
    # A truncated file must fail here, not train on grey padding, whoever switched this on.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as im:
            im.load()
            rgb = to_rgb(_upright(im))
            if rgb is im:
                rgb = im.copy()  # detach from the file before it is closed
    except CoatnetEdgeError as err:
        raise _with_path(err, path) from err
    except Exception as exc:
        raise _decode_error(path, exc) from exc
    return rgb


def _decode_error(path: Path, exc: Exception) -> CoatnetEdgeError:
    if isinstance(exc, FileNotFoundError):
        return CoatnetEdgeError("image not found", path=path, fix="check the path")
    if isinstance(exc, IsADirectoryError):
        return CoatnetEdgeError("is a folder, not an image file", path=path, fix="pass an image file")
    if isinstance(exc, PermissionError):
        return CoatnetEdgeError("cannot read image (permission denied)", path=path, fix="fix its permissions")
    if isinstance(exc, Image.DecompressionBombError):
        return CoatnetEdgeError(
            f"image too large to decode safely ({exc})",
            path=path,
            fix="downscale it or remove it from the folder",
        )
    if isinstance(exc, UnidentifiedImageError) and path.is_file() and path.stat().st_size == 0:
        return CoatnetEdgeError("empty file (0 bytes), not an image", path=path, fix=_BAD_IMAGE_FIX)
    if isinstance(exc, UnidentifiedImageError):
        return CoatnetEdgeError(
            "not a readable image (unknown format or corrupt)", path=path, fix=_BAD_IMAGE_FIX
        )
    detail = str(exc) or type(exc).__name__
    return CoatnetEdgeError(f"corrupt or truncated image ({detail})", path=path, fix=_BAD_IMAGE_FIX)


def preprocess_image(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """Resize shorter side, center crop, normalize: float32 CHW (C, S, S), C-contiguous.

    Same numbers as timm's eval transform on a PIL image (torchvision's Resize/CenterCrop rules,
    PIL's antialiased resampling, float32 ``(x / 255 - mean) / std``); 1-channel configs take Pillow's
    luma ('L'), as timm's loader does for ``in_chans=1`` models.
    """
    img = to_rgb(img)
    if cfg.channels == 1:
        img = img.convert("L")
    w, h = img.size
    short = cfg.resize_size
    # torchvision: new_long = int(size * long / short)
    new_w, new_h = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), RESAMPLE[cfg.interpolation])
    return normalize(_center_crop(img, cfg.image_size), cfg)


def normalize(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """8-bit RGB (or 'L') image -> float32 CHW ``(x / 255 - mean) / std`` (shared by eval and training transforms)."""
    if cfg.channels == 1 and img.mode != "L":
        img = img.convert("L")
    arr = np.asarray(img, dtype=np.uint8).astype(np.float32) / np.float32(255.0)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    arr = (arr - np.asarray(cfg.mean, dtype=np.float32)) / np.asarray(cfg.std, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _center_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    if size > w or size > h:
        # torchvision pads with zeros first; unreachable with crop_pct <= 1, kept for parity
        canvas = Image.new(img.mode, (max(w, size), max(h, size)), 0)
        canvas.paste(img, ((size - w) // 2 if size > w else 0, (size - h) // 2 if size > h else 0))
        img = canvas
        w, h = img.size
    top = round((h - size) / 2.0)  # torchvision's int(round(...)): round half to even
    left = round((w - size) / 2.0)
    return img.crop((left, top, left + size, top + size))


def preprocess_file(path: str | Path, cfg: PreprocessConfig) -> np.ndarray:
    """``load_image`` + ``preprocess_image``: float32 (C, S, S)."""
    return preprocess_image(load_image(path), cfg)


def preprocess_batch(paths: Iterable[str | Path], cfg: PreprocessConfig) -> np.ndarray:
    """Stack files into float32 NCHW; an empty list gives shape (0, C, S, S)."""
    arrays = [preprocess_file(p, cfg) for p in paths]
    if not arrays:
        return np.empty((0, *cfg.input_shape), dtype=np.float32)
    return np.stack(arrays)
