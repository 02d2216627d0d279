"""Runners: one per backend, the same ``run(images) -> logits`` interface, no torch needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.runtime.base import Runner, RunnerInfo

BACKENDS = ("onnxruntime", "openvino", "tensorrt")


def load_runner(path: str | Path, *, backend: str | None = None, **options: Any) -> Runner:
    """Open an artifact with the runner its file type calls for (or the ``backend`` named)."""
    path = Path(path)
    if not path.is_file():
        raise CoatnetEdgeError("artifact not found", path=path, fix="check the path")
    backend = backend or {".onnx": "onnxruntime", ".xml": "openvino", ".engine": "tensorrt",
                          ".plan": "tensorrt"}.get(path.suffix)
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
                           fix=f"use an .onnx, .xml or .engine artifact, or one of the backends: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Runner", "RunnerInfo", "load_runner"]
