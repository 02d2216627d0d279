"""``coatnet-edge run [RECIPE.toml]``: the whole job, one recipe driving every stage.

    data -> (distill) -> onnx FP32 -> (quantize: Q/DQ INT8) -> one export stage per target -> compare

Each stage lives in its own folder under the run folder with its artifacts, their manifests and a
``stage.json``; a stage whose inputs and options are unchanged is reused (see ``stages.py``), so
adding a target to a recipe builds only that target (and re-measures, since speed-ups are ratios
taken in one run). Targets this machine cannot build are listed as "skipped: reason".
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coatnet_edge.atomic import atomic_path, ensure_output_dir, write_json_atomic
from coatnet_edge.calibration.options import QatConfig
from coatnet_edge.calibration.quantize import quantize
from coatnet_edge.data.synth import SynthConfig, write_dataset
from coatnet_edge.environment import library_versions
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.hashing import sha256_file, sha256_text
from coatnet_edge.manifest import manifest_path_for
from coatnet_edge.measure.report import compare, comparison_rows
from coatnet_edge.models.builtin import is_builtin, resolve_source
from coatnet_edge.models.source_options import SourceOptions
from coatnet_edge.pipeline.export import export_model
from coatnet_edge.pipeline.recipe import Recipe, load_recipe, recipe_toml
from coatnet_edge.pipeline.stages import StageResult, folder_fingerprint, run_stage
from coatnet_edge.progress import progress_bar
from coatnet_edge.runtime import registry
from coatnet_edge.runtime.registry import Backend
from coatnet_edge.training.verbs import distill, resolve_splits

Log = Callable[[str], None]
# every target but the FP32 / INT8 graphs themselves (the onnx / quantize stages' outputs) is a stage of its own
EXPORT_TARGETS = tuple(t for t in registry.pipeline_targets() if t not in ("onnx-fp32", "onnx-int8"))
STAGES = ("data", "distill", "onnx", "quantize", *EXPORT_TARGETS, "compare", "all")


@dataclass
class RunResult:
    out_dir: Path
    recipe: Recipe
    rows: list[dict[str, Any]] = field(default_factory=list)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> seconds, cached
    files: dict[str, Path] = field(default_factory=dict)  # report md/csv/json/png
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _Inputs:
    """The resolved data folders and model source, with the identities that key the stages."""

    train: Path
    val: Path | None
    calib: Path
    evaluation: Path
    identity: dict[str, str] = field(default_factory=dict)


def run(recipe: str | Path | dict[str, Any] | Recipe | None = None, *, out: str | Path | None = None,
        force: tuple[str, ...] = (), log: Log = print) -> RunResult:
    """Run ``recipe`` (a TOML path, a dict shaped like it, a ``Recipe``, or None for the built-in one).

    ``out`` overrides the recipe's output folder; ``force`` names stages to redo even if unchanged
    (e.g. ``("compare",)`` to re-measure).
    """
    started = time.perf_counter()
    recipe = load_recipe(recipe)
    out_dir = Path(out) if out is not None else recipe.resolve(recipe.out)
    _preflight(recipe)
    unknown = sorted(set(force) - set(STAGES))
    if unknown:
        raise CoatnetEdgeError(f"--force {unknown[0]}: no such stage", fix=f"use one of: {', '.join(STAGES)}")
    fresh = not out_dir.exists()
    out_dir = ensure_output_dir(out_dir)
    try:
        return _run(recipe, out_dir, force, log, started)
    except BaseException:
        if fresh and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # bad input found mid-run: no empty run folder left behind
        raise


def _run(recipe: Recipe, out_dir: Path, force: tuple[str, ...], log: Log, started: float) -> RunResult:
    result = RunResult(out_dir, recipe)
    versions = _versions()

    def stage(name: str, inputs: dict[str, Any], build: Callable[[Path], dict[str, Any]]) -> StageResult:
        done = run_stage(out_dir, name, {**inputs, "versions": versions, "seed": recipe.seed}, build,
                         force=name in force or "all" in force, log=log)
        result.stages[name] = {"seconds": done.seconds, "cached": done.cached}
        return done

    inputs = _data(recipe, out_dir, stage)
    source, source_options = _source(recipe)
    model, weights, model_id = _model(recipe, inputs, stage)  # weights: how to read the model (None: as it is)
    fp32 = stage("onnx", {"model": model_id}, lambda folder: _export_onnx(model, weights, recipe, folder))
    artifacts: dict[str, StageResult | None] = {"onnx": fp32}
    wanted = recipe.targets.build
    if recipe.quantize.enabled and any(registry.for_target(t)[1].startswith("int8") for t in wanted):
        artifacts["quantize"] = stage("quantize", {"model": model_id, "calib": inputs.identity["calib"],
                                                   **_quantize_identity(recipe, inputs)},
                                      lambda folder: _quantize(model, weights, recipe, inputs, folder, log))
    compared: list[Path] = []
    for target in wanted:
        backend, precision = registry.for_target(target)
        upstream = artifacts["quantize" if precision.startswith("int8") else "onnx"]
        if backend.export_name == "onnx" and precision in ("fp32", "int8"):  # the onnx / quantize stages' own
            compared.append(upstream.outputs["artifact"])
            continue
        reason = backend.unavailable()
        if reason:
            result.skipped.append(_skip(target, backend, precision, reason, upstream, recipe, stage, log))
            continue
        built = stage(target, {"from": upstream.sha256("artifact"), "device": recipe.targets.openvino_device,
                               "max_batch": recipe.targets.tensorrt_max_batch,
                               "openvino_int8": recipe.targets.openvino_int8_candidates,
                               "onnxruntime_int8": recipe.targets.onnxruntime_int8_candidates},
                      lambda folder, up=upstream, b=backend.export_name, p=precision:
                      _export_target(up, b, p, recipe, folder))
        compared.append(built.outputs["artifact"])

    # the teacher's own row, when it is one of ours (a timm teacher runs on its own preprocessing; left out)
    extra = [source] if recipe.distill.enabled and (is_builtin(source) or source.endswith(".safetensors")) else []
    measured = stage("compare", {
        "reference": model_id, "artifacts": [sha256_file(p) for p in compared],
        "teacher": _model_identity(source, source_options) if extra else None,
        "data": inputs.identity["evaluation"], "evaluate": vars(recipe.evaluate), "benchmark": vars(recipe.benchmark),
        "skipped": result.skipped,
    }, lambda folder: _compare(model, weights, [*extra, *map(str, compared)], recipe, inputs, result.skipped, folder))
    result.files = dict(measured.outputs)
    result.rows = _rows(measured.outputs["json"])
    result.seconds = round(time.perf_counter() - started, 1)
    write_json_atomic(out_dir / "run.json", {
        "recipe": recipe.to_dict(), "recipe_file": str(recipe.path) if recipe.path else None,
        "stages": result.stages, "skipped": result.skipped, "seconds": result.seconds,
        "report": {k: str(v) for k, v in result.files.items()}})
    with atomic_path(out_dir / "recipe.toml") as tmp:
        tmp.write_text(recipe_toml(dataclasses.replace(recipe.with_absolute_paths(), out=str(out_dir.resolve()))))
    return result


# --- inputs -------------------------------------------------------------------------------------

def _preflight(recipe: Recipe) -> None:
    """Check the recipe's files and folders before anything is written (bad input leaves nothing)."""
    where = recipe.path or Path("<recipe>")
    source = recipe.source
    if not source.model.startswith(("builtin:", "timm:")) and not recipe.resolve(source.model).exists():
        raise CoatnetEdgeError(f"[source] model file not found: {recipe.resolve(source.model)}", path=where,
                               fix="point [source] model at your checkpoint, or use builtin:teacher")
    for section, key in (("source", "weights"), ("data", "train"), ("data", "val"), ("quantize", "calib_dir"),
                         ("evaluate", "data")):
        value = getattr(getattr(recipe, section), key)
        if value is not None and not recipe.resolve(value).exists():
            raise CoatnetEdgeError(f"[{section}] {key} not found: {recipe.resolve(value)}", path=where,
                                   fix="check the path (relative paths are relative to the recipe file)")
    student = recipe.distill.student
    if recipe.distill.enabled and Path(student).suffix in (".safetensors", ".pt", ".pth") \
            and not recipe.resolve(student).is_file():
        raise CoatnetEdgeError(f"[distill] student checkpoint not found: {recipe.resolve(student)}", path=where,
                               fix="use a variant name (e.g. coatnet_pico), builtin:student, or an existing file")


