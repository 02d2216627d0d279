"""``coatnet-edge run``: the whole pipeline from a recipe."""

from __future__ import annotations

from pathlib import Path

import click

from coatnet_edge.cli.options import path_option
from coatnet_edge.cli.output import echo_files, echo_table
from coatnet_edge.measure.summary import report_table, stage_times_line
from coatnet_edge.pipeline.recipe import load_recipe, recipe_toml
from coatnet_edge.pipeline.run import STAGES
from coatnet_edge.pipeline.run import run as run_pipeline


@click.command()
@click.argument("recipe", required=False, type=click.Path(path_type=Path))
@path_option("--out", "out_dir", default=None,
             help="Run folder (default: the recipe's `out`, runs/default for the built-in recipe).")
@click.option("--force", multiple=True, metavar="STAGE",
              help=f"Redo a stage even if unchanged (repeatable): {', '.join(STAGES)}.")
@click.option("--print-recipe", is_flag=True, help="Print the recipe (default: the built-in one) as TOML and exit.")
def run(recipe: Path | None, out_dir: Path | None, force: tuple[str, ...], print_recipe: bool) -> None:
    """Run the whole pipeline from RECIPE (a TOML file), or from the built-in recipe without one.

    \b
    Built-in recipe (about 3 minutes on 2 CPU cores): built-in dataset -> built-in teacher ->
    distil into the built-in student (2 short KD epochs) -> PTQ INT8 -> ONNX FP32/INT8, OpenVINO
    FP32/FP16/INT8 (and TensorRT FP16/INT8 where TensorRT and a GPU exist, else "skipped") ->
    accuracy + latency of each against the FP32 student on the validation split.

    \b
    Every stage writes into its own folder with manifests and a stage.json; a stage whose inputs
    and options are unchanged is reused, so adding a target rebuilds only that target.
    Start your own recipe from:  coatnet-edge run --print-recipe > recipe.toml
    """
    if print_recipe:
        click.echo(recipe_toml(load_recipe(recipe)), nl=False)
        return
    result = run_pipeline(recipe, out=out_dir, force=force, log=click.echo)
    reference = result.rows[0]["artifact"] if result.rows else "-"
    echo_table(report_table(result.rows, f"run {result.out_dir} vs FP32 {reference} (speed-up: reference p50 / "
                                         "p50, same run; agreement: top-1 equal to the reference's)"))
    echo_files(result.files)
    click.echo(stage_times_line(result.stages, result.seconds))
