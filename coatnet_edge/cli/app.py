"""``coatnet-edge``: a thin CLI over the Python API. It only parses arguments and prints results.

Errors raised below arrive as :class:`CoatnetEdgeError` and are printed here once, as one line,
with exit code 2 (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import click

from coatnet_edge import __version__
from coatnet_edge.errors import CoatnetEdgeError

EXIT_USER_ERROR = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="coatnet-edge")
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Take a PyTorch CoAtNet to edge devices: distill, quantize, export to ONNX / OpenVINO /
    TensorRT, and measure accuracy and latency against the FP32 reference at every stage.

    \b
    Start here:
      coatnet-edge run                      # the whole job on built-in data and defaults
      coatnet-edge models                   # the CoAtNet variants, with params and MACs
      coatnet-edge data synth --out data/   # the built-in labeled dataset
    """
    ctx.obj = {"debug": debug}


@cli.command()
@click.argument("recipe", required=False, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Run folder (default: the recipe's `out`, runs/default for the built-in recipe).")
@click.option("--force", multiple=True, metavar="STAGE",
              help="Redo a stage even if unchanged (data, distill, onnx, quantize, a target, compare, or all).")
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
    from coatnet_edge.pipeline.recipe import load_recipe, recipe_toml

    if print_recipe:
        click.echo(recipe_toml(load_recipe(recipe)), nl=False)
        return
    from coatnet_edge.pipeline.run import run as run_pipeline

    result = run_pipeline(recipe, out=out_dir, force=force, log=click.echo)
    reference = result.rows[0]["artifact"] if result.rows else "-"
    _echo_report(result.rows, result.files, f"run {result.out_dir} vs FP32 {reference} (speed-up: reference p50 / "
                                            "p50, same run; agreement: top-1 equal to the reference's)")
    click.echo("stage wall time (s): " + ", ".join(
        f"{name} {info['seconds']:.1f}{' (reused)' if info['cached'] else ''}" for name, info in result.stages.items())
        + f"; total {result.seconds:.1f}")


def _training_options(func):
    """Options shared by `train` and `distill` (the fields of TrainConfig)."""
    options = [
        click.option("--data", "data", type=click.Path(path_type=Path), required=True,
                     help="Image folder; a root holding train/ (and val/) is split for you."),
        click.option("--val", type=click.Path(path_type=Path), default=None, help="Labeled validation folder."),
        click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
                     help="Run folder: last/best .safetensors, last.state.json."),
        click.option("--epochs", default=10, show_default=True),
        click.option("--batch-size", default=64, show_default=True, help="Per process."),
        click.option("--lr", default=2e-3, show_default=True, help="Peak AdamW learning rate."),
        click.option("--weight-decay", default=0.05, show_default=True),
        click.option("--warmup-epochs", default=1.0, show_default=True),
        click.option("--label-smoothing", default=0.1, show_default=True),
        click.option("--min-crop-scale", default=0.25, show_default=True,
                     help="Random-resized-crop keeps this much of the image area at least."),
        click.option("--image-size", type=int, default=None,
                     help="Input size (default: 64 on the built-in data, else 224 or the checkpoint's)."),
        click.option("--seed", default=0, show_default=True),
        click.option("--workers", default=2, show_default=True, help="DataLoader worker processes."),
        click.option("--max-steps-per-epoch", type=int, default=None, help="Cap steps per epoch (smoke runs)."),
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N."),
        click.option("--amp", is_flag=True, help="bfloat16 autocast."),
        click.option("--resume", type=click.Path(path_type=Path), default=None,
                     help="Continue the run in this folder (its last.state.json)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _train_config(**kw):
    from coatnet_edge.training.verbs import TrainConfig

    keys = ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "label_smoothing", "min_crop_scale",
            "seed", "workers",
            "max_steps_per_epoch", "device", "amp")
    return TrainConfig(**{k: kw[k] for k in keys}, **{k: kw[k] for k in ("kd_alpha", "kd_temperature") if k in kw})


@cli.command()
@_training_options
@click.option("--variant", default="coatnet_pico", show_default=True,
              help="Variant to train from scratch, or a .safetensors checkpoint to fine-tune.")
def train(data: Path, val: Path | None, out_dir: Path, variant: str, image_size: int | None, resume: Path | None,
          **kw) -> None:
    """Train or fine-tune a CoAtNet on a labeled folder (root/<class>/<image>).

    AdamW, warm-up + cosine, label smoothing, random-resized-crop + flip, a checkpoint every
    epoch. Runs unchanged under torchrun (DDP): torchrun --nproc-per-node 2 -m coatnet_edge train ...
    """
    from coatnet_edge.training.verbs import train as run_train

    result = run_train(data, out=out_dir, model=variant, val=val, image_size=image_size, resume=resume,
                       config=_train_config(**kw), log=click.echo)
    if result.history:
        click.echo(f"checkpoints: {result.checkpoint} (last), {result.best_checkpoint} (best)")


@cli.command()
@_training_options
@click.option("--teacher", required=True,
              help="Teacher: a checkpoint, builtin:teacher, or timm:<name> with --teacher-weights.")
@click.option("--teacher-weights", type=click.Path(path_type=Path), default=None,
              help="Local weights of a timm:<name> teacher (.safetensors or a .pth state dict).")
@click.option("--student", default="coatnet_pico", show_default=True, help="Student variant or checkpoint.")
@click.option("--alpha", "kd_alpha", default=0.7, show_default=True,
              help="Weight of the KD term with labels (1.0 = pure KD). Unlabeled folders always use pure KD.")
@click.option("--temperature", "kd_temperature", default=4.0, show_default=True)
@click.option("--labeled/--unlabeled", default=None, help="Folder layout (default: detect).")
def distill(data: Path, val: Path | None, out_dir: Path, teacher: str, teacher_weights: Path | None, student: str,
            labeled: bool | None, image_size: int | None, resume: Path | None, **kw) -> None:
    """Distill a teacher checkpoint into a smaller student.

    On labeled folders: alpha * KL(teacher_T || student_T) * T^2 + (1 - alpha) * cross-entropy.
    On unlabeled folders (flat or nested raw images): pure KD, no labels needed.
    Reports teacher and student top-1 on the validation folder, and both models' size.
    """
    from coatnet_edge.training.verbs import distill as run_distill
    from coatnet_edge.training.verbs import report_pair

    result = run_distill(data, teacher=teacher, out=out_dir, student=student, val=val, labeled=labeled,
                         image_size=image_size, resume=resume, config=_train_config(**kw),
                         teacher_weights=teacher_weights, log=click.echo)
    rows = report_pair(teacher, result.best_checkpoint, result.val_dir, teacher_weights=teacher_weights)
    _print_table("teacher vs student", ["model", "variant", "params (M)", "GMACs", "val top-1"], rows)


def _quantization_options(func):
    """Options shared by `quantize` and `export --int8`."""
    options = [
        click.option("--calib-dir", type=click.Path(path_type=Path),
                     help="A few hundred representative images (class subfolders or flat)."),
        click.option("--calib-size", default=300, show_default=True, help="Images drawn from --calib-dir."),
        click.option("--method", type=click.Choice(["ptq", "qat"]), default="ptq", show_default=True,
                     help="ptq: NNCF post-training quantization of the ONNX graph (seconds); qat: NNCF "
                          "quantization-aware fine-tuning with distillation from the FP32 model (minutes)."),
        click.option("--preset", type=click.Choice(["tensorrt", "openvino"]), default="tensorrt", show_default=True,
                     help="tensorrt: symmetric signed INT8, zero points 0, per-channel weights (runs everywhere); "
                          "openvino: asymmetric activations for OpenVINO's CPU kernels."),
        click.option("--scheme", type=click.Choice(["hybrid", "cnn", "transformer"]), default="hybrid",
                     show_default=True,
                     help="hybrid: conv stages as a CNN, attention stages keep LayerNorm/Softmax/residuals float."),
        click.option("--smooth-quant", is_flag=True, help="NNCF SmoothQuant (acts with --scheme transformer)."),
        click.option("--ignore", "ignored_patterns", multiple=True, help="Regex over ONNX node names to keep float."),
        click.option("--max-drop", type=float, default=None,
                     help="Accuracy budget in top-1 points (labeled --eval-dir) or disagreement points with FP32 "
                          "(unlabeled): the most sensitive layers return to float until it holds."),
        click.option("--eval-dir", type=click.Path(path_type=Path), default=None,
                     help="Images to measure the budget and the final drop on (not the calibration images)."),
        click.option("--eval-size", default=500, show_default=True, help="Images drawn from --eval-dir."),
        click.option("--max-float-layers", default=16, show_default=True,
                     help="At most this many layers return to float for --max-drop."),
        click.option("--sensitivity", is_flag=True,
                     help="Write the per-layer sensitivity ranking (CSV + bar plot) even without --max-drop."),
        click.option("--train-dir", type=click.Path(path_type=Path), default=None,
                     help="QAT training images, labeled or not (default: --calib-dir)."),
        click.option("--qat-epochs", default=3, show_default=True, help="QAT fine-tuning epochs."),
        click.option("--qat-lr", default=1e-4, show_default=True, help="QAT learning rate (AdamW)."),
        click.option("--seed", default=0, show_default=True, help="Seed of the calibration/evaluation samples."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _quantize_kwargs(kw: dict) -> dict:
    """CLI option values -> keyword arguments of `coatnet_edge.quantize`."""
    from coatnet_edge.calibration.qat import QatConfig

    kw = dict(kw)
    epochs, lr = kw.pop("qat_epochs"), kw.pop("qat_lr")
    kw["qat_config"] = QatConfig(epochs=epochs, lr=lr, seed=kw["seed"])
    return kw


def _echo_quantized(result) -> None:
    m = result.manifest
    check = m["check_vs_fp32"]
    click.echo(f"{result.int8_onnx}: {m['quantization']['method'].upper()}, {m['calibration']['size']} calibration "
               f"images, {m['calibration']['seconds']:.1f} s; {len(m['float_layers'])} Conv/MatMul left in float")
    click.echo(f"vs FP32 ({check['method']}): top-1 agreement {check['top1_agreement']:.4f}, "
               f"cosine {check['cosine']:.5f}, SQNR {check['sqnr_db']:.1f} dB")
    evaluation = m.get("evaluation")
    if evaluation:
        rows = []
        for backend in ("onnxruntime", "openvino"):
            r = evaluation[backend]
            rows.append([backend, f"{r['fp32_top1']:.4f}" if "fp32_top1" in r else "-",
                         f"{r['int8_top1']:.4f}" if "int8_top1" in r else "-",
                         f"{r['top1_drop_points']:.2f}" if "top1_drop_points" in r else "-",
                         f"{r['agreement_top1_agreement']:.4f}", f"{r['agreement_cosine']:.5f}",
                         f"{r['agreement_sqnr_db']:.1f}"])
        _print_table(f"INT8 vs FP32 on {evaluation['images']} images of {evaluation['root']}",
                     ["runtime", "FP32 top-1", "INT8 top-1", "drop (pts)", "top-1 agreement", "cosine", "SQNR dB"],
                     rows)


def _model_source_options(func):
    """--weights / --num-classes: what a `timm:<name>` model source needs."""
    func = click.option("--num-classes", type=int, default=None,
                        help="Classes of the fine-tuned head (default: read from --weights).")(func)
    return click.option("--weights", type=click.Path(path_type=Path), default=None,
                        help="Local weights for --model timm:<name> (.safetensors, or a .pth state dict).")(func)


@cli.command()
@click.option("--model", "model", required=True,
              help="Checkpoint (.safetensors, builtin:student, ...) or timm:<name> with --weights.")
@_model_source_options
@_quantization_options
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
def quantize(model: str, weights: Path | None, num_classes: int | None, out_dir: Path, **kw) -> None:
    """INT8 quantization (NNCF PTQ or QAT) to a Q/DQ ONNX file that ONNX Runtime, OpenVINO and
    TensorRT all run. Writes OUT/<name>.fp32.onnx, OUT/<name>.int8.onnx and their manifests.

    \b
    Examples:
      coatnet-edge quantize --model ft.safetensors --calib-dir images/ --out int8/
      coatnet-edge quantize --model ft.safetensors --calib-dir train/ --eval-dir val/ --max-drop 0.3 --out int8/
      coatnet-edge quantize --model ft.safetensors --calib-dir train/ --method qat --qat-epochs 3 --out int8/
    """
    from coatnet_edge.calibration.quantize import quantize as run_quantize

    if kw["calib_dir"] is None:
        raise click.UsageError("--calib-dir is required")
    _echo_quantized(run_quantize(model, out=out_dir, weights=weights, num_classes=num_classes, log=click.echo,
                                 **_quantize_kwargs(kw)))


@cli.command()
@click.option("--model", "model", required=True,
              help="Checkpoint (.safetensors, builtin:student, ...), timm:<name> with --weights, or for --int8 an "
                   "INT8 .onnx from `quantize`.")
@_model_source_options
@click.option("--backend", type=click.Choice(["onnx", "openvino", "tensorrt", "torch-tensorrt"]), default="onnx",
              show_default=True, help="Target runtime.")
@click.option("--fp16", "precision", flag_value="fp16", help="FP16 (OpenVINO compressed weights, TensorRT FP16).")
@click.option("--int8", "precision", flag_value="int8",
              help="INT8: quantizes with --calib-dir (NNCF, Q/DQ ONNX), or takes an INT8 .onnx as --model.")
@click.option("--fp32", "precision", flag_value="fp32", default=True, help="FP32 (the default).")
@click.option("--batch", default=1, show_default=True, help="Batch size (TensorRT: the optimization profile's opt).")
@click.option("--dynamic-batch/--static-batch", default=True, show_default=True,
              help="Dynamic batch axis (TensorRT profile 1..--max-batch) or a fixed --batch.")
@click.option("--max-batch", default=32, show_default=True, help="Largest batch of the TensorRT profile.")
@click.option("--device", default="CPU", show_default=True,
              help="OpenVINO device the IR is compiled for at export (CPU, GPU, NPU, AUTO).")
@click.option("--workspace-mib", default=2048, show_default=True, help="TensorRT builder workspace limit.")
@_quantization_options
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
def export(model: str, weights: Path | None, num_classes: int | None, backend: str, precision: str, batch: int,
           dynamic_batch: bool, max_batch: int, device: str, workspace_mib: int, out_dir: Path, **kw) -> None:
    """Export a model for one backend, check it where it runs, and write its manifest.

    \b
    Examples:
      coatnet-edge export --model ft.safetensors --backend onnx --out art/
      coatnet-edge export --model ft.safetensors --backend openvino --fp16 --out art/
      coatnet-edge export --model ft.safetensors --backend openvino --int8 --calib-dir images/ --out art/
      coatnet-edge export --model ft.safetensors --backend tensorrt --int8 --calib-dir images/ --out art/
      coatnet-edge export --model art/ft.int8.onnx --backend tensorrt --int8 --out art/   # on the Jetson
    """
    from coatnet_edge.pipeline.export import export as run_export

    options = _quantize_kwargs(kw)
    calib_dir = options.pop("calib_dir")
    if precision != "int8":
        options = {}
    result = run_export(model, out=out_dir, backend=backend, precision=precision, calib_dir=calib_dir, batch=batch,
                        dynamic_batch=dynamic_batch, max_batch=max_batch, device=device, workspace_mib=workspace_mib,
                        weights=weights, num_classes=num_classes, log=click.echo, **options)
    m = result.manifest
    click.echo(f"{result.artifact} ({backend}, {precision}, {m.get('size_bytes', 0) / 1e6:.2f} MB)")
    for key in ("parity_vs_pytorch", "parity_vs_onnx"):
        parity = m.get(key)
        if parity and "max_abs" in parity:
            click.echo(f"parity ({parity['method']}): max |diff| {parity['max_abs']:.2e}, cosine "
                       f"{parity['cosine']:.6f}, top-1 agreement {parity['top1_agreement']:.4f}")
    for path in result.extra_files:
        click.echo(f"also written: {path}")


@cli.command()
@click.option("--image-size", default=224, show_default=True, help="Input size (a multiple of 32).")
@click.option("--num-classes", default=1000, show_default=True)
def models(image_size: int, num_classes: int) -> None:
    """List the CoAtNet variants with parameters and multiply-accumulates (measured, batch 1)."""
    from coatnet_edge.models.config import check_image_size
    from coatnet_edge.models.profile import profile_config
    from coatnet_edge.models.registry import get_variant, list_variants

    check_image_size(image_size)
    rows = []
    for name in list_variants():
        cfg = get_variant(name).replace(image_size=image_size, num_classes=num_classes)
        prof = profile_config(cfg)
        rows.append([name, "-".join(map(str, cfg.depths)), "-".join(map(str, cfg.dims)),
                     f"{prof.params_m:.2f}", f"{prof.gmacs:.3f}"])
    _print_table(f"CoAtNet variants at {image_size}x{image_size}, {num_classes} classes",
                 ["variant", "blocks S0-S4", "channels S0-S4", "params (M)", "GMACs"], rows)
    click.echo("MACs: conv + matmul multiply-accumulates counted by torch's FlopCounterMode (FLOPs / 2).")


@cli.group()
def data() -> None:
    """Datasets: the built-in synthetic one, and checks of your own image folders."""


@data.command("synth")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="New folder to write.")
@click.option("--seed", default=0, show_default=True)
@click.option("--image-size", default=80, show_default=True, help="Side of the generated images (pixels).")
@click.option("--train-per-class", default=300, show_default=True)
@click.option("--val-per-class", default=100, show_default=True)
def data_synth(out_dir: Path, seed: int, image_size: int, train_per_class: int, val_per_class: int) -> None:
    """Generate the built-in labeled dataset (OUT/train/<class>/*.png, OUT/val/...).

    Deterministic: the same options give the same pixels on every machine (dataset.json records
    a hash of the pixels and one of the PNG bytes, which also depend on Pillow's zlib).
    """
    from coatnet_edge.data.synth import SynthConfig, load_dataset_info, write_dataset
    from coatnet_edge.progress import progress_bar

    cfg = SynthConfig(seed=seed, image_size=image_size, train_per_class=train_per_class,
                      val_per_class=val_per_class)
    with progress_bar("generating") as bar:
        out = write_dataset(out_dir, cfg, progress=bar, workers=min(4, os.cpu_count() or 1))
    info = load_dataset_info(out)
    counts = {split: sum(per_class.values()) for split, per_class in info["counts"].items()}
    click.echo(f"{out}: {len(info['classes'])} classes, "
               + ", ".join(f"{n} {split} images" for split, n in counts.items())
               + f", sha256 {info.get('sha256', '')[:16]}")


@data.command("scan")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--labeled/--unlabeled", default=None, help="Folder layout (default: detect).")
def data_scan(folder: Path, labeled: bool | None) -> None:
    """Check an image folder: decode every file, count classes, list what would be skipped."""
    from coatnet_edge.data.folders import format_skipped, scan_folder
    from coatnet_edge.progress import progress_bar

    with progress_bar("decoding") as bar:
        found = scan_folder(folder, labeled=labeled, progress=bar)
    click.echo(f"{folder}: {found.summary()}")
    for line in format_skipped(found.skipped):
        click.echo(line)


@cli.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--config", type=click.Path(path_type=Path), default=None,
              help="JSON config for a bare .pt/.pth state dict.")
def info(checkpoint: Path, config: Path | None) -> None:
    """Show what a checkpoint holds: variant, classes, input size, preprocessing, size."""
    from coatnet_edge.models.checkpoint import load_checkpoint
    from coatnet_edge.models.profile import profile_model

    model, meta = load_checkpoint(checkpoint, config=config)
    prof = profile_model(model)
    cfg = meta.model
    click.echo(f"{checkpoint}: {cfg.name}, {cfg.num_classes} classes, input {cfg.image_size}x{cfg.image_size}, "
               f"{prof.params_m:.2f} M params, {prof.gmacs:.3f} GMACs")
    click.echo(f"preprocess: {meta.preprocess.to_dict()}")
    if meta.class_names:
        click.echo(f"classes: {', '.join(meta.class_names)}")


def _batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"'{text}' is not a comma-separated list of integers (e.g. 1,8)",
                                 param_hint="--batch") from None
    if not values or min(values) < 1:
        raise click.BadParameter(f"'{text}': batch sizes must be >= 1 (e.g. 1,8)", param_hint="--batch")
    return values


def _timing_options(func):
    """Options shared by `benchmark` and `compare`."""
    options = [
        click.option("--batch", "batch_text", default="1", show_default=True, help="Batch sizes, e.g. 1,8."),
        click.option("--threads", type=int, default=None, help="Runtime threads (default: the runtime's choice)."),
        click.option("--warmup", default=10, show_default=True, help="Untimed runs before timing."),
        click.option("--runs", default=50, show_default=True, help="Timed runs per artifact and batch."),
        click.option("--seconds", type=float, default=None, help="Time for this long instead of --runs."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _echo_report(rows: list[dict], files: dict, title: str) -> None:
    from coatnet_edge.measure.report import TERMINAL_COLUMNS, table_cells

    devices = sorted({r["device"] for r in rows})
    columns = TERMINAL_COLUMNS if len(devices) == 1 else ["device", *TERMINAL_COLUMNS]
    _print_table(f"{title} — {', '.join(devices)}", columns, [table_cells(r, columns) for r in rows])
    for kind, path in files.items():
        click.echo(f"{kind}: {path}")


@cli.command()
@click.argument("artifacts", nargs=-1, required=True)
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Labeled or unlabeled image folder.")
@click.option("--reference", default=None,
              help="FP32 reference: a checkpoint (PyTorch), timm:<name> with --reference-weights, or an FP32 .onnx.")
@click.option("--reference-weights", type=click.Path(path_type=Path), default=None,
              help="Local weights of a timm:<name> reference.")
@click.option("--limit", type=int, default=None, help="Evaluate a seeded, class-stratified sample of this many.")
@click.option("--unlabeled", is_flag=True, help="Treat class subfolders as unlabeled images (agreement only).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Also write the rows here.")
def evaluate(artifacts: tuple[str, ...], data: Path, reference: str | None, reference_weights: Path | None,
             limit: int | None, unlabeled: bool, json_out: Path | None) -> None:
    """Top-1/top-5 of artifacts on a folder and their agreement with the FP32 reference.

    \b
    Example:
      coatnet-edge evaluate art/m.int8.onnx art/m.int8.xml --data val/ --reference m.safetensors
    """
    from coatnet_edge.manifest import write_json_atomic
    from coatnet_edge.measure.evaluate import evaluate as run_evaluate

    rows = run_evaluate(list(artifacts), data=data, reference=reference, limit=limit,
                        labeled=False if unlabeled else None, reference_weights=reference_weights)
    header = ["artifact", "backend", "precision", "top-1", "top-5", "agreement", "cosine", "SQNR dB", "max |diff|"]

    def cell(row: dict, key: str, spec: str) -> str:
        return "-" if row.get(key) is None else format(row[key], spec)

    _print_table(f"evaluation on {rows[0]['images']} images of {data}", header, [
        [Path(r["artifact"]).name, r["backend"], r["precision"], cell(r, "top1", ".4f"), cell(r, "top5", ".4f"),
         cell(r, "vs_reference_top1_agreement", ".4f"), cell(r, "vs_reference_cosine", ".6f"),
         cell(r, "vs_reference_sqnr_db", ".1f"), cell(r, "vs_reference_max_abs", ".2e")] for r in rows])
    if json_out:
        write_json_atomic(json_out, {"schema": "coatnet-edge/evaluation/v1", "data": str(data), "rows": rows})


@cli.command()
@click.argument("artifacts", nargs=-1, required=True)
@_timing_options
@click.option("--out", "out_file", type=click.Path(path_type=Path), default=Path("benchmark.json"),
              show_default=True, help="Results document (JSON, schema coatnet-edge/benchmark/v1).")
def benchmark(artifacts: tuple[str, ...], batch_text: str, threads: int | None, warmup: int, runs: int,
              seconds: float | None, out_file: Path) -> None:
    """Latency (p50/p90/p99/mean/std) and throughput per artifact and batch, with the machine recorded.

    \b
    Example (on a Jetson, then merge with `report`):
      coatnet-edge benchmark m.fp16.engine m.int8.engine --batch 1,8 --out jetson.json
    """
    from coatnet_edge.manifest import write_json_atomic
    from coatnet_edge.measure.benchmark import benchmark as run_benchmark
    from coatnet_edge.measure.benchmark import device_label

    doc = run_benchmark(list(artifacts), batches=_batches(batch_text), threads=threads, warmup=warmup, runs=runs,
                        seconds=seconds)
    write_json_atomic(out_file, doc)
    _print_table(f"latency on {device_label(doc['environment'])} ({warmup} warm-up, "
                 f"{f'{seconds} s' if seconds else f'{runs} runs'} each)",
                 ["artifact", "backend", "precision", "batch", "p50 ms", "p90 ms", "p99 ms", "mean ms", "std ms",
                  "img/s"],
                 [[Path(r["artifact"]).name, r["backend"], r["precision"], str(r["batch"]), f"{r['p50_ms']:.3f}",
                   f"{r['p90_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['mean_ms']:.3f}", f"{r['std_ms']:.3f}",
                   f"{r['throughput_ips']:.1f}"] for r in doc["results"]])
    click.echo(f"results: {out_file}")


@cli.command()
@click.option("--reference", required=True,
              help="FP32 reference (PyTorch): a checkpoint, or timm:<name> with --reference-weights.")
@click.option("--reference-weights", type=click.Path(path_type=Path), default=None,
              help="Local weights of a timm:<name> reference.")
@click.argument("artifacts", nargs=-1, required=True)
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Labeled or unlabeled image folder.")
@click.option("--limit", type=int, default=None, help="Evaluate a seeded, class-stratified sample of this many.")
@click.option("--unlabeled", is_flag=True, help="Treat class subfolders as unlabeled images (agreement only).")
@_timing_options
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Report folder.")
def compare(reference: str, reference_weights: Path | None, artifacts: tuple[str, ...], data: Path,
            limit: int | None, unlabeled: bool,
            batch_text: str, threads: int | None, warmup: int, runs: int, seconds: float | None,
            out_dir: Path) -> None:
    """Evaluate and time the reference and every artifact in one run: table (md/csv/json) + plot (png).

    \b
    Example:
      coatnet-edge compare --reference m.safetensors art/m.fp32.onnx art/m.int8.onnx art/m.int8.xml \\
          --data val/ --out report/
    """
    from coatnet_edge.measure.report import compare as run_compare

    result = run_compare(reference, list(artifacts), data=data, out=out_dir, batches=_batches(batch_text),
                         threads=threads, warmup=warmup, runs=runs, seconds=seconds, limit=limit,
                         labeled=False if unlabeled else None, reference_weights=reference_weights)
    _echo_report(result.rows, result.files, f"comparison vs {reference} (speed-up: reference p50 / p50, same run)")


@cli.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Report folder.")
def report(results: tuple[Path, ...], out_dir: Path) -> None:
    """Merge compare/benchmark results from several devices into one table and one plot."""
    from coatnet_edge.measure.report import report as run_report

    result = run_report(list(results), out=out_dir)
    _echo_report(result.rows, result.files, f"{len(results)} result files")


@cli.command()
@click.option("--model", required=True, help="An exported artifact (.onnx, .xml, .engine) or a checkpoint.")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top-k", default=5, show_default=True)
def predict(model: str, images: tuple[Path, ...], top_k: int) -> None:
    """Top-k labels per image. Runs with only Pillow, NumPy and onnxruntime or openvino installed."""
    from coatnet_edge.measure.predict import predict as run_predict

    for result in run_predict(model, list(images), top_k=top_k):
        click.echo(f"{result['image']}: " + ", ".join(f"{label} {p:.3f}" for label, p in result["top"]))


def _print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title))
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 or name == "note" else "right")
    for row in rows:
        table.add_row(*map(escape, row))  # cells are data: "coatnet-edge[tensorrt]" is not rich markup
    console = Console()
    # piped output (CI logs, `| tee`) has no width: keep every cell whole rather than fold to 80 columns
    console.width = max(100, console.width) if console.is_terminal else 240
    console.print(table)


_default_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our warnings as one `warning: ...` line on stderr (no source-line echo); others unchanged."""
    if filename.startswith(str(Path(__file__).parents[1])):
        click.echo(f"warning: {message}", err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: one-line errors, non-zero exit codes."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    warnings.showwarning = _show_warning
    try:
        cli.main(args=args, prog_name="coatnet-edge", standalone_mode=False)
    except CoatnetEdgeError as err:
        if debug:
            raise
        click.echo(f"error: {err}", err=True)
        return EXIT_USER_ERROR
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.UsageError as err:  # one line, like every other error
        command = err.ctx.command_path if err.ctx else "coatnet-edge"
        click.echo(f"error: {err.format_message()} — fix: see `{command} --help`", err=True)
        return err.exit_code
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Exit as err:
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
