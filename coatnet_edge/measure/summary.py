"""What the verbs report on a terminal: one-line summaries and tables, built from the results and
manifests the library returns. Every cell is formatted here, once; the CLI draws the ``Table`` and
echoes the lines without reading a result's keys itself.

Also the evaluation results document (``evaluate --json``), so its schema has one definition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coatnet_edge.measure.benchmark import device_label
from coatnet_edge.measure.evaluate import INTERVALS
from coatnet_edge.measure.report import TERMINAL_COLUMNS, has_intervals, table_cells

EVALUATION_SCHEMA = "coatnet-edge/evaluation/v1"
MACS_NOTE = "MACs: conv + matmul multiply-accumulates counted by torch's FlopCounterMode (FLOPs / 2)."

# (column, result key, format) of the accuracy / latency / INT8-check tables
_EVALUATION = (("top-1", "top1", ".4f"), ("top-5", "top5", ".4f"),
               ("agreement", "vs_reference_top1_agreement", ".4f"), ("cosine", "vs_reference_cosine", ".5f"),
               ("SQNR dB", "vs_reference_sqnr_db", ".1f"), ("max |diff|", "vs_reference_max_abs", ".2e"))
_LATENCY = (("batch", "batch", ""), ("p50 ms", "p50_ms", ".3f"), ("p90 ms", "p90_ms", ".3f"),
            ("p99 ms", "p99_ms", ".3f"), ("mean ms", "mean_ms", ".3f"), ("std ms", "std_ms", ".3f"),
            ("img/s", "throughput_ips", ".1f"))
_INT8_VS_FP32 = (("FP32 top-1", "fp32_top1", ".4f"), ("INT8 top-1", "int8_top1", ".4f"),
                 ("drop (pts)", "top1_drop_points", ".2f"), ("top-1 agreement", "agreement_top1_agreement", ".4f"),
                 ("cosine", "agreement_cosine", ".5f"), ("SQNR dB", "agreement_sqnr_db", ".1f"))
_PARITY_KEYS = ("parity_vs_pytorch", "parity_vs_onnx")
# result key -> (its ``[low, high]`` key, format of the bounds): cells shown as ``value [low, high]``
_INTERVAL_OF = {"top1": ("top1_ci", ".3f"), "vs_reference_top1_agreement": ("agreement_ci", ".3f"),
                "fp32_top1": ("fp32_top1_ci", ".3f"), "int8_top1": ("int8_top1_ci", ".3f"),
                "top1_drop_points": ("top1_drop_points_ci", ".2f"), "agreement_top1_agreement": ("agreement_ci", ".3f"),
                "vs_reference_cosine": ("cosine_ci", ".5f"), "vs_reference_sqnr_db": ("sqnr_db_ci", ".1f"),
                "agreement_cosine": ("cosine_ci", ".5f"), "agreement_sqnr_db": ("sqnr_db_ci", ".1f"),
                "cosine": ("cosine_ci", ".6f"), "top1_agreement": ("agreement_ci", ".3f")}  # an export's parity


@dataclass
class Table:
    """A titled table of text cells; the first column names the row."""

    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)


def _cell(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _measured(row: Mapping[str, Any], key: str, spec: str) -> str:
    """A result's cell, followed by its 95 % interval where the row carries one (value first: still parseable)."""
    text = _cell(row.get(key), spec)
    ci_key, ci_spec = _INTERVAL_OF.get(key, ("", ""))
    bounds = row.get(ci_key) if ci_key else None
    if row.get(key) is None or not bounds:
        return text
    return f"{text} [{bounds[0]:{ci_spec}}, {bounds[1]:{ci_spec}}]"


def _titled(title: str, rows: Iterable[Mapping[str, Any]], columns: tuple, more: str = "") -> str:
    """The title, saying what the intervals are where any row of the (column, key, format) table shows one."""
    shown = any(row.get(_INTERVAL_OF[key][0]) for row in rows for _, key, _ in columns if key in _INTERVAL_OF)
    return f"{title}; {INTERVALS}{more}" if shown else title


