"""TensorRT engines from ONNX, strongly typed on TensorRT 10.x and 11.x alike: precision lives in the graph.

TensorRT 11 removed weak typing (``BuilderFlag.FP16/INT8``, INT8 calibrators, precision
constraints; ``trtexec --fp16/--int8``): a network runs in the types its ONNX graph states. So FP16 is
a mixed-precision FP16 graph (``export/fp16.py``), INT8 the toolkit's Q/DQ graph (explicit
quantization: scales come from the graph), INT8 with FP16 float parts the Q/DQ graph through the same
FP16 pass; the builder only parses and builds, with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``
where that flag exists (10.x; 11.x networks are always strongly typed). Every graph an engine is
built from is an ONNX file next to it, run and measured by ONNX Runtime on any CPU. One optimization
profile covers the batch range; a timing cache makes rebuilds fast. The ``trtexec`` script written next
to the engine rebuilds it on the device (Jetsons run TensorRT 10.x from JetPack): ``--stronglyTyped``
for 10.x, nothing for 11.x.

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
from coatnet_edge.export.fp16 import graph_precision
from coatnet_edge.export.job import ExportJob, ExportOutput, carried, file_tag, model_stem
from coatnet_edge.export.onnx import write_mixed_fp16
from coatnet_edge.hashing import sha256_file
from coatnet_edge.manifest import Manifest, manifest_path_for, write_manifest
from coatnet_edge.runtime.tensorrt import import_tensorrt

PRECISIONS = ("fp32", "fp16", "int8", "int8+fp16")
SUPPORTED_MAJORS = (10, 11)  # the tested range; the `tensorrt` extra pins the same
JETPACK_MAJOR = 10  # what a device kit targets when no TensorRT is installed here


@dataclass(frozen=True)
class EngineOptions:
    precision: str = "fp16"
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1
    image_size: int = 224
    channels: int = 3
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
        return (batch, self.channels, self.image_size, self.image_size)


def tensorrt_major(trt: object) -> int:
    """The installed TensorRT's major version, refused in one line outside the tested range."""
    version = str(getattr(trt, "__version__", "0"))
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if major not in SUPPORTED_MAJORS:
        raise CoatnetEdgeError(f"TensorRT {version} is outside the tested range "
                               f"({'/'.join(map(str, SUPPORTED_MAJORS))}.x)",
                               fix="pip install 'coatnet-edge[tensorrt]' (it pins a tested TensorRT)")
    return major


def preflight() -> int:
    """Fail in one line, before anything is written, where TensorRT is installed but cannot build: a
    version outside the tested range, or no usable GPU / driver. Returns the TensorRT major version."""
    trt = import_tensorrt()
    major = tensorrt_major(trt)
    try:
        trt.Builder(trt.Logger(trt.Logger.ERROR))
    except Exception as err:  # TensorRT raises its own types for "no CUDA device" / "driver too old"
        raise CoatnetEdgeError(f"TensorRT {trt.__version__} cannot create a builder ({str(err).splitlines()[0][:160]})",
                               fix="check `nvidia-smi` and that the driver supports this TensorRT's CUDA") from None
    return major


def network_flags(trt: object) -> int:
    """Strong typing where the flag exists (10.x); 11.x has no other mode and may not name it."""
    creation = getattr(trt, "NetworkDefinitionCreationFlag", None)
    flag = getattr(creation, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def build_engine(onnx_path: str | Path, engine_path: str | Path, options: EngineOptions) -> Path:
    """Parse ``onnx_path`` into a strongly typed network, build it, write the engine atomically."""
    trt = import_tensorrt()
    tensorrt_major(trt)
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        first = parser.get_error(0).desc() if parser.num_errors else "unknown error"
        raise CoatnetEdgeError(f"TensorRT's ONNX parser rejects it ({first})", path=onnx_path,
                               fix="check it with `coatnet-edge export --backend onnx` and the Q/DQ validator")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
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
                               fix="raise --workspace-mib; see TensorRT's log for the layer it stopped at")
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(bytes(serialized))
    if options.timing_cache is not None:
        with atomic_path(options.timing_cache) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    return engine_path


def trtexec_command(onnx_name: str, engine_name: str, options: EngineOptions, tensorrt: int = JETPACK_MAJOR) -> str:
    """The ``trtexec`` line that builds the same engine on a device with TensorRT ``tensorrt``.x: the
    graph states the precision, ``--stronglyTyped`` on 10.x, no flag on 11.x (its only mode)."""
    def dims(batch: int) -> str:
        return f"{options.input_name}:" + "x".join(str(d) for d in options.shape(batch))

    args = ["trtexec", f"--onnx={onnx_name}", f"--saveEngine={engine_name}", f"--minShapes={dims(options.min_batch)}",
            f"--optShapes={dims(options.opt_batch)}", f"--maxShapes={dims(options.max_batch)}",
            f"--memPoolSize=workspace:{options.workspace_mib}M", "--timingCacheFile=timing.cache"]
    if tensorrt < 11:
        args.append("--stronglyTyped")
    return shlex.join(args)


