"""``coatnet-edge quantize`` / ``coatnet_edge.quantize``: checkpoint + calibration folder -> INT8 Q/DQ ONNX.

Orchestrates the stages (FP32 export, calibration set, NNCF PTQ on the ONNX graph or QAT on the
torch model, optional accuracy budget) and writes the artifacts atomically with a manifest; the
stages themselves live in ``export/`` and ``calibration/``. Nothing is written before every input
(checkpoint, calibration folder, evaluation folder, options) has been checked.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coatnet_edge.atomic import atomic_path, ensure_output_dir
from coatnet_edge.calibration.candidates import candidate_settings, choose_ptq, quantize_candidate
from coatnet_edge.calibration.layer_cost import METHOD as COST_METHOD
from coatnet_edge.calibration.layer_cost import measure_costs, p50_batch1, per_ms_order
from coatnet_edge.calibration.modelopt_ptq import CANDIDATE as MODELOPT
from coatnet_edge.calibration.modelopt_ptq import modelopt_record, require_modelopt
from coatnet_edge.calibration.options import QatConfig, QuantizeOptions
from coatnet_edge.calibration.ptq import PtqSettings
from coatnet_edge.calibration.selection import MIN_SCORE_IMAGES, in_sample_score_set, score_set_of
from coatnet_edge.calibration.sensitivity import (
    fit_budget,
    onnx_logits,
    plot_sensitivity,
    rank_layers,
    write_sensitivity_csv,
)
from coatnet_edge.data.folders import ImageFolder, scan_folder
from coatnet_edge.data.sampling import ImageSample, Purpose, split_calibration_folder
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.export.parity import artifact_parity
from coatnet_edge.export.qdq_rules import float_layers
from coatnet_edge.hashing import sha256_file
from coatnet_edge.manifest import write_manifest
from coatnet_edge.measure.evaluate import evaluate_pair, load_eval_data
from coatnet_edge.models.source_options import SourceOptions
from coatnet_edge.progress import progress_bar

CHECK_IMAGES = 64
EVAL_DIR = Purpose("evaluation", "--eval-size", "--eval-dir")
Log = Callable[[str], None]


@dataclass
class QuantizeResult:
    fp32_onnx: Path
    int8_onnx: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    sensitivity_csv: Path | None = None
    sensitivity_png: Path | None = None


@dataclass
class _Inputs:
    """Everything checked before the first byte is written (bad input leaves nothing behind)."""

    loaded: Any  # models.source.LoadedModel
    settings: PtqSettings
    calib: ImageSample
    evalset: ImageSample | None
    train_folder: ImageFolder | None
    held_out: ImageSample | None  # the calibration folder beyond the sample: candidates' score set, budget images


def quantize(model: str | Path, *, calib_dir: str | Path, out: str | Path, options: QuantizeOptions | None = None,
             eval_dir: str | Path | None = None, train_dir: str | Path | None = None, qat_config: Any = None,
             weights: str | Path | None = None, num_classes: int | None = None,
             source_options: SourceOptions | None = None, log: Log = print, **option_overrides: Any) -> QuantizeResult:
    """Quantize a checkpoint to INT8 Q/DQ ONNX (``OUT/<name>.int8.onnx``) beside its FP32 ONNX.

    ``options`` (or its fields as keywords: ``method``, ``preset``, ``scheme``, ``calib_size``,
    ``max_drop`` ...) say how. ``method="qat"`` fine-tunes on ``train_dir`` (default: ``calib_dir``)
    with distillation from the FP32 model. ``max_drop`` (top-1 points on a labeled ``eval_dir``,
    disagreement with FP32 on an unlabeled one) returns the most sensitive layers to float until it
    holds; ``sensitivity`` writes the per-layer ranking (CSV + PNG) without a budget. ``model`` may be
    ``timm:<name>`` with ``weights`` (and ``num_classes``), a timm training checkpoint or a Hugging Face
    folder; ``source_options`` override what the source says (input size, EMA, preprocessing).
    """
    import onnx

    from coatnet_edge.export.onnx import export_fp32_onnx
    from coatnet_edge.models.source import source_summary

    opts = QuantizeOptions.from_kwargs(**{**(options.to_dict() if options else {}), **option_overrides})
    inputs = _check_inputs(model, calib_dir, eval_dir, train_dir, opts,
                           (source_options or SourceOptions()).merged(weights=weights, num_classes=num_classes))
    budget_images = _budget_images(inputs, opts)
    log(f"model: {source_summary(inputs.loaded)}")
    out = ensure_output_dir(out)  # only once the inputs are known good
    fp32_path, fp32_record = export_fp32_onnx(inputs.loaded, out, log=lambda line: None)
    fp32_model = onnx.load(str(fp32_path))
    started = time.perf_counter()
    qmodel, record = _quantize_graph(inputs, fp32_model, opts, qat_config, out, log)
    seconds = time.perf_counter() - started
    budget_record, ranking_files = None, {}
    if budget_images is not None:
        qmodel, budget_record, ranking_files = _sensitivity_and_budget(
            qmodel, fp32_model, budget_images, out / inputs.loaded.stem, max_drop=opts.max_drop,
            max_float=opts.max_float_layers, log=log, rank_always=opts.sensitivity, order=opts.budget_order)
    int8_path = out / f"{inputs.loaded.stem}.int8.onnx"
    with atomic_path(int8_path) as tmp:
        onnx.save(qmodel, str(tmp))
        onnx.checker.check_model(str(tmp))
    manifest = _manifest(inputs, record, fp32_path, fp32_record, int8_path, qmodel, seconds, opts.score_size)
    if budget_record is not None:
        manifest["accuracy_budget"] = budget_record
    write_manifest(int8_path, manifest)
    return QuantizeResult(fp32_path, int8_path, manifest, ranking_files.get("csv"), ranking_files.get("png"))


def _check_inputs(model: str | Path, calib_dir: str | Path, eval_dir: str | Path | None,
                  train_dir: str | Path | None, opts: QuantizeOptions, source_options: SourceOptions) -> _Inputs:
    from coatnet_edge.models.source import load_model

    loaded = load_model(model, source_options)
    settings = PtqSettings(preset=opts.preset, scheme="hybrid" if opts.scheme == "auto" else opts.scheme,
                           smooth_quant=opts.smooth_quant, ignored_patterns=opts.ignored_patterns,
                           attention_stages=loaded.attention_stages)
    if opts.scheme == "auto":  # the first candidate, unless the PTQ pass measures them all
        settings = candidate_settings(settings, opts.candidates[0])
        if opts.method == "ptq" and MODELOPT in opts.candidates:
            require_modelopt()
    evalset = None
    if eval_dir is not None:
        evalset = load_eval_data(eval_dir, loaded.preprocess, loaded.class_names, limit=opts.eval_size,
                                 seed=opts.seed + 1, purpose=EVAL_DIR)
    budget_on_held_out = (opts.max_drop is not None or opts.sensitivity) and evalset is None
    needs_held_out = _scores_candidates(opts) or budget_on_held_out
    calib, held_out = split_calibration_folder(calib_dir, loaded.preprocess, calib_size=opts.calib_size,
                                               score_size=opts.score_size if needs_held_out else 0, seed=opts.seed,
                                               min_score_images=MIN_SCORE_IMAGES)
    train_folder = scan_folder(train_dir or calib_dir, verify=False) if opts.method == "qat" else None
    return _Inputs(loaded, settings, calib, evalset, train_folder, held_out)


def _budget_images(inputs: _Inputs, opts: QuantizeOptions) -> ImageSample | None:
    """The images the sensitivity ranking and the accuracy budget are fitted on: ``--eval-dir`` when given, else
    the calibration folder's images beyond the calibration sample (never the images a report is made on)."""
    if opts.max_drop is None and not opts.sensitivity:
        return None
    if inputs.evalset is not None:
        return inputs.evalset
    if inputs.held_out is None:
        raise CoatnetEdgeError(f"--max-drop / --sensitivity need images beyond the {len(inputs.calib)} calibration "
                               f"images to measure on, and {inputs.calib.root} has fewer than {MIN_SCORE_IMAGES} more "
                               f"(--score-size {opts.score_size} caps them)",
                               fix="add --eval-dir DIR (labeled: top-1 drop; unlabeled: agreement with FP32), or "
                                   "lower --calib-size")
    return inputs.held_out.head(opts.eval_size)


