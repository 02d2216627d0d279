"""The ONNX Runtime CPU INT8 target: the graph ONNX Runtime runs fastest on x86, measured against the Q/DQ graph.

Why a graph of its own: the Q/DQ graph TensorRT builds runs slower than FP32 in ONNX Runtime on x86
(docs/int8_peers.md: 0.84x on CoAtNet-0, batch 1). ONNX Runtime's per-operator profile
(benchmarks/ort_int8_profile.py -> docs/ort_int8_profile.md) shows why: its x86 integer convolution
takes u8 activations, so with the signed INT8 activations TensorRT needs every Conv stays a float Conv
behind DequantizeLinear, and the Q/DQ nodes cost on top; only the MatMuls run in integer. The ``u8``
candidate is ONNX Runtime's own ``quantize_static`` (QDQ, u8 activations, s8 per-channel weights,
Conv / MatMul / Gemm only) from the same calibration images, on the FP32 graph with each erf-GELU written
as one op (``export/gelu_fusion.py``: quantized, the five-node GELU is no longer fused by ONNX Runtime).
Activation ranges come from its percentile calibrator (on the built-in student's held-out images: logit
cosine 0.9977 vs 0.9950 with min/max). Both candidates are scored in ONNX Runtime on the held-out images,
fidelity and batch-1 latency, and one is kept by ``target_inputs.pick``.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx

from coatnet_edge.calibration.sensitivity import onnx_logits
from coatnet_edge.calibration.target_inputs import RULE, TargetInt8, inputs_or_reason, pick
from coatnet_edge.export.gelu_fusion import fuse_gelu
from coatnet_edge.measure.benchmark import time_runner
from coatnet_edge.metrics import compare_logits
from coatnet_edge.runtime.onnxruntime import InMemorySession

OnnxRuntimeCandidate = Literal["qdq", "u8"]
ONNXRUNTIME_CANDIDATES: tuple[str, ...] = ("qdq", "u8")
CANDIDATE_TEXT = {
    "qdq": "the Q/DQ graph (the TensorRT graph) as is",
    "u8": "ONNX Runtime quantize_static (u8 activations, percentile ranges, s8 per-channel weights, Conv/MatMul/Gemm, "
          "GELU as one op)",
}
QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]
TIMING = {"warmup": 5, "runs": 30}
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
    """ONNX Runtime's QDQ quantization (u8 activations, s8 per-channel weights) of the FP32 graph with each GELU
    as one op (``fuse=False``: as the export wrote it, for the profile page's comparison)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    fused = fuse_gelu(onnx.load(str(fp32_onnx)))[0] if fuse else onnx.load(str(fp32_onnx))
    input_name = fused.graph.input[0].name

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.images = iter(calib_images[i:i + 1] for i in range(len(calib_images)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            image = next(self.images, None)
            return None if image is None else {input_name: image}

    with tempfile.TemporaryDirectory(prefix="coatnet_edge_ort_u8.") as tmp, _quiet_root_logger():
        source, target = Path(tmp) / "fused.onnx", Path(tmp) / "u8.onnx"
        onnx.save(fused, str(source))
        quantize_static(str(source), str(target), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=QUANTIZED_OPS, calibrate_method=CalibrationMethod.Percentile)
        return onnx.load(str(target))


def onnxruntime_int8_for(qdq_onnx: Path, record: dict[str, Any],
                         candidates: tuple[str, ...] = ONNXRUNTIME_CANDIDATES, log: Log = print) -> TargetInt8:
    """The ONNX Runtime INT8 graph for the Q/DQ graph ``qdq_onnx`` (manifest ``record``), kept by measurement
    when the FP32 ONNX and calibration images ``quantize`` used are still there; else the Q/DQ graph, and why."""
    found = inputs_or_reason(qdq_onnx, record, tuple(candidates), ONNXRUNTIME_CANDIDATES, "ONNX Runtime")
    if isinstance(found, str):
        log(f"onnxruntime: the Q/DQ graph as is ({found})")
        return TargetInt8(None, "qdq", reference_onnx=qdq_onnx, record={
            "engine": "onnxruntime", "chosen": "qdq", "path": CANDIDATE_TEXT["qdq"],
            "method": f"not measured: {found}", "scoreboard": []})
    fp32_onnx, calib_images, holdout, what = found
    reference = onnx_logits(onnx.load(str(fp32_onnx)), holdout)
    scored = []
    for name in candidates:
        started = time.perf_counter()
        model = onnx.load(str(qdq_onnx)) if name == "qdq" else u8_graph(fp32_onnx, calib_images)
        session = InMemorySession(model)
        agreement = compare_logits(reference, np.concatenate(
            [session.run(holdout[i:i + 64]) for i in range(0, len(holdout), 64)]))
        row = {"candidate": name, "top1_agreement": round(agreement.top1_agreement, 4),
               "cosine": round(agreement.cosine, 6), "sqnr_db": round(agreement.sqnr_db, 2),
               "p50_ms_batch1": round(time_runner(session, holdout[:1], **TIMING)["p50_ms"], 3),
               "seconds": round(time.perf_counter() - started, 1)}
        log(f"onnxruntime candidate {name}: top-1 agreement {row['top1_agreement']:.4f}, cosine {row['cosine']:.5f}, "
            f"p50 {row['p50_ms_batch1']:.2f} ms (batch 1) on {len(holdout)} held-out images")
        scored.append((model, row))
    best = pick([row for _, row in scored])
    for _, row in scored:
        row["chosen"] = row is best
    model = next(model for model, row in scored if row is best)
    method = (f"each candidate made from the same FP32 ONNX and {len(calib_images)} calibration images, run in ONNX "
              f"Runtime (CPU) on {len(holdout)} images held apart from calibration ({what}); kept: {RULE} "
              f"(batch 1, {TIMING['warmup']} warm-up + {TIMING['runs']} runs)")
    log(f"onnxruntime: kept {best['candidate']} ({CANDIDATE_TEXT[best['candidate']]})")
    return TargetInt8(model if best["candidate"] != "qdq" else None, best["candidate"],
                      reference_onnx=fp32_onnx if best["candidate"] != "qdq" else qdq_onnx,
                      record={"engine": "onnxruntime", "chosen": best["candidate"],
                              "path": CANDIDATE_TEXT[best["candidate"]], "method": method,
                              "scoreboard": [row for _, row in scored]})
