"""Bring-your-own timm CoAtNet: ``timm:<name>`` + local weights, never a download.

The model is built with ``pretrained=False`` and the user's weights loaded strictly (safetensors, or a
``.pth`` state dict through ``torch.load(weights_only=True)``); its preprocessing comes from the timm
model's pretrained config (input size, interpolation, crop_pct, mean/std), converted to ours so
calibration, evaluation and the torch-free predictor see exactly what timm's eval transform gives.
timm is an optional extra: ``pip install 'coatnet-edge[timm]'``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.errors import CoatnetEdgeError, MissingDependencyError
from coatnet_edge.models.checkpoint import load_state_dict, load_weights

PREFIX = "timm:"
# Which top-level modules of timm's MaxxVit-based CoAtNets are convolution and which attention:
# stem + stages.0-1 are MBConv, stages.2-3 transformer blocks (ours: stem = stages.0, S3-S4 = stages.3-4).
TIMM_ATTENTION_STAGES = r"^/stages/stages\.[23]/"


def is_timm_source(source: str | Path) -> bool:
    return str(source).startswith(PREFIX)


@dataclass(frozen=True)
class TimmSpec:
    name: str
    weights: Path | None
    num_classes: int | None


def _import_timm():
    try:
        import timm
    except ImportError:
        raise MissingDependencyError("timm", extra="timm") from None
    return timm


def parse_timm_source(source: str, *, weights: str | Path | None = None, num_classes: int | None = None) -> TimmSpec:
    """``timm:coatnet_0_rw_224`` -> a checked spec; unknown names get the closest timm names suggested."""
    name = source.removeprefix(PREFIX).strip()
    timm = _import_timm()
    known = timm.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6) or \
            difflib.get_close_matches(name, timm.list_models("*coatnet*"), n=3, cutoff=0.3)
        hint = f"did you mean: {', '.join(close)}" if close else "see timm.list_models('*coatnet*')"
        raise CoatnetEdgeError(f"timm has no model '{name}'", fix=hint)
    if num_classes is not None and num_classes < 1:
        raise CoatnetEdgeError(f"--num-classes must be >= 1, got {num_classes}", fix="e.g. --num-classes 10")
    return TimmSpec(name, Path(weights) if weights is not None else None, num_classes)


def timm_preprocess(model: nn.Module) -> PreprocessConfig:
    """Our preprocessing config equal to timm's eval transform for this model's pretrained config."""
    cfg: dict[str, Any] = dict(getattr(model, "pretrained_cfg", {}) or {})
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    return PreprocessConfig(image_size=size, crop_pct=float(cfg.get("crop_pct", 0.875)),
                            interpolation=str(cfg.get("interpolation", "bicubic")),
                            mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
                            std=tuple(cfg.get("std", (0.229, 0.224, 0.225))))


def load_timm_model(spec: TimmSpec) -> tuple[nn.Module, PreprocessConfig]:
    """Build ``spec.name`` without downloading, load ``spec.weights`` strictly, eval mode."""
    timm = _import_timm()
    state = load_state_dict(spec.weights) if spec.weights is not None else None
    num_classes = spec.num_classes
    if num_classes is None and state is not None:
        head = next((v for k, v in state.items() if k.endswith("head.fc.weight")), None)
        num_classes = int(head.shape[0]) if head is not None else None
    kwargs = {"num_classes": num_classes} if num_classes is not None else {}
    image_size = trained_image_size(state, spec.weights) if state is not None else None
    if image_size is not None:
        kwargs["img_size"] = image_size
    model = timm.create_model(spec.name, pretrained=False, **kwargs)
    if state is not None:
        load_weights(model, state, source=spec.weights)
    preprocess = timm_preprocess(model)
    if image_size is not None:  # timm's pretrained config still says 224: the weights say otherwise
        preprocess = dataclasses.replace(preprocess, image_size=image_size)
    return model.eval(), preprocess


def trained_image_size(state: dict[str, Any], source: Path | None) -> int | None:
    """The input size a timm CoAtNet's weights were trained at, from its relative-position tables.

    Their size is fixed by the input: the first attention stage (stride 16) holds a ((2 w - 1)^2, heads)
    table for a w x w feature map, so a model fine-tuned at 64 or 384 px cannot be built at 224 (timm's
    default) and load. ``None`` where the weights hold no such table (MLP position biases, no attention).
    """
    table = next((v for k, v in state.items() if k.startswith("stages.2.")
                  and k.endswith("relative_position_bias_table")), None)
    if table is None:
        return None
    side = math.isqrt(int(table.shape[0]))
    if side * side != table.shape[0] or side % 2 == 0:
        raise CoatnetEdgeError(f"the relative-position tables ({tuple(table.shape)}) fit no input size", path=source,
                               fix="pass the weights of a timm CoAtNet as its training script saved them")
    return 16 * (side + 1) // 2
