"""``coatnet-edge run``: the end-to-end job on the built-in defaults.

Today it is the foundation slice: built-in data -> the built-in trained CoAtNet (or any
checkpoint) -> ONNX -> ONNX Runtime and OpenVINO, each compared with PyTorch on the same
validation images. Later stages (distillation, INT8, TensorRT, the latency report) plug in here.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coatnet_edge.data.preprocess import preprocess_batch
from coatnet_edge.manifest import ensure_output_dir, sha256_file, write_json_atomic, write_manifest
from coatnet_edge.metrics import compare_logits
from coatnet_edge.progress import progress_bar


@dataclass
class RunResult:
    out_dir: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


def run(out_dir: str | Path = "runs/default", *, model: str | Path = "builtin:student",
        eval_images: int = 240, threads: int | None = None) -> RunResult:
    """Run the pipeline on built-in data and return per-backend agreement with PyTorch."""
    import torch

    from coatnet_edge.data.folders import scan_labeled_folder
    from coatnet_edge.data.synth import write_dataset
    from coatnet_edge.export.onnx import export_onnx
    from coatnet_edge.models.builtin import resolve_source
    from coatnet_edge.models.checkpoint import load_checkpoint
    from coatnet_edge.runtime import load_runner

    out = ensure_output_dir(out_dir)
    result = RunResult(out)

    with _stage(result.stage_seconds, "data"), progress_bar("built-in dataset") as bar:
        data_dir = write_dataset(out / "data", progress=bar, workers=min(4, os.cpu_count() or 1))
    with _stage(result.stage_seconds, "model"):
        ckpt = resolve_source(model)
        net, info = load_checkpoint(ckpt)
    val = scan_labeled_folder(data_dir / "val", verify=False)
    step = max(1, len(val) // eval_images)
    samples = val.samples[::step][:eval_images]
    pre = info.preprocess
    images = preprocess_batch([s.path for s in samples], pre)
    labels = np.array([s.label for s in samples])
    name = ckpt.stem
    with _stage(result.stage_seconds, "export_onnx"):
        onnx_path = export_onnx(net, out / "onnx" / f"{name}.onnx", image_size=pre.image_size)

    with torch.no_grad():
        reference = net(torch.from_numpy(images)).numpy()
    result.rows.append(_row("pytorch", "fp32", reference, reference, labels))
    for backend in ("onnxruntime", "openvino"):
        with _stage(result.stage_seconds, f"run_{backend}"):
            logits = load_runner(onnx_path, backend=backend, threads=threads).run(images)
        result.rows.append(_row(backend, "fp32", reference, logits, labels))

    write_manifest(onnx_path, {
        "kind": "onnx", "precision": "fp32", "source": {"checkpoint": ckpt.name, "sha256": sha256_file(ckpt)},
        "variant": net.cfg.name, "preprocess": pre.to_dict(),
        "input_shape": ["batch", 3, pre.image_size, pre.image_size],
        "parity": {r["backend"]: {k: r[k] for k in ("top1_agreement", "cosine", "max_abs")} for r in result.rows},
    })
    result.files = {"dataset": str(data_dir), "checkpoint": str(ckpt), "onnx": str(onnx_path)}
    write_json_atomic(out / "run.json", {"rows": result.rows, "stage_seconds": result.stage_seconds,
                                         "files": result.files, "eval_images": len(samples)})
    return result


def _row(backend: str, precision: str, reference: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> dict:
    agreement = compare_logits(reference, logits)
    return {"backend": backend, "precision": precision, "images": len(labels),
            "top1": float(np.mean(logits.argmax(1) == labels)), **agreement.to_dict()}


@contextlib.contextmanager
def _stage(sink: dict[str, float], name: str) -> Iterator[None]:
    """Wall time of one stage, recorded even when the stage fails."""
    start = time.perf_counter()
    try:
        yield
    finally:
        sink[name] = round(time.perf_counter() - start, 3)