def _data(recipe: Recipe, out_dir: Path, stage: Callable[..., StageResult]) -> _Inputs:
    """The four folders the run uses, after every override, and each one's identity taken from that folder
    (the built-in dataset's hash for its own splits, a fingerprint of the files for any other folder)."""
    calib_dir, eval_dir = recipe.resolve(recipe.quantize.calib_dir), recipe.resolve(recipe.evaluate.data)
    if recipe.data.train is None:
        done = stage("data", {"builtin_seed": recipe.data.builtin_seed}, lambda folder: _builtin_data(recipe, folder))
        root = done.outputs["dataset"]
        inputs = _Inputs(root / "train", root / "val", calib_dir or root / "train", eval_dir or root / "val")
        builtin: tuple[Path, str] | None = (root, done.sha256("dataset"))
    else:
        train, val = resolve_splits(recipe.resolve(recipe.data.train), recipe.resolve(recipe.data.val))
        if (eval_dir or val) is None:
            raise CoatnetEdgeError("no evaluation images: [data] train has no val/ split", path=recipe.path,
                                   fix="set [data] val or [evaluate] data to a labeled folder")
        inputs, builtin = _Inputs(train, val, calib_dir or train, eval_dir or val), None
    inputs.identity = {name: _folder_identity(getattr(inputs, name), builtin)
                       for name in ("train", "val", "calib", "evaluation")}
    return inputs