def _quantize_graph(inputs: _Inputs, fp32_model: Any, opts: QuantizeOptions, qat_config: Any, out: Path,
                    log: Log) -> tuple[Any, dict[str, Any]]:
    """PTQ on the FP32 ONNX graph (NNCF's ONNX backend), or QAT on the torch model; the Q/DQ model + record."""
    record: dict[str, Any] = {"method": opts.method, "engine": "nncf-onnx" if opts.method == "ptq" else "nncf-torch",
                              **inputs.settings.to_dict()}
    if _scores_candidates(opts):
        # the settings before the first candidate's were applied
        base = dataclasses.replace(inputs.settings, smooth_quant=opts.smooth_quant, channel_shift=False)
        ptq, selection = choose_ptq(fp32_model, inputs.calib, base, opts.candidates,
                                    score_set_of(inputs.held_out, fp32_model) if inputs.held_out
                                    else in_sample_score_set(inputs.calib, fp32_model), log)
        record.update(ptq.settings.to_dict(), selection=selection, ignored_nodes=len(ptq.ignored),
                      centred_activations=len(ptq.shifted))
        return ptq.model, _modelopt_made(record, selection["chosen"])
    if opts.method == "ptq":
        candidate = opts.candidates[0] if opts.scheme == "auto" else inputs.settings.scheme
        ptq = quantize_candidate(fp32_model, inputs.calib, inputs.settings, candidate)
        record.update(ignored_nodes=len(ptq.ignored), centred_activations=len(ptq.shifted))
        return ptq.model, _modelopt_made(record, candidate)
    from coatnet_edge.calibration.qat import qat

    config = qat_config or QatConfig(seed=opts.seed)
    result = qat(inputs.loaded.net, inputs.calib, inputs.train_folder, settings=inputs.settings, config=config,
                 out=out / f"{inputs.loaded.stem}.qat", log=log)
    record.update(ignored_nodes=len(result.ignored), qat=config.to_dict(), history=result.history,
                  checkpoint=str(result.checkpoint) if result.checkpoint else None)
    return result.model, record


