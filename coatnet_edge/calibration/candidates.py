"""The TensorRT target's candidates: NNCF's plain symmetric PTQ is the baseline, our schemes challenge it.

Why: no fixed scheme is the most faithful everywhere (docs/tensorrt_candidates.md), and on models it was not
tuned on a scheme of ours can lose to the plain path. So ``--scheme auto`` quantizes with each candidate and
lets the one scoring engine (``selection.py``) keep the plain path unless a candidate is more faithful beyond
its paired interval on held-out images; the whole scoreboard is recorded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from coatnet_edge.calibration.modelopt_ptq import CANDIDATE as MODELOPT
from coatnet_edge.calibration.modelopt_ptq import quantize_modelopt
from coatnet_edge.calibration.ptq import PtqResult, PtqSettings, quantize_onnx
from coatnet_edge.calibration.selection import ScoreSet, select
from coatnet_edge.data.sampling import ImageSample
from coatnet_edge.runtime.onnxruntime import InMemorySession

CANDIDATE_TEXT = {
    "cnn": "plain NNCF PTQ on the ONNX graph (defaults: symmetric, every layer; per-tensor signed activations)",
    "hybrid": "NNCF, conv stages INT8, attention-stage norms/softmax/adds in float",
    "transformer": "NNCF model_type=TRANSFORMER",
    "transformer+smoothquant": "NNCF model_type=TRANSFORMER with SmoothQuant",
    "transformer+shift": "NNCF model_type=TRANSFORMER with per-channel centring of 1x1/depthwise Conv and "
                         "MatMul inputs",
    MODELOPT: "Model Optimizer's ONNX PTQ",
}


def candidate_settings(settings: PtqSettings, candidate: str) -> PtqSettings:
    """``hybrid`` / ``cnn`` / ``transformer`` set the scheme; ``+smoothquant`` adds NNCF's SmoothQuant, ``+shift``
    centres the inputs of 1x1 Conv / MatMul / depthwise Conv layers per channel first (``channel_shift.py``);
    ``modelopt`` (Model Optimizer's own placement) leaves ``settings`` as they are."""
    if candidate == MODELOPT:
        return settings
    scheme, _, extra = candidate.partition("+")
    return dataclasses.replace(settings, scheme=scheme, smooth_quant=settings.smooth_quant or extra == "smoothquant",
                               channel_shift=settings.channel_shift or extra == "shift")


def quantize_candidate(fp32_model: Any, calib: ImageSample, settings: PtqSettings, candidate: str) -> PtqResult:
    """The Q/DQ graph of one candidate: NNCF's ONNX backend with a scheme, or Model Optimizer's ONNX PTQ."""
    if candidate == MODELOPT:
        return quantize_modelopt(fp32_model, calib, settings)
    return quantize_onnx(fp32_model, calib, candidate_settings(settings, candidate))


def choose_ptq(fp32_model: Any, calib: ImageSample, settings: PtqSettings, candidates: tuple[str, ...],
               score_set: ScoreSet | None, log: Callable[[str], None] = print) -> tuple[PtqResult, dict[str, Any]]:
    """PTQ with each candidate (``settings`` otherwise; the first candidate is the baseline), scored in ONNX
    Runtime against FP32 on ``score_set``; the kept graph and the record. Without a score set the baseline is
    kept, and the record says why. Not timed: ONNX Runtime on a CPU says nothing of TensorRT's speed."""
    chosen = select("tensorrt", candidates, lambda name: quantize_candidate(fp32_model, calib, settings, name),
                    lambda result: InMemorySession(result.model), score_set, timed=False, log=log)
    for row in chosen.record["scoreboard"]:
        row["scheme"] = row["candidate"]
    return chosen.built, chosen.record
