"""OpenVINO runner: reads IR (.xml) or ONNX, compiles for a device string (CPU, GPU, NPU, AUTO).

FP32 artifacts are compiled with ``INFERENCE_PRECISION_HINT=f32``: on CPUs with AMX or AVX512-BF16
OpenVINO otherwise silently runs them in bf16 (measured here: 3e-3 max-abs logit error instead of
2e-7), which would make an FP32 row in a comparison table not FP32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coatnet_edge.errors import CoatnetEdgeError, MissingDependencyError
from coatnet_edge.runtime.base import RunnerInfo

_PRECISION_HINTS = {"fp32": "f32", "int8": "f32", "fp16": "f16", "bf16": "bf16"}  # int8: float parts in f32


class OpenVinoRunner:
    def __init__(self, path: str | Path, *, device: str = "CPU", threads: int | None = None,
                 precision: str = "fp32", **_: object):
        try:
            import openvino as ov
        except ImportError:
            raise MissingDependencyError("openvino", hint="pip install openvino") from None
        path = Path(path)
        core = ov.Core()
        config: dict[str, str] = {}
        if precision in _PRECISION_HINTS and device.startswith("CPU"):
            config["INFERENCE_PRECISION_HINT"] = _PRECISION_HINTS[precision]
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        try:
            self.compiled = core.compile_model(core.read_model(str(path)), device, config)
        except Exception as err:
            raise CoatnetEdgeError(f"OpenVINO cannot compile it for {device} ({str(err).splitlines()[0][:200]})",
                                   path=path, fix=f"check the file and that device {device} is available "
                                                  f"(available: {', '.join(core.available_devices)})") from None
        self.request = self.compiled.create_infer_request()
        self.info = RunnerInfo("openvino", precision, device, str(path))

    def run(self, images: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: np.ascontiguousarray(images, dtype=np.float32)})
        return np.array(result[self.compiled.output(0)])
