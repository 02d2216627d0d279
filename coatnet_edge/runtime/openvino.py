"""OpenVINO runner: reads IR (.xml) or ONNX, compiles for a device string (CPU, GPU, NPU, AUTO).

FP32 artifacts are compiled with ``INFERENCE_PRECISION_HINT=f32``: on CPUs with AMX or AVX512-BF16
OpenVINO otherwise silently runs them in bf16 (measured here: 3e-3 max-abs logit error instead of
2e-7), which would make an FP32 row in a comparison table not FP32. INT8 IRs run their float parts
as their export chose by measurement (manifest ``inference_precision_hint``: f32 or bf16), labelled
``int8`` or ``int8+bf16``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coatnet_edge.errors import CoatnetEdgeError, MissingDependencyError
from coatnet_edge.manifest import Manifest
from coatnet_edge.runtime.base import RunnerInfo

_PRECISION_HINTS = {"fp32": "f32", "int8": "f32", "fp16": "f16", "bf16": "bf16"}  # int8: float parts in f32
_HINT_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}  # ov.Type.to_string() -> our labels


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
            config["INFERENCE_PRECISION_HINT"] = _float_parts(path) if precision == "int8" else \
                _PRECISION_HINTS[precision]
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        try:
            self.compiled = core.compile_model(core.read_model(str(path)), device, config)
        except Exception as err:
            raise CoatnetEdgeError(f"OpenVINO cannot compile it for {device} ({str(err).splitlines()[0][:200]})",
                                   path=path, fix=f"check the file and that device {device} is available "
                                                  f"(available: {', '.join(core.available_devices)})") from None
        self.request = self.compiled.create_infer_request()
        ran = executed_precision(self.compiled, precision)
        self.info = RunnerInfo("openvino", ran, device, str(path), artifact_precision=precision)

    def run(self, images: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: np.ascontiguousarray(images, dtype=np.float32)})
        return np.array(result[self.compiled.output(0)])


class CpuCompiled:
    """An OpenVINO model (or a model file) compiled for the CPU with one float precision, with ``run`` as runners
    have it (also what the per-layer float costs are timed with)."""

    def __init__(self, model: object, hint: str) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise MissingDependencyError("openvino", hint="pip install openvino") from None
        self.compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})
        self.request = self.compiled.create_infer_request()
        self.float_math = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()

    def run(self, images: np.ndarray) -> np.ndarray:
        return np.array(self.request.infer({0: np.ascontiguousarray(images)})[self.compiled.output(0)])


def _float_parts(path: Path) -> str:
    """An INT8 IR's float parts as its export chose them by measurement (manifest), else f32: OpenVINO cannot
    store the choice in the IR (a ``runtime_options`` INFERENCE_PRECISION_HINT there is not applied)."""
    manifest = Manifest.read(path)
    hint = manifest.record.get("inference_precision_hint") if manifest else None
    return hint if hint in ("f32", "bf16") else _PRECISION_HINTS["int8"]


def float_math(compiled: object) -> str | None:
    """The float precision OpenVINO really compiled for (fp32/bf16/fp16), read back from the compiled
    model: a CPU without FP16 math turns an ``f16`` hint into bf16 (AVX512-BF16/AMX) or f32."""
    try:
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")  # type: ignore[attr-defined]
    except Exception:  # devices without the property (some plugins) say nothing
        return None
    return _HINT_NAMES.get(hint.to_string() if hasattr(hint, "to_string") else str(hint))


def executed_precision(compiled: object, precision: str) -> str:
    """The row label of what ran: ``int8`` (float parts f32) or ``int8+bf16``; a float IR's label is
    its float math (``fp16`` only where the CPU really ran f16)."""
    math = float_math(compiled)
    if math is None:
        return precision
    if precision == "int8":
        return "int8" if math == "fp32" else f"int8+{math}"
    return math