def write_trtexec_script(path: str | Path, onnx_name: str, engine_name: str, options: EngineOptions,
                         tensorrt: int = JETPACK_MAJOR) -> Path:
    path = Path(path)
    body = ("#!/bin/sh\n# Build the engine on the device that will run it (engines are GPU- and "
            f"TensorRT-version-specific).\n# Target: TensorRT {tensorrt}.x, strongly typed: {onnx_name} states "
            f"the precision ({options.precision}).\n# For TensorRT {11 if tensorrt < 11 else 10}.x: "
            f"{trtexec_command(onnx_name, engine_name, options, 11 if tensorrt < 11 else 10)}\n"
            f"# Written on {platform.node() or 'host'} by coatnet-edge.\n"
            f"{trtexec_command(onnx_name, engine_name, options, tensorrt)}\n")
    with atomic_path(path) as tmp:
        tmp.write_text(body)
        tmp.chmod(0o755)
    return path


NOT_CHECKED = {"method": "not run: TensorRT artifacts are checked by `coatnet-edge evaluate` on the GPU"}


def engine_options(job: ExportJob) -> EngineOptions:
    return EngineOptions(precision=job.precision, min_batch=1 if job.dynamic_batch else job.batch,
                         opt_batch=job.batch, max_batch=job.max_batch if job.dynamic_batch else job.batch,
                         image_size=job.image_size, channels=job.image_shape[0], workspace_mib=job.workspace_mib,
                         timing_cache=job.out / "timing.cache")


def engine_record(options: EngineOptions) -> dict[str, int]:
    return {"min_batch": options.min_batch, "opt_batch": options.opt_batch, "max_batch": options.max_batch,
            "workspace_mib": options.workspace_mib}


def export_artifact(job: ExportJob) -> ExportOutput:
    """A serialized engine for this GPU, the graph it was built from, and the trtexec script that rebuilds
    it on another device."""
    graph, extra, parity = _graph_for(job)
    options = engine_options(job)
    engine = build_engine(graph, job.artifact_path(".engine"), options)
    major = tensorrt_major(import_tensorrt())
    script = write_trtexec_script(job.artifact_path(".trtexec.sh"), graph.name, engine.name, options, major)
    details = {"engine": engine_record(options), "graph": graph.name, "tensorrt_major": major,
               "graph_parity_vs_source": parity}
    return ExportOutput(engine, [*extra, script], NOT_CHECKED, details)


def _graph_for(job: ExportJob) -> tuple[Path, list[Path], dict]:
    """The ONNX the engine is built from: the given graph when it already states the precision, else its
    mixed-FP16 copy (written next to the engine, with its parity in ONNX Runtime)."""
    if graph_precision(job.onnx_path) == job.precision or job.precision in ("fp32", "int8"):
        return job.onnx_path, [], {}
    done = write_mixed_fp16(job)
    return done.artifact, [done.artifact], done.parity


def write_device_kit(onnx_path: Path, folder: Path, precision: str, max_batch: int,
                     tensorrt: int = JETPACK_MAJOR) -> dict[str, Path]:
    """What a device needs to build the engine itself: the graph that states the precision (+ manifest)
    and the trtexec script for its TensorRT (JetPack's 10.x unless told)."""
    source = Manifest.read(onnx_path)
    if source is None:
        raise CoatnetEdgeError("no manifest next to the ONNX file (input size unknown)", path=onnx_path,
                               fix="export it with `coatnet-edge export --backend onnx`")
    job = ExportJob(onnx_path, source.record, folder, precision, max_batch=max_batch)
    graph, _, _ = _graph_for(job)
    if graph == onnx_path:
        graph = folder / onnx_path.name
        shutil.copy2(onnx_path, graph)
        shutil.copy2(manifest_path_for(onnx_path), manifest_path_for(graph))
    else:
        write_manifest(graph, {**carried(source.record), "kind": "onnx", "precision": precision,
                               "from_onnx": {"path": onnx_path.name, "sha256": sha256_file(onnx_path)}})
    options = EngineOptions(precision=precision, max_batch=max_batch, image_size=source.image_size,
                            channels=source.image_shape[0])
    stem, tag = model_stem(onnx_path), file_tag(precision)
    script = write_trtexec_script(folder / f"{stem}.{tag}.trtexec.sh", graph.name, f"{stem}.{tag}.engine", options,
                                  tensorrt)
    return {"onnx": graph, "trtexec": script}
