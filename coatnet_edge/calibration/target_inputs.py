"""What a per-target INT8 selection starts from, and what it hands the export adapter.

The OpenVINO and ONNX Runtime targets re-quantize from the FP32 ONNX and the calibration images
``quantize`` used (named in the Q/DQ graph's manifest), and score on the held-out images it scored its
own candidates on, so every target starts from the same inputs and is measured against the same FP32 graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coatnet_edge.calibration.options import QuantizeOptions
from coatnet_edge.calibration.quantize import held_out_images
from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.data.sampling import build_calibration_set
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.hashing import sha256_file


@dataclass
class TargetInt8:
    """What an export adapter saves: ``model`` (None: the Q/DQ graph as it is), the ONNX graph it reproduces
    (its parity reference), the float precision to compile it with and the record of how it was chosen."""

    model: Any  # openvino.Model or onnx.ModelProto, INT8; or None
    candidate: str
    float_parts: str = "f32"  # OpenVINO: INFERENCE_PRECISION_HINT of the float parts, "f32" or "bf16"
    reference_onnx: Path | None = None
    record: dict[str, Any] = field(default_factory=dict)


def selection_inputs(qdq_onnx: Path, record: dict[str, Any]) -> tuple[Path, np.ndarray, np.ndarray, str] | str:
    """The FP32 ONNX, calibration images and held-out images ``quantize`` used, or why they are not at hand."""
    quantization, calibration = record.get("quantization") or {}, record.get("calibration") or {}
    if quantization.get("method") != "ptq":
        return f"the INT8 graph comes from {quantization.get('method', 'an unknown method')}, not PTQ"
    fp32 = record.get("fp32_onnx") or {}
    fp32_onnx = qdq_onnx.parent / fp32.get("path", "")
    if not fp32 or not fp32_onnx.is_file() or sha256_file(fp32_onnx) != fp32.get("sha256"):
        return f"the FP32 ONNX quantize started from is not beside {qdq_onnx.name} (or changed)"
    root = Path(calibration.get("root", ""))
    if not calibration.get("root") or not root.is_dir():
        return f"the calibration folder {root} is not there any more"
    try:
        calib = build_calibration_set(root, PreprocessConfig.from_dict(calibration["preprocess"]),
                                      size=calibration["size"], seed=calibration["seed"], warn_short=False)
    except CoatnetEdgeError as err:
        return f"the calibration images cannot be read again ({err})"
    if calib.sha256 != calibration.get("sha256"):
        return f"the calibration images of {root} changed since quantize"
    options = QuantizeOptions(score_size=calibration.get("score_size", QuantizeOptions.score_size),
                              seed=calibration["seed"])
    holdout, what = held_out_images(root, calib, None, options)
    if holdout is None:
        return what
    return fp32_onnx, calib.images, holdout, what


AGREEMENT_SLACK = 0.0025  # a candidate this close to the most faithful one (top-1 agreement) ...
COSINE_SLACK = 5e-4  # ... and this close in logit cosine counts as equally faithful: the faster one is kept
RULE = (f"the fastest (batch-1 p50) of the candidates within {AGREEMENT_SLACK:.2%} top-1 agreement and "
        f"{COSINE_SLACK} logit cosine of the most faithful one (highest agreement, then cosine)")


def pick(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The kept row of a scoreboard (``top1_agreement``, ``cosine``, ``p50_ms_batch1``): see ``RULE``."""
    best = max(rows, key=lambda row: (row["top1_agreement"], row["cosine"]))
    close = [row for row in rows if row["top1_agreement"] >= best["top1_agreement"] - AGREEMENT_SLACK
             and row["cosine"] >= best["cosine"] - COSINE_SLACK]
    return min(close, key=lambda row: row["p50_ms_batch1"])


def inputs_or_reason(qdq_onnx: Path, record: dict[str, Any], candidates: tuple[str, ...], allowed: tuple[str, ...],
                     runtime: str) -> tuple[Path, np.ndarray, np.ndarray, str] | str:
    """``selection_inputs``, after refusing unknown candidates in one line; a reason string when only ``qdq`` is
    asked or the inputs are not at hand (the caller then keeps the Q/DQ graph and records why)."""
    unknown = [c for c in candidates if c not in allowed]
    if unknown or not candidates:
        raise CoatnetEdgeError(f"unknown {runtime} INT8 candidate '{unknown[0] if unknown else ''}'",
                               fix=f"use some of: {', '.join(allowed)}")
    if tuple(candidates) == ("qdq",):
        return "only the qdq candidate asked"
    return selection_inputs(qdq_onnx, record)
