"""``coatnet-edge models`` and ``coatnet-edge info``: the CoAtNet variants, and what a checkpoint holds."""

from __future__ import annotations

from pathlib import Path

import click

from coatnet_edge.cli.options import library_option, path_option
from coatnet_edge.cli.output import echo_lines, echo_table
from coatnet_edge.measure.summary import MACS_NOTE, checkpoint_lines, variants_table
from coatnet_edge.models.checkpoint import load_checkpoint
from coatnet_edge.models.config import CoAtNetConfig, check_image_size
from coatnet_edge.models.profile import profile_config, profile_model
from coatnet_edge.models.registry import get_variant, list_variants


@click.command()
@library_option(CoAtNetConfig, "image_size", help="Input size (a multiple of 32).")
@library_option(CoAtNetConfig, "num_classes", help="Classes of the head.")
def models(image_size: int, num_classes: int) -> None:
    """List the CoAtNet variants with parameters and multiply-accumulates (measured, batch 1)."""
    check_image_size(image_size)
    configs = [get_variant(name).replace(image_size=image_size, num_classes=num_classes) for name in list_variants()]
    echo_table(variants_table(((cfg, profile_config(cfg)) for cfg in configs), image_size, num_classes))
    click.echo(MACS_NOTE)


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@path_option("--config", default=None, help="JSON config for a bare .pt/.pth state dict.")
def info(checkpoint: Path, config: Path | None) -> None:
    """Show what a checkpoint holds: variant, classes, input size, preprocessing, size."""
    model, meta = load_checkpoint(checkpoint, config=config)
    echo_lines(checkpoint_lines(checkpoint, meta, profile_model(model)))
