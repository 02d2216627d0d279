"""ONNX Runtime runner (CPU by default; CUDA/TensorRT execution providers where installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coatnet_edge.errors import CoatnetEdgeError, MissingDependencyError
from coatnet_edge.runtime.base import RunnerInfo


class OnnxRuntimeRunner:
    def __init__(self, path: str | Path, *, threads: int | None = None, providers: list[str] | None = None,
                 precision: str = "fp32", device: str = "CPU", **_: object):
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingDependencyError("onnxruntime", hint="pip install onnxruntime") from None
        path = Path(path)
        providers = providers or _providers(device, ort.get_available_providers())
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:
            raise CoatnetEdgeError(f"ONNX Runtime cannot load it ({str(err).splitlines()[0][:200]})", path=path,
                                   fix="re-export the model; check it with `python -m onnx.checker`") from None
        self.input_name = self.session.get_inputs()[0].name
        device = "GPU" if self.session.get_providers()[0] != "CPUExecutionProvider" else "CPU"
        self.info = RunnerInfo("onnxruntime", precision, device, str(path))

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(images, dtype=np.float32)})[0]


class InMemorySession:
    """An in-memory ONNX model (``onnx.ModelProto``) in ONNX Runtime on the CPU, quiet, with a runner's
    ``run(images) -> first output``; ``session`` for graphs with more outputs. For graphs being built and
    measured (quantization candidates, probes), never written to disk."""

    def __init__(self, model: object) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(model.SerializeToString(), options,  # type: ignore[attr-defined]
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(images)})[0]


_DEVICE_PROVIDERS = {"CPU": ["CPUExecutionProvider"],
                     "CUDA": ["CUDAExecutionProvider", "CPUExecutionProvider"],
                     "TENSORRT": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}


def _providers(device: str, available: list[str]) -> list[str]:
    """Execution providers for a device name (CPU, CUDA, TensorRT), refusing ones this build lacks."""
    wanted = _DEVICE_PROVIDERS.get(device.upper())
    if wanted is None:
        raise CoatnetEdgeError(f"unknown ONNX Runtime device '{device}'", fix="use CPU, CUDA or TensorRT")
    if wanted[0] not in available:
        raise CoatnetEdgeError(f"this onnxruntime build has no {wanted[0]}",
                               fix="pip install onnxruntime-gpu (NVIDIA machines), or use device CPU")
    return wanted
