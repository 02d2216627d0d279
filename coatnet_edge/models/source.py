"""One loader for every model source a verb accepts: ``builtin:...``, our checkpoints, ``timm:<name>``.

Verbs need the same few facts whatever the source: the eval-mode module, its preprocessing, class
names, a variant name, the file whose hash goes into manifests, and which ONNX node names are the
attention stages (the hybrid INT8 scheme keeps their LayerNorm/Softmax/adds in float).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.models.builtin import resolve_source
from coatnet_edge.models.checkpoint import load_checkpoint
from coatnet_edge.models.timm_source import (
    TIMM_ATTENTION_STAGES,
    is_timm_source,
    load_timm_model,
    parse_timm_source,
    timm_preprocess,
)

OURS_ATTENTION_STAGES = r"^/stages/stages\.[34]/"  # S0 is the stem: S3-S4 are stages.3-4


@dataclass
class LoadedModel:
    net: nn.Module
    preprocess: PreprocessConfig
    variant: str
    source_file: Path | None  # hashed into manifests (None: random weights)
    attention_stages: str = OURS_ATTENTION_STAGES
    class_names: list[str] = field(default_factory=list)

    @property
    def stem(self) -> str:
        return self.source_file.stem if self.source_file is not None else self.variant


def load_model(source: str | Path | nn.Module, *, weights: str | Path | None = None,
               num_classes: int | None = None) -> LoadedModel:
    """The model behind ``source`` (see the module docstring), ready for export/quantization."""
    if isinstance(source, nn.Module):  # the Python API: a model object as it is (ours or timm's)
        if weights is not None:
            raise CoatnetEdgeError("weights= goes with a timm:<name> source, not a model object",
                                   fix="load the weights into the module first")
        cfg = getattr(source, "cfg", None)
        if hasattr(cfg, "depths"):  # our CoAtNet
            return LoadedModel(source.eval(), PreprocessConfig(image_size=cfg.image_size), cfg.name, None)
        if getattr(source, "pretrained_cfg", None):  # a timm model
            name = source.pretrained_cfg.get("architecture", type(source).__name__)
            return LoadedModel(source.eval(), timm_preprocess(source), name, None, TIMM_ATTENTION_STAGES)
        raise CoatnetEdgeError(f"cannot tell the preprocessing of a {type(source).__name__}",
                               fix="pass a CoAtNet from coatnet_edge.create_model or a timm model")
    if is_timm_source(source):
        spec = parse_timm_source(str(source), weights=weights, num_classes=num_classes)
        net, pre = load_timm_model(spec)
        return LoadedModel(net, pre, spec.name, spec.weights, TIMM_ATTENTION_STAGES)
    if weights is not None:
        raise CoatnetEdgeError("--weights goes with a timm:<name> model", path=weights,
                               fix="pass our checkpoint as --model, or --model timm:<name> --weights FILE")
    net, info = load_checkpoint(source, num_classes=num_classes)
    return LoadedModel(net, info.preprocess, net.cfg.name, resolve_source(source), OURS_ATTENTION_STAGES,
                       list(info.class_names))
