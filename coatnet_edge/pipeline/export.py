"""``coatnet-edge export`` / ``coatnet_edge.export_model``: one checkpoint (or INT8 ONNX) -> one backend artifact.

Every target starts from the same ONNX graph: the FP32 export, or the INT8 Q/DQ file that
``quantize`` writes (run here when ``--int8`` gets a float model and a calibration folder). Each
artifact is checked where it can run (ONNX Runtime, OpenVINO on CPU; TensorRT where installed),
and gets a manifest with its source, options, versions and the parity measured at export.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coatnet_edge.atomic import ensure_output_dir
from coatnet_edge.calibration.options import ONNXRUNTIME_CANDIDATES, OPENVINO_CANDIDATES
from coatnet_edge.calibration.quantize import quantize
from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.data.sampling import build_calibration_set
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.export.job import ExportJob, ExportOutput, carried
from coatnet_edge.export.qdq_rules import check_qdq
from coatnet_edge.hashing import sha256_file
from coatnet_edge.manifest import Manifest, read_manifest, write_manifest
from coatnet_edge.models.source_options import SourceOptions
from coatnet_edge.runtime import registry
from coatnet_edge.runtime.registry import Backend


@dataclass
class ExportResult:
    artifact: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    extra_files: list[Path] = field(default_factory=list)


def export_model(model: str | Path | Any, *, out: str | Path, backend: str = "onnx", precision: str = "fp32",
                 calib_dir: str | Path | None = None, batch: int = 1, dynamic_batch: bool = True, max_batch: int = 32,
                 device: str = "CPU", workspace_mib: int = 2048, weights: str | Path | None = None,
                 num_classes: int | None = None, source_options: SourceOptions | None = None,
                 openvino_candidates: tuple[str, ...] = OPENVINO_CANDIDATES,
                 onnxruntime_candidates: tuple[str, ...] = ONNXRUNTIME_CANDIDATES, log: Any = print,
                 **quantize_options: Any) -> ExportResult:
    """Export ``model`` for ``backend`` at ``precision`` into ``out``; returns the artifact and its manifest.

    ``model`` is a checkpoint (or ``builtin:...``), or for ``precision="int8"`` also an INT8 Q/DQ
    ONNX file written by ``quantize``, or ``timm:<name>`` with ``weights``, a timm training checkpoint or a
    Hugging Face folder (``source_options`` override what it says). ``quantize_options`` go to
    ``coatnet_edge.quantize``. OpenVINO INT8 measures ``openvino_candidates`` (NNCF on the OpenVINO model in two
    graph forms, the Q/DQ graph converted) on held-out images and keeps the first, the plain path, unless another is
    more faithful beyond its interval (``calibration/openvino_int8.py``); ``backend="onnxruntime"`` measures
    ``onnxruntime_candidates`` the same way (``calibration/onnxruntime_int8.py``).
    """
    target = _check_request(backend, precision, batch, max_batch)
    given_onnx = isinstance(model, str | Path) and Path(model).suffix == ".onnx"
    _check_int8_input(target, precision, given_onnx, calib_dir)
    quantize_options = {**quantize_options, "weights": weights, "num_classes": num_classes,
                        "source_options": source_options}
    if given_onnx:
        onnx_path, record, net = *_given_onnx(Path(model), precision), None
    else:  # torch-tensorrt INT8 calibrates the torch model itself (Model Optimizer): it starts from FP32
        graph_precision = "int8" if precision.startswith("int8") and target.export_name != "torch-tensorrt" else "fp32"
        onnx_path, record, net = _onnx_from_checkpoint(model, out, graph_precision, calib_dir, dynamic_batch, batch,
                                                       log, quantize_options)
    prepared = None  # the per-target INT8 selections (calibration/openvino_int8.py, calibration/onnxruntime_int8.py)
    if target.export_name == "openvino" and precision == "int8":
        from coatnet_edge.calibration.openvino_int8 import openvino_int8_for

        prepared = openvino_int8_for(onnx_path, record, tuple(openvino_candidates), log)
    elif target.export_name == "onnxruntime":
        from coatnet_edge.calibration.onnxruntime_int8 import onnxruntime_int8_for

        prepared = onnxruntime_int8_for(onnx_path, record, tuple(onnxruntime_candidates), log)
    job = ExportJob(onnx_path, record, ensure_output_dir(out), precision, device=device, batch=batch,
                    dynamic_batch=dynamic_batch, max_batch=max_batch, workspace_mib=workspace_mib, net=net,
                    calibration=lambda: _calibration_images(calib_dir, record, quantize_options), prepared=prepared)
    started = time.perf_counter()
    done: ExportOutput = target.load_adapter()(job)
    if done.artifact == onnx_path:  # the ONNX backend: the graph is the artifact, its manifest already written
        return ExportResult(onnx_path, read_manifest(onnx_path) or {})
    manifest = _artifact_manifest(job, target, done, time.perf_counter() - started)
    write_manifest(done.artifact, manifest)
    return ExportResult(done.artifact, read_manifest(done.artifact) or manifest, done.extra_files)


def _check_request(backend: str, precision: str, batch: int, max_batch: int) -> Backend:
    """The backend record for a valid request; one-line errors (nothing written) otherwise."""
    target = registry.by_name(backend)
    if target.export_name is None:
        raise CoatnetEdgeError(f"unknown backend '{backend}'", fix=f"use one of: {', '.join(registry.export_names())}")
    if precision not in target.precisions:
        raise CoatnetEdgeError(f"--{precision} is not available for --backend {backend}",
                               fix=f"{backend} builds: {', '.join(target.precisions)}"
                                   + ("; FP16 ONNX runs through --backend openvino/tensorrt --fp16"
                                      if backend == "onnx" else ""))
    if batch < 1 or max_batch < batch:
        raise CoatnetEdgeError(f"--batch {batch} / --max-batch {max_batch}", fix="use 1 <= --batch <= --max-batch")
    if target.needs_gpu:  # before anything is written: a missing TensorRT is bad input, not a half-export
        target.require()
    return target


def _check_int8_input(target: Backend, precision: str, given_onnx: bool, calib_dir: Any) -> None:
    if not precision.startswith("int8"):
        return
    if target.export_name == "torch-tensorrt" and (given_onnx or calib_dir is None):
        raise CoatnetEdgeError("torch-tensorrt --int8 calibrates the PyTorch model itself",
                               fix="pass the checkpoint as --model and --calib-dir DIR")
    if not given_onnx and calib_dir is None:
        raise CoatnetEdgeError("--int8 needs calibration images or an already-quantized model",
                               fix="add --calib-dir DIR (a few hundred images), or pass an INT8 .onnx as --model")


def _artifact_manifest(job: ExportJob, target: Backend, done: ExportOutput, seconds: float) -> dict[str, Any]:
    manifest = {**carried(job.record),
                "kind": target.export_name, "precision": job.precision, "device": done.details.get("device"),
                "from_onnx": {"path": job.onnx_path.name, "sha256": sha256_file(job.onnx_path)},
                "export_seconds": round(seconds, 2), "parity_vs_onnx": done.parity,
                **{k: v for k, v in done.details.items() if k != "device"}}
    manifest["files_bytes"] = {p.name: p.stat().st_size for p in (done.artifact, *done.extra_files) if p.is_file()}
    return manifest


def _calibration_images(calib_dir: Any, record: dict[str, Any], options: dict[str, Any]) -> np.ndarray:
    return build_calibration_set(calib_dir, PreprocessConfig.from_dict(Manifest.from_record(record).preprocess),
                                 size=options.get("calib_size", 300)).images


def _given_onnx(path: Path, precision: str) -> tuple[Path, dict[str, Any]]:
    if not path.is_file():
        raise CoatnetEdgeError("model file not found", path=path, fix="check the path")
    source = Manifest.read(path)
    if source is None or source.input_shape is None:
        raise CoatnetEdgeError("this ONNX file has no coatnet-edge manifest (input size, preprocessing unknown)",
                               path=path, fix="export it with `coatnet-edge export --backend onnx` first")
    quantized = check_qdq(path).quantized_layers > 0
    if quantized != precision.startswith("int8"):
        raise CoatnetEdgeError(f"this ONNX file is {'INT8' if quantized else 'float'}, --{precision} was asked for",
                               path=path, fix="pass the matching file (.int8.onnx for --int8)")
    return path, source.record


def _onnx_from_checkpoint(model: str | Path, out: str | Path, precision: str, calib_dir: Any, dynamic_batch: bool,
                          batch: int, log: Any, quantize_options: dict) -> tuple[Path, dict[str, Any], Any]:
    from coatnet_edge.export.onnx import export_fp32_onnx
    from coatnet_edge.models.source import load_model

    loaded = load_model(model, quantize_options.get("source_options"), weights=quantize_options.get("weights"),
                        num_classes=quantize_options.get("num_classes"))
    if precision == "int8":
        result = quantize(model, calib_dir=calib_dir, out=out, log=log, **quantize_options)
        log(f"INT8 Q/DQ ONNX: {result.int8_onnx}")
        return result.int8_onnx, result.manifest, loaded.net
    path, record = export_fp32_onnx(loaded, out, batch=batch, dynamic_batch=dynamic_batch, log=log)
    return path, record, loaded.net