def _scores_candidates(opts: QuantizeOptions) -> bool:
    """PTQ with ``--scheme auto`` and more than one candidate: the only case that needs a score set."""
    return opts.method == "ptq" and opts.scheme == "auto" and len(opts.candidates) > 1


def _modelopt_made(record: dict[str, Any], chosen: str) -> dict[str, Any]:
    """The record of a graph Model Optimizer made: its engine and settings, no NNCF scheme."""
    if chosen == MODELOPT:
        record.update(modelopt_record(), scheme=MODELOPT, smooth_quant=False)
    return record


def _manifest(inputs: _Inputs, record: dict[str, Any], fp32_path: Path, fp32_record: dict[str, Any], int8_path: Path,
              qmodel: Any, seconds: float, score_size: int) -> dict[str, Any]:
    from coatnet_edge.export.onnx import TENSORRT_GRAPH_ROLE

    loaded, calib = inputs.loaded, inputs.calib
    manifest = {
        "kind": "onnx", "precision": "int8", "quantization": record, "role": TENSORRT_GRAPH_ROLE,
        "source": fp32_record["source"], "variant": loaded.variant,
        "preprocess": loaded.preprocess.to_dict(), "class_names": loaded.class_names,
        "input_shape": fp32_record["input_shape"], "opset": fp32_record["opset"],
        "calibration": {**calib.describe(), "seconds": round(seconds, 2), "score_size": score_size},
        "held_out": None if inputs.held_out is None else {
            "root": str(inputs.held_out.root), "size": len(inputs.held_out), "sha256": inputs.held_out.sha256,
            "used_for": "candidate scores (with a corrupted copy); the accuracy budget when no --eval-dir"},
        # what the OpenVINO target re-quantizes from when it measures NNCF on the OpenVINO model
        "fp32_onnx": {"path": fp32_path.name, "sha256": sha256_file(fp32_path)},
        "float_layers": float_layers(qmodel),
        "check_vs_fp32": artifact_parity(fp32_path, int8_path, (calib.images[:CHECK_IMAGES], (
            f"first {min(CHECK_IMAGES, len(calib))} calibration images")), "int8", backend="onnxruntime", device="CPU"),
    }
    if inputs.evalset is not None:
        manifest["evaluation"] = evaluate_pair(fp32_path, int8_path, inputs.evalset)
    return manifest


