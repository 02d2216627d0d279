"""The backend registry: one record per backend, read by export, runtime loading, pipeline targets,
recipe validation and the CLI's choices, so a backend is named in exactly one place.

Adding a backend = its export adapter (``coatnet_edge/export/<name>.py``), its runner
(``coatnet_edge/runtime/<name>.py``) and one ``Backend`` record below. Adapters and runners are
named as ``"module:attribute"`` and imported only when used, so a record costs nothing to read and a
missing optional library (OpenVINO, TensorRT) only matters to the backend that needs it.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coatnet_edge.errors import CoatnetEdgeError, MissingDependencyError


@dataclass(frozen=True)
class Backend:
    name: str  # the runner's name, as tables and manifests show it
    runner: str | None  # "module:Class" with the Runner interface (runtime/base.py); None: nothing runs it here
    suffixes: tuple[str, ...]  # artifact files this runner opens
    export_name: str | None = None  # `--backend` value of `coatnet-edge export` (None: not an export target)
    adapter: str | None = None  # "module:function" taking an export job (export/job.py)
    precisions: tuple[str, ...] = ()  # what its export builds
    targets: tuple[tuple[str, str], ...] = ()  # (`coatnet-edge run` target, its precision)
    requires: tuple[str, ...] = ()  # modules it imports; missing -> unavailable with `install` as the fix
    install: str = ""
    needs_gpu: bool = False
    title: str = ""  # how people write its name (TensorRT), for messages
    device_kit: str | None = None  # "module:function" writing what the device needs to build it there
    preflight: str | None = None  # "module:function" raising a one-line error when it cannot build here

    def load_device_kit(self) -> Any:
        return _resolve(self.device_kit) if self.device_kit else None

    def load_runner_class(self) -> Any:
        if self.runner is None:
            raise CoatnetEdgeError(f"coatnet-edge has no runner for {self.name} artifacts",
                                   fix=f"use one of: {', '.join(runtime_names())}")
        return _resolve(self.runner)

    def load_adapter(self) -> Any:
        if self.adapter is None:
            raise CoatnetEdgeError(f"{self.name} is a runtime, not an export target",
                                   fix=f"use --backend {' / '.join(export_names())}")
        return _resolve(self.adapter)

    def unavailable(self) -> str | None:
        """Why this machine cannot build for this backend (None when it can); checks without importing."""
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            return f"{self.title or missing[0]} is not installed ({self.install})"
        if self.needs_gpu and not _cuda_available():
            return "no NVIDIA GPU visible"
        return None

    def require(self) -> None:
        """Raise a one-line error before anything is written when this machine cannot build it: the
        dependency is missing, no GPU is visible, or the backend's own preflight (version, driver) fails."""
        reason = self.unavailable()
        if reason and "not installed" in reason:
            raise MissingDependencyError(self.requires[0], hint=self.install)
        if reason:
            raise CoatnetEdgeError(f"{self.name}: {reason}", fix="run the export on the machine with the NVIDIA GPU, "
                                                                 "or use `coatnet-edge run`, which writes a device kit")
        if self.preflight:
            _resolve(self.preflight)()


_TENSORRT_INSTALL = ("NVIDIA GPU + pip install 'coatnet-edge[tensorrt]' (wheels from pypi.nvidia.com), "
                     "or JetPack on a Jetson")