def _folder_identity(folder: Path | None, builtin: tuple[Path, str] | None) -> str:
    """What a stage that reads ``folder`` is keyed on: editing any image there re-runs it."""
    if folder is None:
        return "-"
    if builtin and folder.resolve().is_relative_to(builtin[0].resolve()):
        return builtin[1]
    return folder_fingerprint(folder)


def _builtin_data(recipe: Recipe, folder: Path) -> dict[str, Any]:
    with progress_bar("built-in dataset") as bar:
        root = write_dataset(folder / "builtin", SynthConfig(seed=recipe.data.builtin_seed), progress=bar, workers=2)
    return {"outputs": {"dataset": root}}


def _source(recipe: Recipe) -> tuple[str, SourceOptions]:
    """The source model as load_model takes it and how to read it (paths resolved against the recipe)."""
    model, options = recipe.source.model, recipe.source.options
    weights = recipe.resolve(options.weights)
    return (model if model.startswith(("builtin:", "timm:")) else str(recipe.resolve(model)),
            dataclasses.replace(options, weights=str(weights) if weights else None))


def _model(recipe: Recipe, inputs: _Inputs, stage: Callable[..., StageResult]
           ) -> tuple[str, SourceOptions | None, str]:
    """The FP32 model to deploy (the distilled student, or the source), how to read it, and its identity."""
    model, options = _source(recipe)
    identity = _model_identity(model, options)
    if not recipe.distill.enabled:
        return model, options, identity
    student = recipe.distill.student
    student_id = _model_identity(student if not Path(student).suffix else str(recipe.resolve(student)), None)
    done = stage("distill", {"teacher": identity, "student": student_id, "train": inputs.identity["train"],
                             "val": inputs.identity["val"], "options": vars(recipe.distill)},
                 lambda folder: _distill(model, options, recipe, inputs, folder))
    return str(done.outputs["student"]), None, done.sha256("student")


def _model_identity(model: str, options: SourceOptions | None) -> str:
    """The hash of what a model source is made of (files and how they are read)."""
    path = Path(model)
    if is_builtin(model) or path.is_file():
        base = sha256_file(resolve_source(model))
    elif path.is_dir():  # a Hugging Face folder: its config and weights
        base = ":".join(sha256_file(p) for p in sorted(path.iterdir()) if p.is_file())
    else:
        base = model
    if options is None or options == SourceOptions():
        return base
    read = {k: v for k, v in dataclasses.asdict(options).items() if v not in (None, (), False)}
    if read.get("weights"):
        read["weights"] = sha256_file(Path(read["weights"]))
    return f"{base}:{json.dumps(read, sort_keys=True)}"


# --- stages -------------------------------------------------------------------------------------

def _distill(teacher: str, options: SourceOptions, recipe: Recipe, inputs: _Inputs, folder: Path) -> dict[str, Any]:
    d = recipe.distill
    student = d.student if not Path(d.student).suffix else str(recipe.resolve(d.student))
    config = d.train_config(recipe.seed)
    fit = distill(inputs.train, teacher=teacher, teacher_options=options, student=student, val=inputs.val,
                  out=folder / "run", config=config)
    checkpoint = folder / "student.safetensors"  # the last epoch: the validation split is the test set here
    shutil.copy2(fit.checkpoint, checkpoint)
    if manifest_path_for(fit.checkpoint).is_file():
        shutil.copy2(manifest_path_for(fit.checkpoint), manifest_path_for(checkpoint))
    return {"outputs": {"student": checkpoint}, "history": fit.history, "summary": fit.summary}


