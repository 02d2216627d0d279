"""``coatnet-edge data synth / scan``: the built-in dataset (``SynthConfig``'s fields are the options), and
checks of image folders. Torch-free, like the data package."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from coatnet_edge.cli.options import config_from, config_options, library_option, path_option
from coatnet_edge.data.folders import format_skipped, scan_folder
from coatnet_edge.data.synth import SynthConfig, load_dataset_info, write_dataset
from coatnet_edge.measure.summary import dataset_line
from coatnet_edge.progress import progress_bar

SYNTH_HELP = {
    "seed": "Seed of every image (same seed, same pixels).",
    "image_size": "Side of the generated images (pixels).",
    "train_per_class": "Training images per class.",
    "val_per_class": "Validation images per class.",
    "num_classes": "Classes (the first N shapes).",
}
MAX_WORKERS = 4  # processes rendering images


@click.group()
def data() -> None:
    """Datasets: the built-in synthetic one, and checks of your own image folders."""


@data.command("synth")
@path_option("--out", "out_dir", required=True, help="New folder to write.")
@config_options(SynthConfig, SYNTH_HELP)
def data_synth(out_dir: Path, **values: Any) -> None:
    """Generate the built-in labeled dataset (OUT/train/<class>/*.png, OUT/val/...).

    Deterministic: the same options give the same pixels on every machine (dataset.json records
    a hash of the pixels and one of the PNG bytes, which also depend on Pillow's zlib).
    """
    with progress_bar("generating") as bar:
        out = write_dataset(out_dir, config_from(SynthConfig, values), progress=bar,
                            workers=min(MAX_WORKERS, os.cpu_count() or 1))
    click.echo(dataset_line(out, load_dataset_info(out)))


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