def _sensitivity_and_budget(qmodel: Any, fp32_model: Any, data: ImageSample, stem: Path, *,
                            max_drop: float | None, max_float: int, log: Log,
                            rank_always: bool = True, order: str = "sensitivity") -> tuple[Any, dict | None, dict]:
    reference = onnx_logits(fp32_model, data.images)
    if max_drop is not None and not rank_always:  # the per-layer ranking costs minutes: only when needed
        budget = fit_budget(qmodel, fp32_model, [], data.images, reference, max_drop=max_drop, labels=data.labels)
        if budget.met:
            log(f"accuracy budget {max_drop} points ({budget.metric}, {len(data)} images from {data.root}): "
                f"{budget.before:.2f}, met with every layer in INT8 (no per-layer ranking needed)")
            return qmodel, {"max_drop": max_drop, "metric": budget.metric, "images": len(data),
                            **_images_record(data), "met": True,
                            "before": budget.before, "after": budget.after, "float_nodes": [], "steps": []}, {}
    with progress_bar("INT8 sensitivity per layer") as bar:
        ranking = rank_layers(qmodel, fp32_model, data.images, reference, progress=bar)
    files = {"csv": write_sensitivity_csv(ranking, stem.with_suffix(".sensitivity.csv")),
             "png": plot_sensitivity(ranking, stem.with_suffix(".sensitivity.png"),
                                     title=f"INT8 sensitivity ({stem.name}, {len(data)} images)")}
    log(f"sensitivity ranking of {len(ranking)} layers: {files['csv']} and {files['png']}")
    if max_drop is None:
        return qmodel, None, files
    order_record = None
    if order == "per-ms":
        ranking, order_record = _per_ms_ranking(qmodel, fp32_model, ranking, data.images, max_float, log)
    with progress_bar("accuracy budget") as bar:
        budget = fit_budget(qmodel, fp32_model, ranking, data.images, reference, max_drop=max_drop, labels=data.labels,
                            max_float=max_float, progress=bar)
    verdict = "met" if budget.met else f"NOT met (stopped at --max-float-layers {max_float})"
    log(f"accuracy budget {max_drop} points ({budget.metric}, {len(data)} images from {data.root}): "
        f"{budget.before:.2f} -> {budget.after:.2f} with {len(budget.float_nodes)} layer(s) returned to float: "
        f"{verdict}")
    for node in budget.float_nodes:
        log(f"  float: {node}")
    record = {"max_drop": max_drop, "metric": budget.metric, "images": len(data), **_images_record(data),
              "met": budget.met,
              "before": budget.before, "after": budget.after, "float_nodes": budget.float_nodes,
              "steps": budget.steps, "order": order_record or {"by": "sensitivity"}}
    if order_record is not None:
        order_record["int8_after_ms"] = round(p50_batch1(budget.model, data.images), 4)
        log(f"  batch-1 p50 in OpenVINO: {order_record['int8_ms']:.3f} ms all-INT8 -> "
            f"{order_record['int8_after_ms']:.3f} ms with these in float")
    return budget.model, record, files


def _per_ms_ranking(qmodel: Any, fp32_model: Any, ranking: list, images: np.ndarray, max_float: int,
                    log: Log) -> tuple[list, dict[str, Any]]:
    """The budget's candidates (twice --max-float-layers, most sensitive first) reordered by SQNR recovered per
    millisecond, each layer's float cost timed in OpenVINO; the layers beyond them keep their order."""
    pool = [row for row in ranking if row.sqnr_gain_db > 0][:2 * max_float]
    with progress_bar("float cost per layer") as bar:
        base, costs = measure_costs(qmodel, fp32_model, pool, images, progress=bar)
    ordered = per_ms_order(pool, costs)
    by_node = {c.node: c for c in costs}
    rest = [row for row in ranking if row not in pool]
    log(f"budget order per ms: {len(pool)} candidate layers timed in float ({COST_METHOD}); INT8 p50 {base:.3f} ms")
    return ordered + rest, {"by": "per-ms", "method": COST_METHOD, "int8_ms": round(base, 4),
                            "costs": [dataclasses.asdict(by_node[row.node]) for row in ordered]}


def _images_record(data: ImageSample) -> dict[str, Any]:
    """Which images a step measured on: enough to prove they are not the ones a report is made on."""
    return {"images_root": str(data.root), "images_sha256": data.sha256,
            "image_paths": [path.relative_to(data.root).as_posix() for path in data.paths]}