def _artifact_cells(row: Mapping[str, Any]) -> list[str]:
    return [Path(row["artifact"]).name, row["backend"], row["precision"]]


def report_table(rows: list[dict[str, Any]], title: str) -> Table:
    """Rows of ``compare`` / ``report`` / ``run``; a device column only when several devices are merged."""
    devices = sorted({r["device"] for r in rows})
    columns = TERMINAL_COLUMNS if len(devices) == 1 else ["device", *TERMINAL_COLUMNS]
    title = f"{title} — {', '.join(devices)}"
    return Table(f"{title}; {INTERVALS}" if has_intervals(rows) else title, columns,
                 [table_cells(r, columns) for r in rows])


def evaluation_table(rows: list[dict[str, Any]], data: str | Path) -> Table:
    """The rows of ``evaluate``: accuracy, and agreement with the reference where there is one."""
    return Table(_titled(f"evaluation on {rows[0]['images']} images of {data}", rows, _EVALUATION),
                 ["artifact", "backend", "precision", *(name for name, _, _ in _EVALUATION)],
                 [[*_artifact_cells(r), *(_measured(r, key, spec) for _, key, spec in _EVALUATION)] for r in rows])


def evaluation_document(rows: list[dict[str, Any]], data: str | Path) -> dict[str, Any]:
    """The ``coatnet-edge/evaluation/v1`` document ``evaluate --json`` writes."""
    return {"schema": EVALUATION_SCHEMA, "data": str(data), "rows": rows}


def benchmark_table(doc: dict[str, Any]) -> Table:
    """The results of a ``coatnet-edge/benchmark/v1`` document, titled with its machine and method."""
    method = doc["method"]
    each = f"{method['seconds']} s" if method["seconds"] else f"{method['runs']} runs"
    return Table(f"latency on {device_label(doc['environment'])} ({method['warmup']} warm-up, {each} each)",
                 ["artifact", "backend", "precision", *(name for name, _, _ in _LATENCY)],
                 [[*_artifact_cells(r), *(_cell(r[key], spec) for _, key, spec in _LATENCY)]
                  for r in doc["results"]])


def quantize_lines(int8_onnx: str | Path, manifest: Mapping[str, Any]) -> list[str]:
    """What ``quantize`` did (method, calibration, layers left in float) and its check against FP32."""
    calibration, check = manifest["calibration"], manifest["check_vs_fp32"]
    return [f"{int8_onnx}: {manifest['quantization']['method'].upper()}, {calibration['size']} calibration images, "
            f"{calibration['seconds']:.1f} s; {len(manifest['float_layers'])} Conv/MatMul left in float",
            f"vs FP32 ({check['method']}): top-1 agreement {check['top1_agreement']:.4f}, "
            f"cosine {check['cosine']:.5f}, SQNR {check['sqnr_db']:.1f} dB"]


def int8_evaluation_table(manifest: Mapping[str, Any]) -> Table | None:
    """INT8 vs FP32 per runtime on the evaluation images (None when ``quantize`` had none)."""
    evaluation = manifest.get("evaluation")
    if not evaluation:
        return None
    per_runtime = {name: r for name, r in evaluation.items() if isinstance(r, Mapping)}
    title = f"INT8 vs FP32 on {evaluation['images']} images of {evaluation['root']}"
    return Table(_titled(title, per_runtime.values(), _INT8_VS_FP32, ", paired for the drop"),
                 ["runtime", *(name for name, _, _ in _INT8_VS_FP32)],
                 [[name, *(_measured(r, key, spec) for _, key, spec in _INT8_VS_FP32)]
                  for name, r in per_runtime.items()])


