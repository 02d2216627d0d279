"""What a per-target INT8 selection starts from, and what it hands the export adapter.

The OpenVINO and ONNX Runtime targets re-quantize from the FP32 ONNX and the calibration images ``quantize``
used (named in the Q/DQ graph's manifest), and score on the same held-out split of the same folder, so every
target starts from the same inputs and is measured against the same FP32 graph by the same engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from coatnet_edge.calibration.options import QuantizeOptions
from coatnet_edge.calibration.selection import MIN_SCORE_IMAGES, ScoreSet, in_sample_score_set, score_set_of
from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.data.sampling import split_calibration_folder
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


class SelectionUnavailable(CoatnetEdgeError):
    """The selection's inputs are not at hand: the target keeps the Q/DQ graph and records ``reason``."""


@dataclass
class SelectionInputs:
    """The FP32 ONNX, calibration images and score set ``quantize`` used."""

    fp32_onnx: Path
    calib_images: np.ndarray
    score_set: ScoreSet | None  # held-out images, else the calibration images; None: fewer than MIN_SCORE_IMAGES


def selection_inputs(qdq_onnx: Path, record: dict[str, Any]) -> SelectionInputs:
    """The inputs ``quantize`` used, read again and hash-checked; ``SelectionUnavailable`` says why not."""
    # NOTE: the same split of the same folder as quantize's: one scan, one seeded order (data/sampling.py)
    quantization, calibration = record.get("quantization") or {}, record.get("calibration") or {}
    if quantization.get("method") != "ptq":
        raise SelectionUnavailable(f"the INT8 graph comes from {quantization.get('method', 'an unknown method')}, "
                                   "not PTQ")
    fp32 = record.get("fp32_onnx") or {}
    fp32_onnx = qdq_onnx.parent / fp32.get("path", "")
    if not fp32 or not fp32_onnx.is_file() or sha256_file(fp32_onnx) != fp32.get("sha256"):
        raise SelectionUnavailable(f"the FP32 ONNX quantize started from is not beside {qdq_onnx.name} (or changed)")
    root = Path(calibration.get("root", ""))
    if not calibration.get("root") or not root.is_dir():
        raise SelectionUnavailable(f"the calibration folder {root} is not there any more")
    try:
        calib, held_out = split_calibration_folder(
            root, PreprocessConfig.from_dict(calibration["preprocess"]), calib_size=calibration["size"],
            score_size=calibration.get("score_size", QuantizeOptions.score_size), seed=calibration["seed"],
            min_score_images=MIN_SCORE_IMAGES)
    except CoatnetEdgeError as err:
        raise SelectionUnavailable(f"the calibration images cannot be read again ({err})") from None
    if calib.sha256 != calibration.get("sha256"):
        raise SelectionUnavailable(f"the calibration images of {root} changed since quantize")
    if held_out is not None and (record.get("held_out") or {}).get("sha256", held_out.sha256) != held_out.sha256:
        raise SelectionUnavailable(f"the held-out images of {root} changed since quantize")
    fp32_model = onnx.load(str(fp32_onnx))
    score_set = score_set_of(held_out, fp32_model) if held_out else in_sample_score_set(calib, fp32_model)
    return SelectionInputs(fp32_onnx, calib.images, score_set)


def inputs_unless_qdq_only(qdq_onnx: Path, record: dict[str, Any], candidates: tuple[str, ...]) -> SelectionInputs:
    """``selection_inputs``; ``SelectionUnavailable`` too when only the Q/DQ graph itself was asked for."""
    if candidates == ("qdq",):
        raise SelectionUnavailable("only the qdq candidate asked")
    return selection_inputs(qdq_onnx, record)


def qdq_as_is(engine: str, qdq_onnx: Path, text: str, why: str, **extra: Any) -> TargetInt8:
    """The Q/DQ graph kept unmeasured, and the record of why."""
    return TargetInt8(None, "qdq", reference_onnx=qdq_onnx, record={
        "engine": engine, "chosen": "qdq", "path": text, **extra, "method": f"not measured: {why}", "scoreboard": []})


def checked_candidates(candidates: tuple[str, ...], allowed: tuple[str, ...], runtime: str) -> tuple[str, ...]:
    """``candidates``, or a one-line error naming the unknown one."""
    unknown = [c for c in candidates if c not in allowed]
    if unknown or not candidates:
        raise CoatnetEdgeError(f"unknown {runtime} INT8 candidate '{unknown[0] if unknown else ''}'",
                               fix=f"use some of: {', '.join(allowed)}")
    return tuple(candidates)
