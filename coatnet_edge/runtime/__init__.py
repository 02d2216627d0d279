"""Runners: one per backend, the same ``run(images) -> logits`` interface.

The runner is chosen from the artifact itself: its suffix picks the backend and its manifest the
precision label, so a user never retypes what the export already recorded. Only the PyTorch runner
(checkpoints) and the TensorRT runner (CUDA buffers) import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.runtime.base import Runner, RunnerInfo

BACKENDS = ("pytorch", "onnxruntime", "openvino", "tensorrt")
SUFFIXES = {".safetensors": "pytorch", ".pt": "pytorch", ".pth": "pytorch", ".onnx": "onnxruntime",
            ".xml": "openvino", ".engine": "tensorrt", ".plan": "tensorrt"}


def backend_for(path: str | Path) -> str | None:
    text = str(path)
    return "pytorch" if text.startswith(("builtin:", "timm:")) else SUFFIXES.get(Path(text).suffix)


def artifact_precision(path: str | Path) -> str:
    """The precision the artifact's manifest records (fp32 for checkpoints and unlabelled files)."""
    from coatnet_edge.manifest import read_manifest

    if backend_for(path) == "pytorch":
        return "fp32"
    manifest = read_manifest(path) or {}
    return str(manifest.get("precision", "fp32"))


def load_runner(path: str | Path, *, backend: str | None = None, **options: Any) -> Runner:
    """Open an artifact with the runner its file type calls for (or the ``backend`` named)."""
    backend = backend or backend_for(path)
    if backend == "pytorch":
        from coatnet_edge.runtime.pytorch import PyTorchRunner

        return PyTorchRunner(path, **options)
    path = Path(path)
    if not path.is_file():
        raise CoatnetEdgeError("artifact not found", path=path, fix="check the path")
    options.setdefault("precision", artifact_precision(path))
    if backend == "onnxruntime":
        from coatnet_edge.runtime.onnxruntime import OnnxRuntimeRunner

        return OnnxRuntimeRunner(path, **options)
    if backend == "openvino":
        from coatnet_edge.runtime.openvino import OpenVinoRunner

        return OpenVinoRunner(path, **options)
    if backend == "tensorrt":
        from coatnet_edge.runtime.tensorrt import TensorRtRunner

        return TensorRtRunner(path, **options)
    raise CoatnetEdgeError(f"unknown artifact type '{path.suffix}'" if backend is None
                           else f"unknown backend '{backend}'", path=path,
                           fix="use a checkpoint (.safetensors), .onnx, OpenVINO .xml or TensorRT .engine file, "
                               f"or one of the backends: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Runner", "RunnerInfo", "artifact_precision", "backend_for", "load_runner"]
