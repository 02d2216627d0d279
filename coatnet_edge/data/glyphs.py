"""The second built-in dataset family: glyphs rendered from the TrueType fonts that ship with matplotlib.

Why a second family: INT8 defaults tuned on one kind of image do not carry over to another.
These images have statistics unlike the shapes: dark textured backgrounds, thin high-contrast strokes,
outlined and filled letters in 16 typefaces (DejaVu Sans/Serif/Mono and STIX in regular, bold and
italic, Computer Modern), rotation, clutter glyphs, blur and sensor noise. The label is the character
of the main (largest) glyph; the classes come in confusable groups (B/8/3/E, P/R/F, O/Q/D, S/5).

No download: the fonts are part of matplotlib, a dependency of the toolkit. Every image draws from its
own generator, like the shapes (``synth.image_rng``), so the same seed gives the same pixels wherever
the same fonts and Pillow's FreeType render them.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from coatnet_edge.data.camera import blur_then_noise
from coatnet_edge.errors import CoatnetEdgeError, MissingDependencyError

GLYPH_CLASSES = ("B", "8", "3", "E", "P", "R", "F", "O", "Q", "D", "S", "5")
FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
         "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf",
         "DejaVuSansMono-Bold.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
         "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf")
_SS = 3  # supersampling for anti-aliased glyph edges after rotation


@functools.cache
def font_dir() -> Path:
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError("matplotlib", hint="pip install matplotlib") from None
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.cache
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_dir() / name), size)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Dark, low-frequency texture: a tinted gradient plus smoothed noise, values in 0..0.35."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    tint = rng.uniform(0.02, 0.2, 3).astype(np.float32)
    coarse = rng.standard_normal((6, 6)).astype(np.float32)
    blob = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))
    base = tint[None, None, :] * (0.6 + 0.4 * ramp[..., None]) + 0.04 * blob[..., None]
    return np.clip(base, 0, 0.35)


def _bright(rng: np.random.Generator) -> tuple[int, int, int]:
    colour = rng.uniform(0.45, 1.0, 3)
    colour[rng.integers(3)] = rng.uniform(0.8, 1.0)
    return tuple(int(255 * c) for c in colour)


def _glyph_layer(char: str, font: str, height: float, angle: float, outline: bool, colour: tuple[int, int, int],
                 size: int, rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    """The glyph rendered large, rotated and shrunk to ``size``: its colour layer and its alpha."""
    big = size * _SS
    face = _font(font, max(8, int(height * _SS)))
    alpha = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(alpha)
    box = draw.textbbox((0, 0), char, font=face, anchor="lt")
    origin = ((big - (box[2] - box[0])) / 2 - box[0], (big - (box[3] - box[1])) / 2 - box[1])
    if outline:  # only the stroke: the letter's edges, hollow inside
        stroke = max(1, int(height * _SS * rng.uniform(0.03, 0.06)))
        draw.text(origin, char, font=face, fill=0, stroke_width=stroke, stroke_fill=255, anchor="lt")
        draw.text(origin, char, font=face, fill=0, anchor="lt")
    else:
        draw.text(origin, char, font=face, fill=255, anchor="lt")
    alpha = alpha.rotate(angle, resample=Image.Resampling.BICUBIC).resize((size, size), Image.Resampling.LANCZOS)
    return Image.new("RGB", (size, size), colour), alpha


def generate_glyph(class_index: int, rng: np.random.Generator, image_size: int = 80) -> Image.Image:
    """One RGB image whose main (largest) glyph is ``GLYPH_CLASSES[class_index]``."""
    if not 0 <= class_index < len(GLYPH_CLASSES):
        raise CoatnetEdgeError(f"class index {class_index} is out of range", fix=f"use 0..{len(GLYPH_CLASSES) - 1}")
    size = image_size
    canvas = Image.fromarray((_background(rng, size) * 255 + 0.5).astype(np.uint8), mode="RGB")
    clutter = [(GLYPH_CLASSES[rng.integers(len(GLYPH_CLASSES))], rng.uniform(0.14, 0.26)) for _ in
               range(int(rng.integers(0, 4)))]
    for char, scale in clutter:  # dim, smaller glyphs anywhere, under the main one
        colour, alpha = _glyph_layer(char, FONTS[rng.integers(len(FONTS))], scale * size, rng.uniform(-40, 40),
                                     False, tuple(int(c * 0.45) for c in _bright(rng)), size, rng)
        shift = tuple(int(v) for v in rng.integers(-size // 3, size // 3 + 1, 2))
        canvas.paste(colour, (0, 0), alpha.transform(alpha.size, Image.Transform.AFFINE,
                                                     (1, 0, -shift[0], 0, 1, -shift[1])))
    for _ in range(int(rng.integers(0, 3))):  # stray strokes
        draw = ImageDraw.Draw(canvas)
        points = [tuple(float(v) for v in rng.uniform(0, size, 2)) for _ in range(2)]
        draw.line(points, fill=tuple(int(c * 0.6) for c in _bright(rng)), width=int(rng.integers(1, 3)))
    height = rng.uniform(0.48, 0.72) * size
    colour, alpha = _glyph_layer(GLYPH_CLASSES[class_index], FONTS[rng.integers(len(FONTS))], height,
                                 rng.uniform(-25, 25), rng.random() < 0.3, _bright(rng), size, rng)
    limit = int(0.12 * size)
    shift = tuple(int(v) for v in rng.integers(-limit, limit + 1, 2))
    canvas.paste(colour, (0, 0), alpha.transform(alpha.size, Image.Transform.AFFINE,
                                                 (1, 0, -shift[0], 0, 1, -shift[1])))
    return blur_then_noise(canvas, rng, blur_chance=0.5, blur_sigma=(0.3, 1.2), noise_chance=0.8,
                           noise_sigma=(2, 14))
