"""One loader for every model source a verb accepts: ``builtin:...``, our checkpoints, ``timm:<name>`` (+ weights),
timm training checkpoints (``model_best.pth.tar``) and Hugging Face / timm folders (``config.json``).

Verbs need the same few facts whatever the source: the eval-mode module, its preprocessing, class
names, a name for its artifacts, the file whose hash goes into manifests, which of its stages are attention
stages (the hybrid INT8 scheme keeps their LayerNorm/Softmax/adds in float), and where each
fact was read (``provenance``: kept in every manifest, shown by ``coatnet-edge info``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.models.builtin import resolve_source
from coatnet_edge.models.checkpoint import load_checkpoint, load_state_dict
from coatnet_edge.models.hf_folder import read_hf_folder
from coatnet_edge.models.source_options import USER, SourceOptions, resolve_preprocess
from coatnet_edge.models.stages import OURS_ATTENTION_STAGES, AttentionStages
from coatnet_edge.models.timm_source import (
    TIMM_ATTENTION_STAGES,
    check_timm_architecture,
    is_timm_source,
    load_timm_model,
    parse_timm_source,
    timm_preprocess,
)
from coatnet_edge.models.training_checkpoint import (
    TrainedWeights,
    is_pickle_file,
    read_pickled_checkpoint,
)


@dataclass
class LoadedModel:
    net: nn.Module
    preprocess: PreprocessConfig
    variant: str
    source_file: Path | None  # hashed into manifests (None: random weights)
    attention_stages: AttentionStages = OURS_ATTENTION_STAGES
    class_names: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)  # what was read from where
    name: str | None = None  # artifact file names (default: the weights file's stem)

    @property
    def stem(self) -> str:
        if self.name:
            return self.name
        return self.source_file.stem if self.source_file is not None else self.variant


def load_model(source: str | Path | nn.Module, options: SourceOptions | None = None, *,
               weights: str | Path | None = None, num_classes: int | None = None) -> LoadedModel:
    """The model behind ``source`` (see the module docstring), ready for export/quantization.

    ``options`` (or the ``weights``/``num_classes`` shortcuts) override what the source says.
    """
    options = (options or SourceOptions()).merged(weights=str(weights) if weights is not None else None,
                                                  num_classes=num_classes)
    if options.num_classes is not None and options.num_classes < 1:
        raise CoatnetEdgeError(f"--num-classes must be >= 1, got {options.num_classes}", fix="e.g. --num-classes 10")
    if isinstance(source, nn.Module):
        return _from_module(source, options)
    if is_timm_source(source):
        name = parse_timm_source(str(source))
        trained = _timm_weights(Path(options.weights), options) if options.weights is not None else None
        net, pre, record = load_timm_model(name, trained, options)
        return LoadedModel(net, pre, name, trained.weights_file if trained else None, TIMM_ATTENTION_STAGES,
                           provenance=record)
    if options.weights is not None:
        raise CoatnetEdgeError("--weights goes with a timm:<name> model", path=options.weights,
                               fix="pass our checkpoint, a timm .pth.tar or a config.json folder as --model, "
                                   "or --model timm:<name> --weights FILE")
    path = resolve_source(source)
    if path.is_dir():
        if options.ema:
            raise CoatnetEdgeError("--ema goes with a timm training checkpoint (state_dict_ema); a Hugging Face "
                                   "folder holds one set of weights", path=path, fix="drop --ema")
        return _from_trained(read_hf_folder(path), options, name=path.name)
    if path.is_file() and is_pickle_file(path):
        trained = read_pickled_checkpoint(path, ema=options.ema)
        if trained.architecture is None:
            raise CoatnetEdgeError(f"this {trained.format} names no architecture", path=path,
                                   fix="pass --model timm:<name> --weights FILE, or our checkpoint's --config")
        return _from_trained(trained, options, name=path.name.split(".")[0])
    return _ours(source, options)


def _from_module(net: nn.Module, options: SourceOptions) -> LoadedModel:
    """The Python API: a model object as it is (ours or timm's)."""
    if options.weights is not None:
        raise CoatnetEdgeError("weights= goes with a timm:<name> source, not a model object",
                               fix="load the weights into the module first")
    cfg = getattr(net, "cfg", None)
    if hasattr(cfg, "depths"):  # our CoAtNet
        pre, origin = resolve_preprocess(PreprocessConfig(image_size=cfg.image_size), "defaults",
                                         [(options.preprocess_overrides(), {})], image_size=cfg.image_size,
                                         channels=cfg.in_chans)
        return LoadedModel(net.eval(), pre, cfg.name, None,
                           provenance={"format": "CoAtNet object", "preprocess_from": origin})
    if getattr(net, "pretrained_cfg", None):  # a timm model
        name = net.pretrained_cfg.get("architecture", type(net).__name__)
        base = timm_preprocess(net)
        pre, origin = resolve_preprocess(base, "timm pretrained_cfg", [(options.preprocess_overrides(), {})],
                                         image_size=base.image_size, channels=_in_chans(net))
        return LoadedModel(net.eval(), pre, name, None, TIMM_ATTENTION_STAGES,
                           provenance={"format": "timm model object", "preprocess_from": origin})
    raise CoatnetEdgeError(f"cannot tell the preprocessing of a {type(net).__name__}",
                           fix="pass a CoAtNet from coatnet_edge.create_model or a timm model")


def _in_chans(net: nn.Module) -> int:
    first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    return int(first.in_channels) if first is not None else 3


def _timm_weights(path: Path, options: SourceOptions) -> TrainedWeights:
    """``--weights`` of a ``timm:<name>``: a state dict (safetensors / pickle) or a timm training checkpoint."""
    if is_pickle_file(path) and path.is_file():
        return read_pickled_checkpoint(path, ema=options.ema)
    if options.ema:
        raise CoatnetEdgeError("--ema asked for EMA weights, but a safetensors file holds one set of weights",
                               path=path, fix="drop --ema (pass the EMA weights file itself)")
    return TrainedWeights(None, load_state_dict(path), path, "state dict (safetensors)")


def _from_trained(trained: TrainedWeights, options: SourceOptions, *, name: str) -> LoadedModel:
    check_timm_architecture(trained.architecture or "", trained.described_in or trained.weights_file)
    net, pre, record = load_timm_model(trained.architecture, trained, options)
    return LoadedModel(net, pre, trained.architecture, trained.weights_file, TIMM_ATTENTION_STAGES,
                       provenance=record, name=name)


def _ours(source: str | Path, options: SourceOptions) -> LoadedModel:
    """Our checkpoint: everything is in its header; ``--image-size`` must be the size it records."""
    if options.ema:
        raise CoatnetEdgeError("--ema goes with a timm training checkpoint (state_dict_ema)", path=source,
                               fix="drop --ema")
    net, info = load_checkpoint(source, num_classes=options.num_classes)
    size = info.preprocess.image_size
    if options.image_size is not None and options.image_size != size:
        raise CoatnetEdgeError(f"--image-size {options.image_size} does not fit: the checkpoint was trained at "
                               f"{size} px (its header says so)", path=source,
                               fix=f"pass --image-size {size}, or leave it out")
    pre, origin = resolve_preprocess(info.preprocess, "checkpoint header", [(options.preprocess_overrides(), {})],
                                     image_size=size, channels=net.cfg.in_chans)
    record = {"format": "coatnet-edge checkpoint (safetensors + header)", "architecture": net.cfg.name,
              "architecture_from": "checkpoint header", "num_classes": net.cfg.num_classes,
              "image_size": size, "image_size_from": USER if options.image_size else "checkpoint header",
              "channels": net.cfg.in_chans, "channels_from": "checkpoint header", "preprocess_from": origin}
    return LoadedModel(net, pre, net.cfg.name, resolve_source(source), OURS_ATTENTION_STAGES,
                       list(info.class_names), provenance=record)


def source_summary(loaded: LoadedModel) -> str:
    """One line: what was loaded and from where (verbs log it; ``info`` shows the full record)."""
    p = loaded.provenance
    parts = [f"{loaded.variant}"]
    if p.get("format"):
        parts.append(p["format"])
    if p.get("weights_key"):
        parts.append(f"weights: {p['weights_key']}")
    pre = loaded.preprocess
    parts.append(f"input {pre.channels}x{pre.image_size}x{pre.image_size} ({p.get('image_size_from', 'source')})")
    return ", ".join(parts)