def export_lines(artifact: str | Path, backend: str, precision: str, manifest: Mapping[str, Any],
                 extra_files: Iterable[str | Path] = ()) -> list[str]:
    """The exported artifact, its size, the parity measured at export, and any other file written."""
    lines = [f"{artifact} ({backend}, {precision}, {manifest.get('size_bytes', 0) / 1e6:.2f} MB)"]
    for key in _PARITY_KEYS:
        parity = manifest.get(key)
        if parity and "max_abs" in parity:
            lines.append(f"parity ({parity['method']}): max |diff| {parity['max_abs']:.2e}, cosine "
                         f"{_measured(parity, 'cosine', '.6f')}, top-1 agreement "
                         f"{_measured(parity, 'top1_agreement', '.4f')}")
    return lines + [f"also written: {path}" for path in extra_files]


def stage_times_line(stages: Mapping[str, Mapping[str, Any]], seconds: float) -> str:
    """Wall time of each pipeline stage (reused ones marked) and of the whole run."""
    return ("stage wall time (s): "
            + ", ".join(f"{name} {info['seconds']:.1f}{' (reused)' if info['cached'] else ''}"
                        for name, info in stages.items())
            + f"; total {seconds:.1f}")


def prediction_line(result: Mapping[str, Any]) -> str:
    """``image: label p, label p, ...`` for one ``predict`` result."""
    return f"{result['image']}: " + ", ".join(f"{label} {p:.3f}" for label, p in result["top"])


def teacher_student_table(rows: list[list[str]]) -> Table:
    """The rows ``training.verbs.report_pair`` returns: (model, variant, params M, GMACs, val top-1)."""
    return Table("teacher vs student", ["model", "variant", "params (M)", "GMACs", "val top-1"], rows)


def variants_table(profiles: Iterable[tuple[Any, Any]], image_size: int, num_classes: int) -> Table:
    """(config, profile) pairs of the registered variants -> blocks, channels, params and GMACs."""
    return Table(f"CoAtNet variants at {image_size}x{image_size}, {num_classes} classes",
                 ["variant", "blocks S0-S4", "channels S0-S4", "params (M)", "GMACs"],
                 [[cfg.name, "-".join(map(str, cfg.depths)), "-".join(map(str, cfg.dims)), f"{prof.params_m:.2f}",
                   f"{prof.gmacs:.3f}"] for cfg, prof in profiles])


def source_lines(path: str | Path, loaded: Any, profile: Any) -> list[str]:
    """What a model source holds (a ``LoadedModel``), where each fact was read, and its measured size."""
    pre, record = loaded.preprocess, loaded.provenance
    classes = record.get("num_classes") or (len(loaded.class_names) or None)
    lines = [f"{path}: {loaded.variant}, {classes or '?'} classes, input {pre.channels}x{pre.image_size}x"
             f"{pre.image_size}, {profile.params_m:.2f} M params, {profile.gmacs:.3f} GMACs"]
    if record.get("format"):
        lines.append(f"format: {record['format']}")
    for fact in ("architecture", "weights_key", "num_classes", "image_size", "channels"):
        if record.get(fact) is not None:
            origin = record.get(f"{fact}_from")
            lines.append(f"{fact.replace('_key', '')}: {record[fact]}" + (f" (from {origin})" if origin else ""))
    origin = record.get("preprocess_from")
    for key, value in pre.to_dict().items():
        where = record.get(f"{key}_from") if key in ("image_size", "channels") else \
            origin.get(key) if isinstance(origin, dict) else origin
        lines.append(f"preprocess.{key}: {value}" + (f" (from {where})" if where else ""))
    if loaded.class_names:
        lines.append(f"classes: {', '.join(loaded.class_names)}")
    return lines


def dataset_line(root: str | Path, info: Mapping[str, Any]) -> str:
    """One line on a generated dataset (its ``dataset.json``): classes, images per split, pixel hash."""
    counts = {split: sum(per_class.values()) for split, per_class in info["counts"].items()}
    images = ", ".join(f"{n} {split} images" for split, n in counts.items())
    return f"{root}: {len(info['classes'])} classes, {images}, sha256 {info.get('sha256', '')[:16]}"
