"""``coatnet-edge evaluate / benchmark / compare / report / predict``: measuring artifacts.

Timing defaults are the measuring functions' own (their signatures). Nothing here imports torch:
``predict`` runs with Pillow, NumPy and one runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from coatnet_edge.atomic import write_json_atomic
from coatnet_edge.cli.options import BatchSizes, library_option, path_option, source_options, stack
from coatnet_edge.cli.output import echo_files, echo_table
from coatnet_edge.measure.benchmark import SCHEMA as BENCHMARK_SCHEMA
from coatnet_edge.measure.benchmark import benchmark as run_benchmark
from coatnet_edge.measure.evaluate import evaluate as run_evaluate
from coatnet_edge.measure.predict import predict as run_predict
from coatnet_edge.measure.report import compare as run_compare
from coatnet_edge.measure.report import report as run_report
from coatnet_edge.measure.summary import (
    benchmark_table,
    evaluation_document,
    evaluation_table,
    prediction_line,
    report_table,
)
from coatnet_edge.models.source_options import SourceOptions


def _timing_options(timer: Any) -> Any:
    """--batch/--threads/--warmup/--runs/--seconds with the defaults of ``timer`` (benchmark or compare)."""
    return stack(
        library_option(timer, "batches", "--batch", "batches", type=BatchSizes(), multiple=False,
                       help="Batch sizes, e.g. 1,8."),
        library_option(timer, "threads", help="Runtime threads (default: the runtime's choice)."),
        library_option(timer, "warmup", help="Untimed runs before timing."),
        library_option(timer, "runs", help="Timed runs per artifact and batch."),
        library_option(timer, "seconds", help="Time for this long instead of --runs."),
    )


def _data_options(func: Any) -> Any:
    """The images accuracy is measured on: options shared by `evaluate` and `compare`."""
    return stack(
        path_option("--data", required=True, help="Labeled or unlabeled image folder."),
        library_option(run_evaluate, "limit", help="Evaluate a seeded, class-stratified sample of this many."),
        click.option("--unlabeled", is_flag=True, help="Treat class subfolders as unlabeled images (agreement only)."),
    )(func)


def _reference_weights(func: Any) -> Any:
    """--reference-weights, and how to read the reference (--image-size, --ema, --mean ...: ``SourceOptions``)."""
    return stack(path_option("--reference-weights", default=None, help="Local weights of a timm:<name> reference."),
                 source_options(weights=False, what="--reference"))(func)


def _given(options: SourceOptions) -> SourceOptions | None:
    """None when no option was set (the reference is read as it is; a checkpoint's header is enough)."""
    return None if options == SourceOptions() else options


@click.command()
@click.argument("artifacts", nargs=-1, required=True)
@_data_options
@click.option("--reference", default=None,
              help="FP32 reference: a checkpoint (PyTorch), timm:<name> with --reference-weights, or an FP32 .onnx.")
@_reference_weights
@path_option("--json", "json_out", default=None, help="Also write the rows here.")
def evaluate(artifacts: tuple[str, ...], data: Path, reference: str | None, reference_weights: Path | None,
             source_options: SourceOptions, limit: int | None, unlabeled: bool, json_out: Path | None) -> None:
    """Top-1/top-5 of artifacts on a folder and their agreement with the FP32 reference.

    \b
    Example:
      coatnet-edge evaluate art/m.int8.onnx art/m.int8.xml --data val/ --reference m.safetensors
    """
    rows = run_evaluate(list(artifacts), data=data, reference=reference, limit=limit,
                        labeled=False if unlabeled else None, reference_weights=reference_weights,
                        reference_options=_given(source_options))
    echo_table(evaluation_table(rows, data))
    if json_out:
        write_json_atomic(json_out, evaluation_document(rows, data))


@click.command()
@click.argument("artifacts", nargs=-1, required=True)
@_timing_options(run_benchmark)
@path_option("--out", "out_file", default=Path("benchmark.json"), show_default=True,
             help=f"Results document (JSON, schema {BENCHMARK_SCHEMA}).")
def benchmark(artifacts: tuple[str, ...], out_file: Path, **timing: Any) -> None:
    """Latency (p50/p90/p99/mean/std) and throughput per artifact and batch, with the machine recorded.

    \b
    Example (on a Jetson, then merge with `report`):
      coatnet-edge benchmark m.fp16.engine m.int8.engine --batch 1,8 --out jetson.json
    """
    doc = run_benchmark(list(artifacts), **timing)
    write_json_atomic(out_file, doc)
    echo_table(benchmark_table(doc))
    click.echo(f"results: {out_file}")


@click.command()
@click.option("--reference", required=True,
              help="FP32 reference (PyTorch): a checkpoint, or timm:<name> with --reference-weights.")
@_reference_weights
@click.argument("artifacts", nargs=-1, required=True)
@_data_options
@_timing_options(run_compare)
@path_option("--out", "out_dir", required=True, help="Report folder.")
def compare(reference: str, reference_weights: Path | None, source_options: SourceOptions, artifacts: tuple[str, ...],
            data: Path,
            limit: int | None, unlabeled: bool, out_dir: Path, **timing: Any) -> None:
    """Evaluate and time the reference and every artifact in one run: table (md/csv/json) + plot (png).

    \b
    Example:
      coatnet-edge compare --reference m.safetensors art/m.fp32.onnx art/m.int8.onnx art/m.int8.xml \\
          --data val/ --out report/
    """
    result = run_compare(reference, list(artifacts), data=data, out=out_dir, limit=limit,
                         labeled=False if unlabeled else None, reference_weights=reference_weights,
                         reference_options=_given(source_options), **timing)
    echo_table(report_table(result.rows, f"comparison vs {reference} (speed-up: reference p50 / p50, same run)"))
    echo_files(result.files)


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@path_option("--out", "out_dir", required=True, help="Report folder.")
def report(results: tuple[Path, ...], out_dir: Path) -> None:
    """Merge compare/benchmark results from several devices into one table and one plot."""
    result = run_report(list(results), out=out_dir)
    echo_table(report_table(result.rows, f"{len(results)} result files"))
    echo_files(result.files)


@click.command()
@click.option("--model", required=True, help="An exported artifact (.onnx, .xml, .engine) or a checkpoint.")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@library_option(run_predict, "top_k", help="Labels per image, most probable first.")
def predict(model: str, images: tuple[Path, ...], top_k: int) -> None:
    """Top-k labels per image. Runs with only Pillow, NumPy and onnxruntime or openvino installed."""
    for result in run_predict(model, list(images), top_k=top_k):
        click.echo(prediction_line(result))
