"""Runners: one per backend, the same ``run(images) -> logits`` interface.

The runner is chosen from the artifact itself: its suffix picks the backend (``registry.py``) and
its manifest the precision label, so a user never retypes what the export already recorded. Only
the PyTorch runner (checkpoints) and the TensorRT runner (CUDA buffers) import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.manifest import Manifest
from coatnet_edge.runtime import registry
from coatnet_edge.runtime.base import Runner, RunnerInfo

BACKENDS = registry.runtime_names()


def backend_for(path: str | Path) -> str | None:
    backend = registry.for_file(path)
    return backend.name if backend else None


def artifact_precision(path: str | Path) -> str:
    """The precision the artifact's manifest records (fp32 for checkpoints and unlabelled files)."""
    if backend_for(path) == "pytorch":
        return "fp32"
    manifest = Manifest.read(path)
    return manifest.precision if manifest else "fp32"


def load_runner(path: str | Path, *, backend: str | None = None, **options: Any) -> Runner:
    """Open an artifact with the runner its file type calls for (or the ``backend`` named)."""
    record = registry.with_runner(backend) if backend else registry.for_file(path)
    if record is not None and record.name == "pytorch":
        return record.load_runner_class()(path, **options)
    path = Path(path)
    if not path.is_file():
        raise CoatnetEdgeError("artifact not found", path=path, fix="check the path")
    if record is None or record.runner is None:
        raise CoatnetEdgeError(f"unknown artifact type '{path.suffix}'" if backend is None
                               else f"unknown backend '{backend}'", path=path,
                               fix="use a checkpoint (.safetensors), .onnx, OpenVINO .xml or TensorRT .engine file, "
                                   f"or one of the backends: {', '.join(BACKENDS)}")
    options.setdefault("precision", artifact_precision(path))
    return record.load_runner_class()(path, **options)


__all__ = ["BACKENDS", "Runner", "RunnerInfo", "artifact_precision", "backend_for", "load_runner"]
