"""``coatnet-edge evaluate``: accuracy of artifacts on a folder, and agreement with the FP32 reference.

Every artifact runs on the same preprocessed images (the preprocessing its manifest or checkpoint
records); with a reference (a checkpoint run in PyTorch FP32) each row also gets top-1 agreement,
mean logit cosine, SQNR and max-abs error against it. Labeled folders add top-1/top-5; unlabeled
ones give the agreement metrics only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coatnet_edge.data.folders import scan_folder
from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.data.sampling import ImageSample, build_calibration_set
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.metrics import compare_logits
from coatnet_edge.models.source_options import SourceOptions
from coatnet_edge.progress import progress_bar
from coatnet_edge.runtime import load_runner
from coatnet_edge.runtime.artifact import artifact_profile, artifact_size
from coatnet_edge.runtime.base import run_batches


def load_eval_data(data: str | Path, preprocess: PreprocessConfig, class_names: list[str], *,
                   limit: int | None = None, seed: int = 0, labeled: bool | None = None) -> ImageSample:
    """Preprocessed images (a seeded, class-stratified sample of ``limit`` when given) and labels."""
    size = limit or len(scan_folder(data, labeled=labeled, verify=False))
    sample = build_calibration_set(data, preprocess, size=size, seed=seed, min_images=1, warn_short=False,
                                   purpose="evaluation", labeled=labeled)
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
            if dataset.labels is not None:
                row["top1"] = float(np.mean(logits.argmax(1) == dataset.labels))
                top5 = np.argsort(-logits, axis=1)[:, :5]
                row["top5"] = float(np.mean((top5 == dataset.labels[:, None]).any(1)))
            if reference is not None:
                ref_logits = logits if ref_logits is None else ref_logits
                row.update({f"vs_reference_{k}": v for k, v in compare_logits(ref_logits, logits).to_dict().items()})
            rows.append(row)
            bar(done, len(items), Path(str(item)).name)
    return rows


def evaluate_pair(fp32_path: Path, int8_path: Path, data: Any) -> dict[str, Any]:
    """FP32 vs INT8 on the same images, in ONNX Runtime and in OpenVINO (each against its own FP32)."""
    result: dict[str, Any] = {"images": len(data), "root": str(data.root), "labeled": data.labels is not None}
    for backend in ("onnxruntime", "openvino"):
        fp32 = run_batches(load_runner(fp32_path, backend=backend), data.images, 100)
        int8 = run_batches(load_runner(int8_path, backend=backend), data.images, 100)
        row = {f"agreement_{k}": v for k, v in compare_logits(fp32, int8).to_dict().items()}
        if data.labels is not None:
            row["fp32_top1"] = float(np.mean(fp32.argmax(1) == data.labels))
            row["int8_top1"] = float(np.mean(int8.argmax(1) == data.labels))
            row["top1_drop_points"] = round(100 * (row["fp32_top1"] - row["int8_top1"]), 4)
        result[backend] = row
    return result
