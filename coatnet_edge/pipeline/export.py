"""``coatnet-edge export`` / ``coatnet_edge.export``: one checkpoint (or INT8 ONNX) -> one backend artifact.

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

from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.export.onnx import export_fp32_onnx
from coatnet_edge.export.parity import artifact_parity, parity_images
from coatnet_edge.export.tensorrt import EngineOptions
from coatnet_edge.manifest import ensure_output_dir, read_manifest, sha256_file, write_manifest

# backend -> precisions it builds; the runner that opens its artifact is chosen from the suffix.
BACKENDS: dict[str, tuple[str, ...]] = {
    "onnx": ("fp32", "int8"),
    "openvino": ("fp32", "fp16", "int8"),
    "tensorrt": ("fp32", "fp16", "int8"),
    "torch-tensorrt": ("fp32", "fp16", "int8"),
}


@dataclass
class ExportResult:
    artifact: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    extra_files: list[Path] = field(default_factory=list)


def export(model: str | Path | Any, *, out: str | Path, backend: str = "onnx", precision: str = "fp32",
           calib_dir: str | Path | None = None, batch: int = 1, dynamic_batch: bool = True, max_batch: int = 32,
           device: str = "CPU", workspace_mib: int = 2048, weights: str | Path | None = None,
           num_classes: int | None = None, log: Any = print, **quantize_options: Any) -> ExportResult:
    """Export ``model`` for ``backend`` at ``precision`` into ``out``; returns the artifact and its manifest.

    ``model`` is a checkpoint (or ``builtin:...``), or for ``precision="int8"`` also an INT8 Q/DQ
    ONNX file written by ``quantize``, or ``timm:<name>`` with ``weights``. ``quantize_options`` go to
    ``coatnet_edge.quantize``.
    """
    if backend not in BACKENDS:
        raise CoatnetEdgeError(f"unknown backend '{backend}'", fix=f"use one of: {', '.join(BACKENDS)}")
    if precision not in BACKENDS[backend]:
        raise CoatnetEdgeError(f"--{precision} is not available for --backend {backend}",
                               fix=f"{backend} builds: {', '.join(BACKENDS[backend])}"
                                   + ("; FP16 ONNX runs through --backend openvino/tensorrt --fp16"
                                      if backend == "onnx" else ""))
    if batch < 1 or max_batch < batch:
        raise CoatnetEdgeError(f"--batch {batch} / --max-batch {max_batch}", fix="use 1 <= --batch <= --max-batch")
    if backend == "tensorrt":  # before anything is written: a missing TensorRT is bad input, not a half-export
        from coatnet_edge.export.tensorrt import import_tensorrt

        import_tensorrt()
    elif backend == "torch-tensorrt":
        from coatnet_edge.export.torch_tensorrt import import_torch_tensorrt

        import_torch_tensorrt()
    quantize_options = {**quantize_options, "weights": weights, "num_classes": num_classes}
    source = Path(model) if isinstance(model, str | Path) else Path(type(model).__name__)
    given_onnx = isinstance(model, str | Path) and source.suffix == ".onnx"
    if precision == "int8" and backend == "torch-tensorrt" and (given_onnx or calib_dir is None):
        raise CoatnetEdgeError("torch-tensorrt --int8 calibrates the PyTorch model itself",
                               fix="pass the checkpoint as --model and --calib-dir DIR")
    if precision == "int8" and not given_onnx and calib_dir is None:
        raise CoatnetEdgeError("--int8 needs calibration images or an already-quantized model",
                               fix="add --calib-dir DIR (a few hundred images), or pass an INT8 .onnx as --model")
    if backend == "torch-tensorrt" and precision == "int8":  # Model Optimizer calibrates the torch model
        onnx_path, record, net = _onnx_from_checkpoint(model, out, "fp32", None, dynamic_batch, batch, log,
                                                       {"weights": weights, "num_classes": num_classes})
    elif given_onnx:
        onnx_path, record = _given_onnx(source, precision)
        net = None
    else:
        onnx_path, record, net = _onnx_from_checkpoint(model, out, precision, calib_dir, dynamic_batch, batch, log,
                                                       quantize_options)
    image_size = int(record["input_shape"][-1])
    out = ensure_output_dir(out)
    stem = onnx_path.name.removesuffix(".onnx").removesuffix(".fp32").removesuffix(".int8")
    started = time.perf_counter()
    if backend == "onnx":
        return ExportResult(onnx_path, read_manifest(onnx_path) or {})
    if backend == "openvino":
        from coatnet_edge.export.openvino import export_openvino

        xml = export_openvino(onnx_path, out / f"{stem}.{precision}.xml", precision=precision, device=device)
        parity = artifact_parity(onnx_path, xml, parity_images(record, image_size), precision, backend="openvino",
                                 device=device)
        artifact, extra = xml, [xml.with_suffix(".bin")]
    else:
        options = EngineOptions(precision=precision, min_batch=1 if dynamic_batch else batch, opt_batch=batch,
                                max_batch=max_batch if dynamic_batch else batch, image_size=image_size,
                                workspace_mib=workspace_mib, timing_cache=out / "timing.cache")
        if backend == "tensorrt":
            from coatnet_edge.export.tensorrt import build_engine, write_trtexec_script

            artifact = build_engine(onnx_path, out / f"{stem}.{precision}.engine", options)
            extra = [write_trtexec_script(out / f"{stem}.{precision}.trtexec.sh", onnx_path.name, artifact.name,
                                          options)]
        else:
            from coatnet_edge.export.torch_tensorrt import compile_and_save

            if net is None:
                raise CoatnetEdgeError("torch-tensorrt compiles the PyTorch model, not an ONNX file", path=source,
                                       fix="pass the checkpoint as --model")
            calibration = None
            if precision == "int8":
                from coatnet_edge.data.preprocess import PreprocessConfig
                from coatnet_edge.data.sampling import build_calibration_set

                calibration = build_calibration_set(calib_dir, PreprocessConfig.from_dict(record["preprocess"]),
                                                    size=quantize_options.get("calib_size", 300)).images
            artifact = compile_and_save(net, out / f"{stem}.{precision}.ep", options, calibration)
            extra = []
        parity = {"method": "not run: TensorRT artifacts are checked by `coatnet-edge evaluate` on the GPU"}
    seconds = time.perf_counter() - started
    manifest = {**{k: v for k, v in record.items() if k not in ("schema", "artifact", "sha256", "size_bytes",
                                                                 "versions", "parity")},
                "kind": backend, "precision": precision, "device": device if backend == "openvino" else None,
                "from_onnx": {"path": onnx_path.name, "sha256": sha256_file(onnx_path)},
                "export_seconds": round(seconds, 2), "parity_vs_onnx": parity}
    if backend in ("tensorrt", "torch-tensorrt"):
        manifest["engine"] = {"min_batch": options.min_batch, "opt_batch": options.opt_batch,
                              "max_batch": options.max_batch, "workspace_mib": workspace_mib}
    manifest["files_bytes"] = {p.name: p.stat().st_size for p in (artifact, *extra) if p.is_file()}
    write_manifest(artifact, manifest)
    return ExportResult(artifact, read_manifest(artifact) or manifest, extra)


def _given_onnx(path: Path, precision: str) -> tuple[Path, dict[str, Any]]:
    from coatnet_edge.export.qdq_rules import check_qdq

    if not path.is_file():
        raise CoatnetEdgeError("model file not found", path=path, fix="check the path")
    record = read_manifest(path)
    if record is None or "input_shape" not in record:
        raise CoatnetEdgeError("this ONNX file has no coatnet-edge manifest (input size, preprocessing unknown)",
                               path=path, fix="export it with `coatnet-edge export --backend onnx` first")
    quantized = check_qdq(path).quantized_layers > 0
    if quantized != (precision == "int8"):
        raise CoatnetEdgeError(f"this ONNX file is {'INT8' if quantized else 'float'}, --{precision} was asked for",
                               path=path, fix="pass the matching file (.int8.onnx for --int8)")
    return path, record


def _onnx_from_checkpoint(model: str | Path, out: str | Path, precision: str, calib_dir: Any, dynamic_batch: bool,
                          batch: int, log: Any, quantize_options: dict) -> tuple[Path, dict[str, Any], Any]:
    from coatnet_edge.models.source import load_model

    loaded = load_model(model, weights=quantize_options.get("weights"), num_classes=quantize_options.get("num_classes"))
    if precision == "int8":
        from coatnet_edge.calibration.quantize import quantize

        result = quantize(model, calib_dir=calib_dir, out=out, log=log, **quantize_options)
        log(f"INT8 Q/DQ ONNX: {result.int8_onnx}")
        return result.int8_onnx, result.manifest, loaded.net
    path, record = export_fp32_onnx(loaded, out, batch=batch, dynamic_batch=dynamic_batch, log=log)
    return path, record, loaded.net