def _export_onnx(model: str, options: SourceOptions | None, recipe: Recipe, folder: Path) -> dict[str, Any]:
    from coatnet_edge.export.onnx import export_fp32_onnx
    from coatnet_edge.models.source import load_model

    loaded = load_model(model, options)
    path, record = export_fp32_onnx(loaded, folder)
    return {"outputs": {"artifact": path}, "parity": record.get("parity")}


def _quantize_identity(recipe: Recipe, inputs: _Inputs) -> dict[str, Any]:
    # the accuracy budget is fitted on the calibration folder beyond its sample (never on the images compared on)
    return {"options": vars(recipe.quantize), "train": inputs.identity["train"] if recipe.quantize.method == "qat"
            else None}


def _quantize(model: str, options: SourceOptions | None, recipe: Recipe, inputs: _Inputs, folder: Path,
              log: Log) -> dict[str, Any]:
    q = recipe.quantize
    qat_config = QatConfig(epochs=q.qat_epochs, seed=recipe.seed) if q.method == "qat" else None
    done = quantize(model, calib_dir=inputs.calib, out=folder, options=q.options(recipe.seed),
                    train_dir=inputs.train if q.method == "qat" else None, qat_config=qat_config,
                    source_options=options, log=log)
    return {"outputs": {"artifact": done.int8_onnx}, "check_vs_fp32": done.manifest.get("check_vs_fp32"),
            "accuracy_budget": done.manifest.get("accuracy_budget")}


def _skip(target: str, backend: Backend, precision: str, reason: str, upstream: StageResult, recipe: Recipe,
          stage: Callable[..., StageResult], log: Log) -> dict[str, str]:
    """A target this machine cannot build: a 'skipped' row, and its device kit where the backend has one
    (what a Jetson needs to build the engine itself: the ONNX, its manifest and the trtexec line)."""
    if backend.device_kit is None:
        log(f"[{target}] skipped: {reason}")
        return {"backend": backend.name, "precision": precision, "reason": reason}
    write_kit = backend.load_device_kit()
    kit = stage(target, {"from": upstream.sha256("artifact"), "kit": True,
                         "max_batch": recipe.targets.tensorrt_max_batch},
                lambda folder: {"outputs": write_kit(upstream.outputs["artifact"], folder, precision,
                                                     recipe.targets.tensorrt_max_batch)})
    script = kit.outputs["trtexec"]
    log(f"[{target}] skipped: {reason}; the device kit {script} builds the engine on the device")
    return {"backend": backend.name, "precision": precision,
            "reason": f"{reason}; build on the device: {target}/{script.name}"}


def _export_target(upstream: StageResult, backend: str, precision: str, recipe: Recipe,
                   folder: Path) -> dict[str, Any]:
    done = export_model(upstream.outputs["artifact"], out=folder, backend=backend, precision=precision,
                        device=recipe.targets.openvino_device, max_batch=recipe.targets.tensorrt_max_batch,
                        openvino_candidates=recipe.targets.openvino_int8_candidates,
                        onnxruntime_candidates=recipe.targets.onnxruntime_int8_candidates,
                        log=lambda line: None)
    return {"outputs": {"artifact": done.artifact}, "parity_vs_onnx": done.manifest.get("parity_vs_onnx")}


def _compare(reference: str, options: SourceOptions | None, artifacts: list[str], recipe: Recipe, inputs: _Inputs,
             skipped: list[dict[str, str]], folder: Path) -> dict[str, Any]:
    b = recipe.benchmark
    report = compare(reference, artifacts, data=inputs.evaluation, out=folder,
                     batches=b.batches, threads=b.threads, warmup=b.warmup, runs=b.runs, limit=recipe.evaluate.limit,
                     reference_options=options, skipped=skipped)
    return {"outputs": dict(report.files)}


def _rows(compare_json: Path) -> list[dict[str, Any]]:
    return comparison_rows(json.loads(compare_json.read_text()))


def _versions() -> dict[str, str]:
    """Library versions plus a hash of this package's code: a changed toolkit redoes the stages."""
    package = Path(__file__).parents[1]
    code = "\n".join(f"{p.relative_to(package)}\t{sha256_file(p)}" for p in sorted(package.rglob("*.py")))
    return {**{k: v for k, v in library_versions().items() if k not in ("pillow",)},
            "coatnet_edge_code": sha256_text(code)}
