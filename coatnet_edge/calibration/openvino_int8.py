"""The OpenVINO INT8 target: NNCF on the OpenVINO model (the plain path: ``ov.convert_model`` + ``nncf.quantize`` with
``model_type=TRANSFORMER``) is the baseline; the other graph form, the default model type and the converted Q/DQ
graph challenge it.

Why these candidates: the plain path has two forms that users write, ``ov.convert_model(onnx)`` (a fused graph)
and ``core.read_model(onnx)`` (the ONNX as exported), and NNCF places different quantizers on them
(docs/openvino_graph_form.md); the Q/DQ graph is built for TensorRT (symmetric signed INT8) and is sometimes the
most faithful. Each is quantized from the same FP32 ONNX and calibration images, run in OpenVINO with f32 float
parts on the held-out score set, and the engine (``selection.py``) keeps the baseline unless a candidate is more
faithful beyond its paired interval. Then the float parts: on a CPU with bf16 math OpenVINO runs them in bf16
unless told otherwise; bf16 is kept only when as faithful and faster, timed in interleaved rounds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from coatnet_edge.calibration.options import OPENVINO_CANDIDATES
from coatnet_edge.calibration.selection import Scored, Selection, interleaved_p50, score, select, speed_ratio
from coatnet_edge.calibration.target_inputs import (
    SelectionInputs,
    SelectionUnavailable,
    TargetInt8,
    checked_candidates,
    inputs_unless_qdq_only,
    qdq_as_is,
)
from coatnet_edge.errors import MissingDependencyError
from coatnet_edge.runtime.openvino import CpuCompiled
from coatnet_edge.stats import paired_difference

CANDIDATE_TEXT = {
    "qdq": "the Q/DQ graph (the TensorRT graph) converted",
    "nncf": "NNCF on ov.convert_model(onnx) (defaults)",
    "nncf-transformer": "NNCF on ov.convert_model(onnx) (model_type=TRANSFORMER)",
    "nncf-unfused": "NNCF on core.read_model(onnx), the graph as exported (defaults)",
    "nncf-transformer-unfused": "NNCF on core.read_model(onnx), the graph as exported (model_type=TRANSFORMER)",
}
BF16_COSINE_SLACK = 2e-4  # bf16 float parts count as "as faithful" within this logit cosine (INT8 itself costs ~2e-3)
FASTER_BY = 0.95  # bf16 float parts are kept only when their p50 ratio's whole interval is below this
Log = Callable[[str], None]


def openvino_int8_for(qdq_onnx: Path, record: dict[str, Any], candidates: tuple[str, ...] = OPENVINO_CANDIDATES,
                      log: Log = print) -> TargetInt8:
    """The OpenVINO INT8 model for the Q/DQ graph ``qdq_onnx`` (manifest ``record``), chosen by measurement when
    the FP32 ONNX and calibration images ``quantize`` used are still there; else the Q/DQ graph, and why."""
    candidates = checked_candidates(candidates, OPENVINO_CANDIDATES, "OpenVINO")
    try:
        inputs = inputs_unless_qdq_only(qdq_onnx, record, candidates)
    except SelectionUnavailable as err:
        log(f"openvino: the Q/DQ graph converted as is ({err.reason})")
        return qdq_as_is("openvino", qdq_onnx, CANDIDATE_TEXT["qdq"], err.reason, float_parts="f32")
    kept = choose_openvino_int8(inputs, qdq_onnx, candidates, log)
    kept.reference_onnx = qdq_onnx if kept.candidate == "qdq" else inputs.fp32_onnx
    return kept


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
    model = ov.Core().read_model(str(fp32_onnx)) if name.endswith("-unfused") else ov.convert_model(str(fp32_onnx))
    dataset = nncf.Dataset([calib_images[i:i + 1] for i in range(len(calib_images))])
    return nncf.quantize(model, dataset, subset_size=len(calib_images),
                         model_type=nncf.ModelType.TRANSFORMER if "transformer" in name else None)


def choose_openvino_int8(inputs: SelectionInputs, qdq_onnx: Path, candidates: tuple[str, ...] = OPENVINO_CANDIDATES,
                         log: Log = print) -> TargetInt8:
    """Each candidate quantized and scored in OpenVINO (f32 float parts) by the one engine; then the kept one's
    float parts measured f32 vs bf16."""
    chosen = select("openvino", candidates,
                    lambda name: candidate_model(name, inputs.fp32_onnx, qdq_onnx, inputs.calib_images),
                    lambda model: CpuCompiled(model, "f32"), inputs.score_set, log=log)
    float_parts, bf16_row = _float_parts(chosen, inputs, log)
    record = {**chosen.record, "path": CANDIDATE_TEXT[chosen.chosen], "float_parts": float_parts,
              "bf16_float_parts": bf16_row}
    if bf16_row is not None:
        record["method"] += (f"; then bf16 float parts kept only if as faithful (top-1 agreement not lower beyond its "
                             f"paired interval, mean cosine within {BF16_COSINE_SLACK}) and faster (p50 ratio's "
                             f"interval below {FASTER_BY})")
    log(f"openvino: kept {chosen.chosen} ({CANDIDATE_TEXT[chosen.chosen]}), float parts {float_parts}")
    return TargetInt8(chosen.built, chosen.chosen, float_parts, record=record)


def _float_parts(chosen: Selection, inputs: SelectionInputs, log: Log) -> tuple[str, dict[str, Any] | None]:
    """``bf16`` when this CPU has bf16 math and the kept model is as faithful and faster with it."""
    if inputs.score_set is None:
        return "f32", None
    compiled = CpuCompiled(chosen.built, "bf16")
    if compiled.float_math != "bf16":
        return "f32", None  # no bf16 math on this CPU (OpenVINO runs the float parts in f32 anyway), or no scores
    f32 = chosen.scored or score("f32", chosen.built, CpuCompiled(chosen.built, "f32"), inputs.score_set, 0.0)
    f32 = Scored("f32", f32.built, f32.runner, f32.fidelity, f32.seconds)
    bf16 = score("bf16", chosen.built, compiled, inputs.score_set, 0.0)
    interleaved_p50([f32, bf16], inputs.score_set.images[:1])
    agreement = paired_difference(bf16.fidelity.agree.astype(float), f32.fidelity.agree.astype(float))
    cosine_drop = float(f32.fidelity.cosine.mean() - bf16.fidelity.cosine.mean())
    ratio = speed_ratio(bf16, f32)
    keep = agreement.high >= 0 and cosine_drop <= BF16_COSINE_SLACK and ratio is not None and ratio.high < FASTER_BY
    row = {"top1_agreement": round(float(bf16.fidelity.agree.mean()), 4), "agreement_vs_f32": agreement.to_list(4),
           "cosine": round(float(bf16.fidelity.cosine.mean()), 6), "cosine_drop_vs_f32": round(cosine_drop, 6),
           "p50_ms_batch1": round(float(np.median(bf16.p50_rounds)), 3),
           "p50_ms_batch1_f32": round(float(np.median(f32.p50_rounds)), 3),
           "speed_vs_f32": ratio.to_list(3) if ratio else None, "float_math": compiled.float_math, "kept": keep}
    log(f"openvino {chosen.chosen} with bf16 float parts: top-1 agreement {row['top1_agreement']:.4f}, cosine "
        f"{row['cosine']:.5f}, p50 {row['p50_ms_batch1']:.2f} ms vs {row['p50_ms_batch1_f32']:.2f} ms in f32")
    return ("bf16" if keep else "f32"), row
