"""``coatnet-edge data synth / corrupt / scan``: the built-in dataset (``SynthConfig``'s fields are the
options), corrupted copies of a folder, and checks of image folders. Torch-free, like the data package."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from coatnet_edge.cli.options import config_from, config_options, library_option, path_option
from coatnet_edge.data.corrupt import CorruptConfig, write_corrupted
from coatnet_edge.data.folders import format_skipped, scan_folder
from coatnet_edge.data.synth import SynthConfig, load_dataset_info, write_dataset
from coatnet_edge.measure.summary import dataset_line
from coatnet_edge.progress import progress_bar

SYNTH_HELP = {
    "seed": "Seed of every image (same seed, same pixels).",
    "image_size": "Side of the generated images (pixels).",
    "train_per_class": "Training images per class.",
    "val_per_class": "Validation images per class.",
    "num_classes": "Classes (the first N shapes or glyphs).",
    "family": "shapes: procedurally drawn shapes; glyphs: letters and digits rendered from matplotlib's fonts on "
              "dark textured backgrounds (a second kind of image, to check that defaults carry over).",
}
MAX_WORKERS = 4  # processes rendering images


@click.group()
def data() -> None:
    """Datasets: the built-in synthetic one, and checks of your own image folders."""


@data.command("synth")
@path_option("--out", "out_dir", required=True, help="New folder to write.")
@config_options(SynthConfig, SYNTH_HELP)
def data_synth(out_dir: Path, **values: Any) -> None:
    """Generate a built-in labeled dataset (OUT/train/<class>/*.png, OUT/val/...): shapes, or --family glyphs.

    Deterministic: the same options give the same pixels on every machine (dataset.json records
    a hash of the pixels and one of the PNG bytes, which also depend on Pillow's zlib).
    """
    with progress_bar("generating") as bar:
        out = write_dataset(out_dir, config_from(SynthConfig, values), progress=bar,
                            workers=min(MAX_WORKERS, os.cpu_count() or 1))
    click.echo(dataset_line(out, load_dataset_info(out)))


@data.command("corrupt")
@click.argument("folder", type=click.Path(path_type=Path))
@path_option("--out", "out_dir", required=True, help="New folder to write (same layout, PNG files).")
@library_option(CorruptConfig, "kinds", "--kind", "kinds", help="Corruption (repeatable; default: all four, cycled).")
@library_option(CorruptConfig, "severity", type=click.IntRange(1, 5), help="Strength, 1-5 (ImageNet-C's scale).")
@library_option(CorruptConfig, "seed", help="Seed of the noise.")
def data_corrupt(folder: Path, out_dir: Path, kinds: tuple[str, ...], severity: int, seed: int) -> None:
    """Write a corrupted copy of an image folder (blur, noise, contrast, JPEG; one per image, cycled).

    Where INT8 differs from FP32 shows more on corrupted images than on clean ones: measure both.

    \b
    Example:
      coatnet-edge data corrupt images/val --out images/val_corrupted --severity 3
      coatnet-edge compare --reference m.safetensors art/m.int8.onnx --data images/val_corrupted --out report/
    """
    config = CorruptConfig(kinds=kinds or CorruptConfig().kinds, severity=severity, seed=seed)
    with progress_bar("corrupting") as bar:
        out = write_corrupted(folder, out_dir, config, progress=bar)
    click.echo(f"{out}: {scan_folder(out, verify=False).summary()}, {', '.join(config.kinds)} at severity {severity}")


@data.command("scan")
@click.argument("folder", type=click.Path(path_type=Path))
@library_option(scan_folder, "labeled", "--labeled/--unlabeled", show_default=False,
                help="Folder layout (default: detect).")
def data_scan(folder: Path, labeled: bool | None) -> None:
    """Check an image folder: decode every file, count classes, list what would be skipped."""
    with progress_bar("decoding") as bar:
        found = scan_folder(folder, labeled=labeled, progress=bar)
    click.echo(f"{folder}: {found.summary()}")
    for line in format_skipped(found.skipped):
        click.echo(line)
