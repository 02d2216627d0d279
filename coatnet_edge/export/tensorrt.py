"""TensorRT engine from an ONNX file through TensorRT's Python API (builder + ONNX parser).

FP16: the FP32 ONNX with the FP16 builder flag. INT8: the toolkit's Q/DQ ONNX (explicit
quantization: TensorRT takes the scales from the graph, no calibrator), with FP16 also enabled for
the layers left in float. One optimization profile covers the batch range; a timing cache file
makes rebuilds fast. The equivalent ``trtexec`` command is written next to the engine, for Jetson
users who build on the device (engines are specific to a GPU and TensorRT version).

TensorRT is imported lazily: on machines without it, ``MissingDependencyError`` says how to get it.
"""

from __future__ import annotations

import platform
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from coatnet_edge.atomic import atomic_path
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.export.job import ExportJob, ExportOutput
from coatnet_edge.manifest import Manifest, manifest_path_for
from coatnet_edge.runtime.tensorrt import import_tensorrt

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class EngineOptions:
    precision: str = "fp16"
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1
    image_size: int = 224
    input_name: str = "images"
    workspace_mib: int = 2048
    timing_cache: Path | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise CoatnetEdgeError(f"unknown TensorRT precision '{self.precision}'",
                                   fix=f"use one of: {', '.join(PRECISIONS)}")
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise CoatnetEdgeError(f"batch range {self.min_batch}/{self.opt_batch}/{self.max_batch} is not "
                                   f"min <= opt <= max", fix="e.g. --batch 8 or --dynamic-batch")

    def shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, 3, self.image_size, self.image_size)


def build_engine(onnx_path: str | Path, engine_path: str | Path, options: EngineOptions) -> Path:
    """Parse ``onnx_path``, build a serialized engine, write it (atomically) and return its path."""
    trt = import_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        first = parser.get_error(0).desc() if parser.num_errors else "unknown error"
        raise CoatnetEdgeError(f"TensorRT's ONNX parser rejects it ({first})", path=onnx_path,
                               fix="check it with `coatnet-edge export --backend onnx` and the Q/DQ validator")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    if options.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if options.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # scales come from the Q/DQ nodes (explicit quantization)
    profile = builder.create_optimization_profile()
    profile.set_shape(options.input_name, options.shape(options.min_batch), options.shape(options.opt_batch),
                      options.shape(options.max_batch))
    config.add_optimization_profile(profile)
    cache_bytes = options.timing_cache.read_bytes() if options.timing_cache and options.timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise CoatnetEdgeError("TensorRT could not build an engine (see its log above)", path=onnx_path,
                               fix="raise --workspace-mib, or try --fp16 without --int8")
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(bytes(serialized))
    if options.timing_cache is not None:
        with atomic_path(options.timing_cache) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    return engine_path


def trtexec_command(onnx_name: str, engine_name: str, options: EngineOptions) -> str:
    """The ``trtexec`` line that builds the same engine on the target device (e.g. a Jetson)."""
    def dims(batch: int) -> str:
        return f"{options.input_name}:" + "x".join(str(d) for d in options.shape(batch))

    args = ["trtexec", f"--onnx={onnx_name}", f"--saveEngine={engine_name}", f"--minShapes={dims(options.min_batch)}",
            f"--optShapes={dims(options.opt_batch)}", f"--maxShapes={dims(options.max_batch)}",
            f"--memPoolSize=workspace:{options.workspace_mib}M", "--timingCacheFile=timing.cache"]
    if options.precision in ("fp16", "int8"):
        args.append("--fp16")
    if options.precision == "int8":
        args.append("--int8")
    return shlex.join(args)


def write_trtexec_script(path: str | Path, onnx_name: str, engine_name: str, options: EngineOptions) -> Path:
    path = Path(path)
    body = ("#!/bin/sh\n# Build the engine on the device that will run it (engines are GPU- and "
            f"TensorRT-version-specific).\n# Written on {platform.node() or 'host'} by coatnet-edge.\n"
            f"{trtexec_command(onnx_name, engine_name, options)}\n")
    with atomic_path(path) as tmp:
        tmp.write_text(body)
        tmp.chmod(0o755)
    return path


NOT_CHECKED = {"method": "not run: TensorRT artifacts are checked by `coatnet-edge evaluate` on the GPU"}


def engine_options(job: ExportJob) -> EngineOptions:
    return EngineOptions(precision=job.precision, min_batch=1 if job.dynamic_batch else job.batch,
                         opt_batch=job.batch, max_batch=job.max_batch if job.dynamic_batch else job.batch,
                         image_size=job.image_size, workspace_mib=job.workspace_mib,
                         timing_cache=job.out / "timing.cache")


def engine_record(options: EngineOptions) -> dict[str, int]:
    return {"min_batch": options.min_batch, "opt_batch": options.opt_batch, "max_batch": options.max_batch,
            "workspace_mib": options.workspace_mib}


def export_artifact(job: ExportJob) -> ExportOutput:
    """A serialized engine for this GPU, plus the trtexec script that rebuilds it on another device."""
    options = engine_options(job)
    engine = build_engine(job.onnx_path, job.artifact_path(".engine"), options)
    script = write_trtexec_script(job.artifact_path(".trtexec.sh"), job.onnx_path.name, engine.name, options)
    return ExportOutput(engine, [script], NOT_CHECKED, {"engine": engine_record(options)})


def write_device_kit(onnx_path: Path, folder: Path, precision: str, max_batch: int) -> dict[str, Path]:
    """What a device needs to build the engine itself: the ONNX (+ manifest) and the trtexec script."""
    copy = folder / onnx_path.name
    shutil.copy2(onnx_path, copy)
    shutil.copy2(manifest_path_for(onnx_path), manifest_path_for(copy))
    source = Manifest.read(onnx_path)
    if source is None:
        raise CoatnetEdgeError("no manifest next to the ONNX file (input size unknown)", path=onnx_path,
                               fix="export it with `coatnet-edge export --backend onnx`")
    size = source.image_size
    options = EngineOptions(precision=precision, max_batch=max_batch, image_size=size)
    stem = onnx_path.name.removesuffix(".onnx").removesuffix(".fp32").removesuffix(".int8")
    script = write_trtexec_script(folder / f"{stem}.{precision}.trtexec.sh", copy.name, f"{stem}.{precision}.engine",
                                  options)
    return {"onnx": copy, "trtexec": script}
