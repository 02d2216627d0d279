"""The INT8 choices, defined once: ``quantize()``, the recipe's [quantize] table and the CLI's options
all read ``QuantizeOptions`` (its ``Literal`` types are the allowed values, its defaults the defaults).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal

from coatnet_edge.errors import CoatnetEdgeError

OpenVinoCandidate = Literal["nncf-transformer", "nncf-transformer-unfused", "nncf", "nncf-unfused", "qdq"]
# baseline first: NNCF TRANSFORMER on the fused graph was the most faithful plain path on every built-in and fresh
# model (docs/int8_seeds.md); the unfused form stays a candidate (docs/openvino_graph_form.md)
OPENVINO_CANDIDATES: tuple[str, ...] = ("nncf-transformer", "nncf-transformer-unfused", "nncf", "nncf-unfused",
                                        "qdq")
# ONNX Runtime target: baseline first (quantize_static as its docs show it)
OnnxRuntimeCandidate = Literal["plain", "u8", "qdq"]
ONNXRUNTIME_CANDIDATES: tuple[str, ...] = ("plain", "u8", "qdq")

Method = Literal["ptq", "qat"]
Preset = Literal["tensorrt", "openvino"]  # tensorrt: symmetric INT8 everywhere; openvino: asymmetric activations
Scheme = Literal["auto", "hybrid", "cnn", "transformer"]  # auto: each of ``candidates`` measured, the best kept
# an NNCF scheme [+ SmoothQuant | + per-channel centring of 1x1 / depthwise Conv and MatMul inputs], or Model
# Optimizer's ONNX PTQ (optional extra: pip install '.[modelopt]')
Candidate = Literal["hybrid", "cnn", "transformer", "transformer+smoothquant", "transformer+shift", "modelopt"]
# the order --max-drop returns layers to float in: most sensitive first, or most SQNR recovered per ms lost
BudgetOrder = Literal["sensitivity", "per-ms"]
METHODS: tuple[str, ...] = typing.get_args(Method)
PRESETS: tuple[str, ...] = typing.get_args(Preset)
SCHEMES: tuple[str, ...] = ("hybrid", "cnn", "transformer")  # what one quantization pass can use
CANDIDATES: tuple[str, ...] = typing.get_args(Candidate)


@dataclass(frozen=True)
class QuantizeOptions:
    """How to quantize; the inputs (model, folders) stay arguments of ``quantize()``."""

    method: Method = "ptq"
    preset: Preset = "tensorrt"
    scheme: Scheme = "auto"
    # what "auto" measures; the first is the baseline (NNCF's plain symmetric PTQ), kept unless another candidate is
    # more faithful beyond its paired interval on held-out images (calibration/selection.py)
    candidates: tuple[Candidate, ...] = ("cnn", "hybrid", "transformer", "transformer+smoothquant",
                                         "transformer+shift")
    calib_size: int = 300
    seed: int = 0
    smooth_quant: bool = False
    ignored_patterns: tuple[str, ...] = ()  # regexes over ONNX node names, kept in float
    max_drop: float | None = None  # accuracy budget, top-1 points (labeled) or disagreement points
    eval_size: int = 500
    score_size: int = 1000  # cap on the held-out images (beyond the calibration sample) candidates are scored on
    sensitivity: bool = False
    max_float_layers: int = 16
    budget_order: BudgetOrder = "sensitivity"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ignored_patterns", tuple(self.ignored_patterns))
        object.__setattr__(self, "candidates", tuple(self.candidates))
        unknown = [c for c in self.candidates if c not in CANDIDATES]
        if unknown or not self.candidates:
            raise CoatnetEdgeError(f"unknown candidate scheme '{unknown[0]}'" if unknown
                                   else "no candidate scheme given", fix=f"use some of: {', '.join(CANDIDATES)}")
        for name, value in (("method", self.method), ("preset", self.preset), ("scheme", self.scheme),
                            ("budget_order", self.budget_order)):
            allowed = choices(name)
            if value not in allowed:
                raise CoatnetEdgeError(f"unknown {name} '{value}'", fix=f"use one of: {', '.join(allowed)}")
        for name in ("calib_size", "eval_size", "score_size", "max_float_layers"):
            if getattr(self, name) < 1:
                raise CoatnetEdgeError(f"{name} must be >= 1, got {getattr(self, name)}", fix="use a positive value")

    @classmethod
    def from_kwargs(cls, **options: Any) -> QuantizeOptions:
        """Options from keyword arguments, refusing unknown names in one line (a typo is not ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise CoatnetEdgeError(f"unknown quantize option '{unknown[0]}'", fix=f"use: {', '.join(sorted(known))}")
        return cls(**options)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def choices(name: str) -> tuple[str, ...]:
    """The allowed values of a ``QuantizeOptions`` field (for the CLI's ``click.Choice`` and the recipe)."""
    return typing.get_args(typing.get_type_hints(QuantizeOptions)[name])


@dataclass(frozen=True)
class QatConfig:
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-4  # AdamW, cosine decay; measured on the built-in student: 1e-4 > 2e-5
    kd_alpha: float = 1.0  # KD weight when labels exist (1.0: reproduce the FP32 model, labels unused)
    kd_temperature: float = 1.0  # match the FP32 logits themselves: agreement is the goal
    min_crop_scale: float = 0.5
    seed: int = 0
    workers: int = 2
    max_steps_per_epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