BACKENDS: tuple[Backend, ...] = (
    Backend("pytorch", "coatnet_edge.runtime.pytorch:PyTorchRunner", (".safetensors", ".pt", ".pth", ".tar")),
    Backend("onnxruntime", "coatnet_edge.runtime.onnxruntime:OnnxRuntimeRunner", (".onnx",), export_name="onnx",
            adapter="coatnet_edge.export.onnx:export_artifact", precisions=("fp32", "fp16", "int8", "int8+fp16"),
            targets=(("onnx-fp32", "fp32"), ("onnx-fp16", "fp16"), ("onnx-int8", "int8"),
                     ("onnx-int8-fp16", "int8+fp16")),
            requires=("onnxruntime",), install="pip install onnxruntime"),
    # ONNX Runtime on x86 CPUs: its own INT8 graph (u8 activations, GELU as one op), run by the runner above
    Backend("onnxruntime", None, (), export_name="onnxruntime",
            adapter="coatnet_edge.export.onnxruntime:export_artifact", precisions=("int8",),
            targets=(("onnxruntime-int8", "int8"),), requires=("onnxruntime",),
            install="pip install onnxruntime"),
    Backend("openvino", "coatnet_edge.runtime.openvino:OpenVinoRunner", (".xml",), export_name="openvino",
            adapter="coatnet_edge.export.openvino:export_artifact", precisions=("fp32", "fp16", "int8"),
            targets=(("openvino-fp32", "fp32"), ("openvino-fp16", "fp16"), ("openvino-int8", "int8")),
            requires=("openvino",),
            install="pip install openvino"),
    Backend("tensorrt", "coatnet_edge.runtime.tensorrt:TensorRtRunner", (".engine", ".plan"), export_name="tensorrt",
            adapter="coatnet_edge.export.tensorrt:export_artifact", precisions=("fp32", "fp16", "int8", "int8+fp16"),
            targets=(("tensorrt-fp16", "fp16"), ("tensorrt-int8", "int8"), ("tensorrt-int8-fp16", "int8+fp16")),
            requires=("tensorrt",), install=_TENSORRT_INSTALL, needs_gpu=True, title="TensorRT",
            device_kit="coatnet_edge.export.tensorrt:write_device_kit",
            preflight="coatnet_edge.export.tensorrt:preflight"),
    Backend("torch-tensorrt", None, (),
            export_name="torch-tensorrt", adapter="coatnet_edge.export.torch_tensorrt:export_artifact",
            precisions=("fp32", "fp16", "int8"), requires=("torch_tensorrt",), install=_TENSORRT_INSTALL,
            needs_gpu=True),
)


def runtime_names() -> tuple[str, ...]:
    return tuple(b.name for b in BACKENDS if b.runner)


def export_names() -> tuple[str, ...]:
    return tuple(b.export_name for b in BACKENDS if b.export_name)


def pipeline_targets() -> tuple[str, ...]:
    return tuple(name for b in BACKENDS for name, _ in b.targets)


def by_name(name: str) -> Backend:
    """The backend an export name (``onnx``, ``onnxruntime``) or else a runner name refers to."""
    for backend in (*(b for b in BACKENDS if b.export_name == name), *BACKENDS):
        if name in (backend.name, backend.export_name):
            return backend
    raise CoatnetEdgeError(f"unknown backend '{name}'", fix=f"use one of: {', '.join(export_names())}")


def with_runner(name: str) -> Backend | None:
    """The backend with a runner that ``name`` (``onnxruntime`` or ``onnx``) refers to."""
    return next((b for b in BACKENDS if b.runner and name in (b.name, b.export_name)), None)


def for_target(target: str) -> tuple[Backend, str]:
    """A pipeline target (``openvino-int8``) -> its backend and precision."""
    for backend in BACKENDS:
        for name, precision in backend.targets:
            if name == target:
                return backend, precision
    raise CoatnetEdgeError(f"unknown target '{target}'", fix=f"use one of: {', '.join(pipeline_targets())}")


def for_file(path: str | Path) -> Backend | None:
    """The backend whose runner opens this artifact (model sources ``builtin:``/``timm:`` are PyTorch)."""
    text = str(path)
    if text.startswith(("builtin:", "timm:")) or (Path(text) / "config.json").is_file():  # or a Hugging Face folder
        return by_name("pytorch")
    suffix = Path(text).suffix
    return next((b for b in BACKENDS if suffix in b.suffixes), None)


def _resolve(reference: str) -> Any:
    module, attribute = reference.split(":")
    return getattr(importlib.import_module(module), attribute)


def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch  # NOTE: only asked for GPU backends, which need torch for their buffers anyway

    return bool(torch.cuda.is_available())
