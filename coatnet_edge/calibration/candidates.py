"""Candidates measured, the best kept: PTQ with each candidate scheme, scored against FP32 on images held
apart from calibration, on the user's own model and images.

Why: no fixed default is the most faithful everywhere. Measured on the built-in models (docs/int8_peers.md),
``hybrid`` wins on some model/split pairs and ``transformer`` on others by up to 0.8 agreement points, and
SmoothQuant helps the student's transformer graph (+0.3 points on corrupted images) but not the teacher's;
on other people's models and images the order changes again. So the quantize verb quantizes with each
candidate (seconds each on the built-in models) and keeps the one whose INT8 graph agrees best with FP32
(top-1 agreement, then logit cosine) on held-out images, recording the whole scoreboard.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from coatnet_edge.calibration.modelopt_ptq import CANDIDATE as MODELOPT
from coatnet_edge.calibration.modelopt_ptq import quantize_modelopt
from coatnet_edge.calibration.ptq import PtqResult, PtqSettings, quantize_onnx
from coatnet_edge.calibration.sensitivity import onnx_logits
from coatnet_edge.data.sampling import ImageSample
from coatnet_edge.metrics import compare_logits

MIN_SCORE_IMAGES = 32  # fewer held-out images than this cannot tell candidates apart (one flip = 3 points)


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
               holdout: np.ndarray | None, holdout_what: str, log: Callable[[str], None] = print
               ) -> tuple[PtqResult, dict[str, Any]]:
    """PTQ with each candidate scheme (``settings`` otherwise); the most faithful on ``holdout``, and the record.

    Without enough held-out images the first candidate is kept, and the record says why.
    """
    if holdout is None or len(holdout) < MIN_SCORE_IMAGES:
        chosen = quantize_candidate(fp32_model, calib, settings, candidates[0])
        reason = (f"not measured: {0 if holdout is None else len(holdout)} held-out images ({holdout_what}), fewer "
                  f"than {MIN_SCORE_IMAGES}; kept the first candidate")
        log(f"candidates: {reason} ({candidates[0]})")
        return chosen, {"chosen": candidates[0], "method": reason, "scoreboard": []}
    reference = onnx_logits(fp32_model, holdout)
    scored: list[tuple[tuple[float, float], PtqResult, dict[str, Any]]] = []
    for scheme in candidates:
        started = time.perf_counter()
        result = quantize_candidate(fp32_model, calib, settings, scheme)
        agreement = compare_logits(reference, onnx_logits(result.model, holdout))
        row = {"scheme": scheme, "top1_agreement": round(agreement.top1_agreement, 4),
               "cosine": round(agreement.cosine, 6), "sqnr_db": round(agreement.sqnr_db, 2),
               "seconds": round(time.perf_counter() - started, 1)}
        log(f"candidate {scheme}: top-1 agreement {row['top1_agreement']:.4f}, cosine {row['cosine']:.5f} "
            f"on {len(holdout)} held-out images ({row['seconds']} s)")
        scored.append(((agreement.top1_agreement, agreement.cosine), result, row))
    _, best, best_row = max(scored, key=lambda item: item[0])
    for _, _, row in scored:
        row["chosen"] = row is best_row
    method = (f"PTQ with each candidate scheme, scored in ONNX Runtime against the FP32 graph on {len(holdout)} "
              f"images held apart from calibration ({holdout_what}): highest top-1 agreement, then logit cosine")
    log(f"candidates: kept {best_row['scheme']}")
    return best, {"chosen": best_row["scheme"], "method": method, "scoreboard": [row for _, _, row in scored]}
