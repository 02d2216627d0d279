"""The ONNX Runtime CPU INT8 target: ONNX Runtime's own ``quantize_static`` (the plain path its docs show) is the
baseline; a tuned u8 graph and the Q/DQ graph TensorRT builds challenge it.

Why a graph of its own: the Q/DQ graph TensorRT builds runs slower than FP32 in ONNX Runtime on x86
(docs/ort_int8_profile.md: its x86 integer convolution takes u8 activations, so with the signed INT8 activations
TensorRT needs every Conv stays a float Conv behind DequantizeLinear). ``plain`` is ``quantize_static`` QDQ with
u8 activations and s8 per-channel weights, every op, min/max ranges; ``u8`` quantizes Conv / MatMul / Gemm only,
with percentile ranges, on the FP32 graph with each erf-GELU written as one op (``export/gelu_fusion.py``).
All are made from the same calibration images and scored by the one engine (``selection.py``) on the held-out
score set: the baseline is kept unless a candidate is more faithful beyond its paired interval, or tied and
faster beyond a margin (interleaved timing).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from coatnet_edge.calibration.options import ONNXRUNTIME_CANDIDATES
from coatnet_edge.calibration.selection import select
from coatnet_edge.calibration.target_inputs import (
    SelectionUnavailable,
    TargetInt8,
    checked_candidates,
    inputs_unless_qdq_only,
    qdq_as_is,
)
from coatnet_edge.export.gelu_fusion import fuse_gelu
from coatnet_edge.runtime.onnxruntime import InMemorySession

CANDIDATE_TEXT = {
    "plain": "ONNX Runtime quantize_static (QDQ, u8 activations, s8 per-channel weights, every op, min/max ranges)",
    "qdq": "the Q/DQ graph (the TensorRT graph) as is",
    "u8": "ONNX Runtime quantize_static (u8 activations, percentile ranges, s8 per-channel weights, Conv/MatMul/Gemm, "
          "GELU as one op)",
}
QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]
Log = Callable[[str], None]


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """quantize_static logs 'consider pre-processing' on the root logger and its sessions warn about every unused
    initializer: not the user's concern."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def u8_graph(fp32_onnx: Path, calib_images: np.ndarray, *, fuse: bool = True) -> Any:
    """ONNX Runtime's QDQ quantization (u8 activations, s8 per-channel weights) of Conv / MatMul / Gemm, percentile
    ranges, on the FP32 graph with each GELU as one op (``fuse=False``: as the export wrote it, for the profile
    page's comparison)."""
    from onnxruntime.quantization import CalibrationMethod

    model = onnx.load(str(fp32_onnx))
    return _quantize_static(fuse_gelu(model)[0] if fuse else model, calib_images,
                            op_types_to_quantize=QUANTIZED_OPS, calibrate_method=CalibrationMethod.Percentile)


def plain_graph(fp32_onnx: Path, calib_images: np.ndarray) -> Any:
    """What ONNX Runtime's docs show for x86: ``quantize_static`` QDQ, u8 activations x s8 per-channel weights,
    defaults otherwise (every op it can quantize, min/max ranges)."""
    return _quantize_static(onnx.load(str(fp32_onnx)), calib_images)


def _quantize_static(model: Any, calib_images: np.ndarray, **options: Any) -> Any:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    input_name = model.graph.input[0].name

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.images = iter(calib_images[i:i + 1] for i in range(len(calib_images)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            image = next(self.images, None)
            return None if image is None else {input_name: image}

    with tempfile.TemporaryDirectory(prefix="coatnet_edge_ort.") as tmp, _quiet_root_logger():
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(source))
        quantize_static(str(source), str(target), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, **options)
        return onnx.load(str(target))


def onnxruntime_int8_for(qdq_onnx: Path, record: dict[str, Any],
                         candidates: tuple[str, ...] = ONNXRUNTIME_CANDIDATES, log: Log = print) -> TargetInt8:
    """The ONNX Runtime INT8 graph for the Q/DQ graph ``qdq_onnx`` (manifest ``record``), kept by measurement
    when the FP32 ONNX and calibration images ``quantize`` used are still there; else the Q/DQ graph, and why."""
    candidates = checked_candidates(candidates, ONNXRUNTIME_CANDIDATES, "ONNX Runtime")
    try:
        inputs = inputs_unless_qdq_only(qdq_onnx, record, candidates)
    except SelectionUnavailable as err:
        log(f"onnxruntime: the Q/DQ graph as is ({err.reason})")
        return qdq_as_is("onnxruntime", qdq_onnx, CANDIDATE_TEXT["qdq"], err.reason)

    def build(name: str) -> Any:
        if name == "qdq":
            return onnx.load(str(qdq_onnx))
        return plain_graph(inputs.fp32_onnx, inputs.calib_images) if name == "plain" else u8_graph(
            inputs.fp32_onnx, inputs.calib_images)

    chosen = select("onnxruntime", candidates, build, InMemorySession, inputs.score_set, log=log)
    qdq = chosen.chosen == "qdq"
    return TargetInt8(None if qdq else chosen.built, chosen.chosen,
                      reference_onnx=qdq_onnx if qdq else inputs.fp32_onnx,
                      record={**chosen.record, "path": CANDIDATE_TEXT[chosen.chosen]})
