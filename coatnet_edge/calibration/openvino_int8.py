"""The OpenVINO INT8 target: the most faithful of NNCF on the OpenVINO model itself and the converted
Q/DQ graph, measured in OpenVINO on images held apart from calibration, float parts f32 or bf16 by measurement.

Why not just convert the Q/DQ graph: that graph is built for TensorRT (symmetric signed INT8, placed
where TensorRT fuses), and NNCF's ONNX backend places fewer quantizers than its OpenVINO backend does
on the same network (64 vs 100 on a real-image CoAtNet; DESIGN.md). On some models and images NNCF on
the OpenVINO model agrees better with FP32 (docs/int8_peers.md: built-in teacher, corrupted split,
98.2 % vs 97.1 %), on others the Q/DQ graph does. So each candidate is quantized from the same FP32
ONNX and the same calibration images, run in OpenVINO, and the one that agrees best with FP32 (top-1
agreement, then logit cosine) is kept, or a faster one as faithful within a small slack
(``target_inputs.pick``). Then the float parts: on a CPU with bf16 math OpenVINO runs them in bf16
unless told otherwise; the kept model is measured both ways, and bf16 is chosen only when it is at
least as faithful and faster. The scoreboard, latencies included, goes into the manifest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx

from coatnet_edge.calibration.sensitivity import onnx_logits
from coatnet_edge.calibration.target_inputs import RULE, TargetInt8, inputs_or_reason, pick
from coatnet_edge.errors import MissingDependencyError
from coatnet_edge.measure.benchmark import time_runner
from coatnet_edge.metrics import compare_logits
from coatnet_edge.runtime.base import run_batches
from coatnet_edge.runtime.openvino import CpuCompiled

OpenVinoCandidate = Literal["qdq", "nncf", "nncf-transformer"]
OPENVINO_CANDIDATES: tuple[str, ...] = ("qdq", "nncf", "nncf-transformer")
CANDIDATE_TEXT = {
    "qdq": "the Q/DQ graph (the TensorRT graph) converted",
    "nncf": "NNCF on the OpenVINO model (defaults)",
    "nncf-transformer": "NNCF on the OpenVINO model (model_type=TRANSFORMER)",
}
TIMING = {"warmup": 5, "runs": 30}  # batch 1: enough to rank candidates, seconds on the built-in models
BF16_COSINE_SLACK = 2e-4  # bf16 float parts count as "as faithful" within this logit cosine (INT8 itself costs ~2e-3)
FASTER_BY = 0.95  # bf16 float parts are kept only when their p50 is at most this share of f32's
Log = Callable[[str], None]


def openvino_int8_for(qdq_onnx: Path, record: dict[str, Any], candidates: tuple[str, ...] = OPENVINO_CANDIDATES,
                      log: Log = print) -> TargetInt8:
    """The OpenVINO INT8 model for the Q/DQ graph ``qdq_onnx`` (manifest ``record``), chosen by measurement when
    the FP32 ONNX and calibration images ``quantize`` used are still there; else the Q/DQ graph, and why."""
    found = inputs_or_reason(qdq_onnx, record, tuple(candidates), OPENVINO_CANDIDATES, "OpenVINO")
    if isinstance(found, str):
        log(f"openvino: the Q/DQ graph converted as is ({found})")
        return TargetInt8(None, "qdq", "f32", reference_onnx=qdq_onnx, record={
            "engine": "openvino", "chosen": "qdq", "path": CANDIDATE_TEXT["qdq"], "float_parts": "f32",
            "method": f"not measured: {found}", "scoreboard": []})
    fp32_onnx, calib_images, holdout, what = found
    reference = onnx_logits(onnx.load(str(fp32_onnx)), holdout)
    chosen = choose_openvino_int8(fp32_onnx, qdq_onnx, calib_images, holdout, reference, what, candidates, log)
    chosen.reference_onnx = qdq_onnx if chosen.candidate == "qdq" else fp32_onnx
    return chosen


def _openvino() -> Any:
    try:
        import openvino as ov
    except ImportError:
        raise MissingDependencyError("openvino", hint="pip install openvino") from None
    return ov


def candidate_model(name: str, fp32_onnx: Path, qdq_onnx: Path, calib_images: np.ndarray) -> Any:
    """The INT8 OpenVINO model a candidate makes from the same FP32 ONNX / Q/DQ graph and calibration images."""
    ov = _openvino()
    if name == "qdq":
        return ov.convert_model(str(qdq_onnx))
    import nncf

    nncf.set_log_level(logging.WARNING)
    model = ov.convert_model(str(fp32_onnx))
    dataset = nncf.Dataset([calib_images[i:i + 1] for i in range(len(calib_images))])
    return nncf.quantize(model, dataset, subset_size=len(calib_images),
                         model_type=nncf.ModelType.TRANSFORMER if name == "nncf-transformer" else None)


def _score(compiled: CpuCompiled, holdout: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    agreement = compare_logits(reference, run_batches(compiled, holdout))
    timing = time_runner(compiled, holdout[:1], **TIMING)
    return {"top1_agreement": round(agreement.top1_agreement, 4), "cosine": round(agreement.cosine, 6),
            "sqnr_db": round(agreement.sqnr_db, 2), "p50_ms_batch1": round(timing["p50_ms"], 3),
            "float_math": compiled.float_math}


def choose_openvino_int8(fp32_onnx: Path, qdq_onnx: Path, calib_images: np.ndarray, holdout: np.ndarray,
                         reference: np.ndarray, holdout_what: str,
                         candidates: tuple[str, ...] = OPENVINO_CANDIDATES, log: Log = print) -> TargetInt8:
    """Each candidate quantized and scored in OpenVINO against ``reference`` (FP32 logits of ``holdout``);
    the most faithful kept, then its float parts measured f32 vs bf16."""
    scored: list[tuple[tuple[float, float], Any, dict[str, Any]]] = []
    for name in candidates:
        started = time.perf_counter()
        model = candidate_model(name, fp32_onnx, qdq_onnx, calib_images)
        row = {"candidate": name, **_score(CpuCompiled(model, "f32"), holdout, reference),
               "seconds": round(time.perf_counter() - started, 1)}
        log(f"openvino candidate {name}: top-1 agreement {row['top1_agreement']:.4f}, cosine {row['cosine']:.5f}, "
            f"p50 {row['p50_ms_batch1']:.2f} ms (batch 1, f32 float parts) on {len(holdout)} held-out images")
        scored.append(((row["top1_agreement"], row["cosine"]), model, row))
    best = pick([row for _, _, row in scored])
    model = next(model for _, model, row in scored if row is best)
    for _, _, row in scored:
        row["chosen"] = row is best
    float_parts, bf16_row = _float_parts(model, best, holdout, reference, log)
    method = (f"each candidate quantized from the same FP32 ONNX and {len(calib_images)} calibration images, run in "
              f"OpenVINO (CPU, float parts f32) on {len(holdout)} images held apart from calibration ({holdout_what}); "
              f"kept: {RULE}; then bf16 float parts kept only if at "
              f"least as faithful (agreement not lower, cosine within {BF16_COSINE_SLACK}) and at most "
              f"{FASTER_BY:.0%} "
              f"of the f32 p50 (batch 1, {TIMING['warmup']} warm-up + {TIMING['runs']} runs)")
    record = {"engine": "openvino", "chosen": best["candidate"], "path": CANDIDATE_TEXT[best["candidate"]],
              "float_parts": float_parts, "method": method, "scoreboard": [row for _, _, row in scored],
              "bf16_float_parts": bf16_row}
    log(f"openvino: kept {best['candidate']} ({CANDIDATE_TEXT[best['candidate']]}), float parts {float_parts}")
    return TargetInt8(model, best["candidate"], float_parts, record=record)


def _float_parts(model: Any, f32_row: dict[str, Any], holdout: np.ndarray, reference: np.ndarray,
                 log: Log) -> tuple[str, dict[str, Any] | None]:
    """``bf16`` when this CPU has bf16 math and the model is at least as faithful and faster with it."""
    compiled = CpuCompiled(model, "bf16")
    if compiled.float_math != "bf16":
        return "f32", None  # no bf16 math on this CPU: OpenVINO runs the float parts in f32 anyway
    row = _score(compiled, holdout, reference)
    faithful = (row["top1_agreement"] >= f32_row["top1_agreement"]
                and row["cosine"] >= f32_row["cosine"] - BF16_COSINE_SLACK)
    faster = row["p50_ms_batch1"] <= FASTER_BY * f32_row["p50_ms_batch1"]
    log(f"openvino {f32_row['candidate']} with bf16 float parts: top-1 agreement {row['top1_agreement']:.4f}, "
        f"cosine {row['cosine']:.5f}, p50 {row['p50_ms_batch1']:.2f} ms vs {f32_row['p50_ms_batch1']:.2f} ms in f32")
    return ("bf16" if faithful and faster else "f32"), row
