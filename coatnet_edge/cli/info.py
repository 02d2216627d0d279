"""``coatnet-edge models`` and ``coatnet-edge info``: the CoAtNet variants, and what a model source holds."""

from __future__ import annotations

from pathlib import Path

import click

from coatnet_edge.cli.options import library_option, model_source_options, path_option
from coatnet_edge.cli.output import echo_lines, echo_table
from coatnet_edge.measure.summary import MACS_NOTE, source_lines, variants_table
from coatnet_edge.models.config import CoAtNetConfig, check_image_size
from coatnet_edge.models.registry import get_variant, list_variants
from coatnet_edge.models.source_options import SourceOptions


@click.command()
@library_option(CoAtNetConfig, "image_size", help="Input size (a multiple of 32).")
@library_option(CoAtNetConfig, "num_classes", help="Classes of the head.")
def models(image_size: int, num_classes: int) -> None:
    """List the CoAtNet variants with parameters and multiply-accumulates (measured, batch 1)."""
    from coatnet_edge.models.profile import profile_config  # torch: imported when the verb runs, not for --help

    check_image_size(image_size)
    configs = [get_variant(name).replace(image_size=image_size, num_classes=num_classes) for name in list_variants()]
    echo_table(variants_table(((cfg, profile_config(cfg)) for cfg in configs), image_size, num_classes))
    click.echo(MACS_NOTE)


@click.command()
@click.argument("model")
@path_option("--config", default=None, help="JSON config for a bare .pt/.pth state dict of our CoAtNet.")
@model_source_options
def info(model: str, config: Path | None, source_options: SourceOptions) -> None:
    """Show what a model source holds and where each fact was read: architecture, classes, input size and
    channels, weights (EMA or not), preprocessing with its origin, parameters and MACs.

    \b
    Examples:
      coatnet-edge info ft.safetensors
      coatnet-edge info output/train/model_best.pth.tar --ema      # timm train.py checkpoint
      coatnet-edge info hf_folder/                                 # timm save_for_hf
      coatnet-edge info timm:coatnet_0_rw_224 --weights ft.safetensors
    """
    from coatnet_edge.models.checkpoint import load_checkpoint  # torch: imported when the verb runs
    from coatnet_edge.models.profile import profile_model
    from coatnet_edge.models.source import LoadedModel, load_model

    if config is not None:
        net, meta = load_checkpoint(model, config=config)
        loaded = LoadedModel(net, meta.preprocess, net.cfg.name, Path(model), class_names=list(meta.class_names),
                             provenance={"format": "state dict + --config", "preprocess_from": "--config"})
    else:
        loaded = load_model(model, source_options)
    pre = loaded.preprocess
    echo_lines(source_lines(model, loaded, profile_model(loaded.net, pre.image_size, pre.channels)))
