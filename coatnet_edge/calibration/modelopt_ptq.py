"""NVIDIA Model Optimizer's ONNX INT8 PTQ as a TensorRT-target candidate: NVIDIA's own Q/DQ placer.

Why a candidate and not the default: measured on the built-in models (docs/tensorrt_candidates.md) its
graph agrees less with FP32 than NNCF's schemes (it quantizes more layers: residual Adds, the attention
MatMuls, every Conv), but it is the placement TensorRT's engineers tune for, and on another model it
may measure better, which is what the candidates are for. Optional: the ``[onnx]`` extra of
nvidia-modelopt pulls onnxruntime-gpu, cupy and an older onnx into a CPU install, so the toolkit's
``modelopt`` extra names the packages its ONNX quantizer imports and leaves those out.

Settings: Model Optimizer's INT8 defaults (entropy calibration, its placement rules), calibrated on the
CPU, float parts kept FP32 (``high_precision_dtype="fp32"``) like every other candidate, so that the
scores compare placement and ranges, not a float precision change.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from pathlib import Path
from typing import Any

from coatnet_edge.calibration.ptq import PtqResult, PtqSettings
from coatnet_edge.data.sampling import ImageSample
from coatnet_edge.errors import MissingDependencyError
from coatnet_edge.export.qdq_rules import float_layers

CANDIDATE = "modelopt"
CALIBRATION_METHOD = "entropy"  # Model Optimizer's INT8 default
INSTALL_HINT = ("pip install -c constraints.txt -e '.[modelopt]' (nvidia-modelopt without its [onnx] extra, "
                "which would pull onnxruntime-gpu, cupy and an older onnx)")


def modelopt_available() -> bool:
    """Whether Model Optimizer's ONNX quantizer can be imported (checked before anything is written)."""
    return all(importlib.util.find_spec(name) is not None for name in ("modelopt", "onnx_graphsurgeon"))


def require_modelopt() -> None:
    if not modelopt_available():
        raise MissingDependencyError("nvidia-modelopt", hint=INSTALL_HINT)


def modelopt_record() -> dict[str, Any]:
    """What made the graph, for the manifest."""
    from importlib.metadata import version

    return {"engine": "modelopt-onnx", "modelopt_version": version("nvidia-modelopt"),
            "calibration_method": CALIBRATION_METHOD, "high_precision_dtype": "fp32", "calibration_eps": ["cpu"]}


def quantize_modelopt(fp32_model: Any | str | Path, calib: ImageSample, settings: PtqSettings) -> PtqResult:
    """INT8 Q/DQ graph from Model Optimizer's ``modelopt.onnx.quantization.quantize`` on ``calib``."""
    require_modelopt()
    import onnx
    from modelopt.onnx.quantization import quantize

    with tempfile.TemporaryDirectory(prefix="coatnet-edge-modelopt-") as tmp:
        if isinstance(fp32_model, str | Path):
            source = Path(fp32_model)
        else:  # Model Optimizer reads a file
            source = Path(tmp) / "fp32.onnx"
            onnx.save(fp32_model, str(source))
        target = Path(tmp) / "int8.onnx"
        logging.getLogger("modelopt").setLevel(logging.ERROR)  # "Failed to get GPU count" on every CPU machine
        quantize(str(source), quantize_mode="int8", calibration_data={settings.input_name: calib.images},
                 calibration_method=CALIBRATION_METHOD, calibration_eps=["cpu"], high_precision_dtype="fp32",
                 output_path=str(target), log_level="ERROR")
        model = onnx.load(str(target))
    return PtqResult(model, settings, [], float_layers(model))
