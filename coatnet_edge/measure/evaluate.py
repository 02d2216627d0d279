"""``coatnet-edge evaluate``: accuracy of artifacts on a folder, and agreement with the FP32 reference.

Every artifact runs on the same preprocessed images (the preprocessing its manifest or checkpoint
records); with a reference (a checkpoint run in PyTorch FP32) each row also gets top-1 agreement,
mean logit cosine, SQNR and max-abs error against it. Labeled folders add top-1/top-5; unlabeled
ones give the agreement metrics only. Each accuracy number carries its 95 % interval (``*_ci``,
``[low, high]``): Wilson for top-1 and agreement, an image bootstrap for cosine and SQNR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coatnet_edge.data.folders import scan_folder
from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.data.sampling import ImageSample, Purpose, build_calibration_set
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.metrics import compare_logits, fidelity_intervals
from coatnet_edge.models.source_options import SourceOptions
from coatnet_edge.progress import progress_bar
from coatnet_edge.runtime import load_runner
from coatnet_edge.runtime.artifact import artifact_profile, artifact_size
from coatnet_edge.runtime.base import run_batches
from coatnet_edge.stats import Interval, paired_difference, verdict, wilson

INTERVALS = "intervals are 95 %: Wilson for top-1 and agreement, image bootstrap for cosine and SQNR"
EVALUATION = Purpose("evaluation", "--limit", "--data")  # the evaluate and compare verbs' options


def bounds(interval: Interval, scale: float = 1.0) -> list[float]:
    """``[low, high]`` of an interval (the point value already sits beside it), unrounded so that a cosine near 1
    keeps its digits and the bounds still contain the value; a negative ``scale`` flips the sign of the quantity
    (a gain becomes a drop), so the bounds swap."""
    return sorted([interval.low * scale, interval.high * scale])


def top1_interval(correct: np.ndarray) -> list[float]:
    """Wilson bounds of top-1 from the per-image hits: N images give a proportion, not an exact score."""
    return bounds(wilson(int(np.sum(correct)), len(correct)))


def top1_change(correct: np.ndarray, baseline: np.ndarray) -> tuple[Interval, str]:
    """Paired bootstrap of ``correct - baseline`` hits on the same images, and better/worse/tie from it."""
    difference = paired_difference(correct.astype(np.float64), baseline.astype(np.float64))
    return difference, verdict(difference)


def load_eval_data(data: str | Path, preprocess: PreprocessConfig, class_names: list[str], *,
                   limit: int | None = None, seed: int = 0, labeled: bool | None = None,
                   purpose: Purpose = EVALUATION) -> ImageSample:
    """Preprocessed images (a seeded, class-stratified sample of ``limit`` when given) and labels.

    ``purpose`` names the caller's options in an error (``evaluate``'s ``--limit`` / ``--data`` by default)."""
    size = limit or len(scan_folder(data, labeled=labeled, verify=False))
    sample = build_calibration_set(data, preprocess, size=size, seed=seed, min_images=1, warn_short=False,
                                   purpose=purpose, labeled=labeled)
    if sample.labels is not None and class_names and sample.classes != class_names:
        raise CoatnetEdgeError(
            f"the folder's classes ({len(sample.classes)}: {', '.join(sample.classes[:4])}...) are not the model's "
            f"({len(class_names)}: {', '.join(class_names[:4])}...)", path=data,
            fix="use a folder with the model's class subfolders, or an unlabeled folder (agreement metrics only)")
    return sample


def evaluate(artifacts: list[str | Path], *, data: str | Path, reference: str | Path | None = None,
             limit: int | None = None, batch_size: int = 64, threads: int | None = None,
             labeled: bool | None = None, reference_weights: str | Path | None = None,
             reference_options: SourceOptions | None = None) -> list[dict[str, Any]]:
    """One row per artifact (reference first when given): accuracy and agreement with the reference.

    ``labeled=False`` treats a class-folder tree as unlabeled images (agreement metrics only);
    ``reference_weights`` go with a ``timm:<name>`` reference; ``reference_options`` say how to read it.
    """
    items = ([reference] if reference is not None else []) + [a for a in artifacts if a != reference]
    if not items:
        raise CoatnetEdgeError("nothing to evaluate", fix="name at least one artifact")
    profiles = [artifact_profile(a, reference_weights, reference_options) if a == reference else artifact_profile(a)
                for a in items]
    preprocess, class_names = profiles[0]
    for item, (pre, _) in zip(items[1:], profiles[1:], strict=True):
        if pre.to_dict() != preprocess.to_dict():
            raise CoatnetEdgeError(f"its preprocessing differs from {items[0]}'s", path=item,
                                   fix="compare artifacts of the same model (same input size and normalization)")
    dataset = load_eval_data(data, preprocess, class_names, limit=limit, labeled=labeled)
    rows, ref_logits = [], None
    with progress_bar("evaluate") as bar:
        for done, item in enumerate(items, 1):
            extra = {"weights": reference_weights, "source_options": reference_options} if item == reference else {}
            extra = {k: v for k, v in extra.items() if v is not None}
            runner = load_runner(item, threads=threads, **extra)
            logits = run_batches(runner, dataset.images, batch_size)
            if dataset.labels is not None and logits.shape[1] != len(dataset.classes):
                raise CoatnetEdgeError(f"the folder has {len(dataset.classes)} classes, the model outputs "
                                       f"{logits.shape[1]}", path=data,
                                       fix="use a folder with the model's classes, or --unlabeled (agreement only)")
            row = {"artifact": str(item), **runner.info.to_dict(), "images": len(dataset.images),
                   "size_bytes": artifact_size(item)}
            ref_logits = logits if reference is not None and ref_logits is None else ref_logits
            row.update(_accuracy(logits, dataset.labels, ref_logits))
            rows.append(row)
            bar(done, len(items), Path(str(item)).name)
    return rows


def _accuracy(logits: np.ndarray, labels: np.ndarray | None, ref_logits: np.ndarray | None) -> dict[str, Any]:
    """Top-1/top-5 (labeled) and agreement with the reference (when given), each with its interval; with both,
    the paired top-1 change vs the reference in points (``tie`` unless its interval excludes zero)."""
    row: dict[str, Any] = {}
    if labels is not None:
        correct = logits.argmax(1) == labels
        top5 = np.argsort(-logits, axis=1)[:, :5]
        row.update(top1=float(np.mean(correct)), top5=float(np.mean((top5 == labels[:, None]).any(1))),
                   top1_ci=top1_interval(correct))
    if ref_logits is not None:
        row.update({f"vs_reference_{k}": v for k, v in compare_logits(ref_logits, logits).to_dict().items()})
        row.update(fidelity_intervals(ref_logits, logits))
    if labels is not None and ref_logits is not None:
        change, row["top1_vs_reference"] = top1_change(correct, ref_logits.argmax(1) == labels)
        row["top1_vs_reference_points_ci"] = bounds(change, 100)
    return row


def evaluate_pair(fp32_path: Path, int8_path: Path, data: Any) -> dict[str, Any]:
    """FP32 vs INT8 on the same images, in ONNX Runtime and in OpenVINO (each against its own FP32).

    Each number carries its 95 % interval; ``top1_drop_points_ci`` is the paired bootstrap of the drop
    (FP32 minus INT8 hits per image, in points) and ``int8_vs_fp32_top1`` says better/worse/tie from it.
    """
    result: dict[str, Any] = {"images": len(data), "root": str(data.root), "labeled": data.labels is not None}
    for backend in ("onnxruntime", "openvino"):
        fp32 = run_batches(load_runner(fp32_path, backend=backend), data.images, 100)
        int8 = run_batches(load_runner(int8_path, backend=backend), data.images, 100)
        row = {f"agreement_{k}": v for k, v in compare_logits(fp32, int8).to_dict().items()}
        row.update(fidelity_intervals(fp32, int8))
        if data.labels is not None:
            row.update(_pair_top1(fp32.argmax(1) == data.labels, int8.argmax(1) == data.labels))
        result[backend] = row
    return result


def _pair_top1(fp32_correct: np.ndarray, int8_correct: np.ndarray) -> dict[str, Any]:
    """FP32 and INT8 top-1 with Wilson bounds, and the drop in points with its paired interval."""
    change, said = top1_change(int8_correct, fp32_correct)
    fp32_top1, int8_top1 = float(np.mean(fp32_correct)), float(np.mean(int8_correct))
    return {"fp32_top1": fp32_top1, "int8_top1": int8_top1,
            "top1_drop_points": round(100 * (fp32_top1 - int8_top1), 4),
            "fp32_top1_ci": top1_interval(fp32_correct), "int8_top1_ci": top1_interval(int8_correct),
            "top1_drop_points_ci": bounds(change, -100), "int8_vs_fp32_top1": said}
