"""Bring-your-own timm CoAtNet: ``timm:<name>`` + local weights, a timm training checkpoint or a Hugging
Face folder (see ``training_checkpoint``), never a download.

The model is built with ``pretrained=False`` at the size its weights were trained at, and the weights
loaded strictly; its preprocessing is what the user or their training tool stated, else the timm
model's pretrained config (input size, interpolation, crop_pct, mean/std), converted to ours so
calibration, evaluation and the torch-free predictor see exactly what timm's eval transform gives.
timm is an optional extra: ``pip install 'coatnet-edge[timm]'``.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

from torch import nn

from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.errors import CoatnetEdgeError, MissingDependencyError
from coatnet_edge.models.checkpoint import load_weights
from coatnet_edge.models.source_options import USER, SourceOptions, resolve_preprocess
from coatnet_edge.models.stages import AttentionStages
from coatnet_edge.models.training_checkpoint import TrainedWeights

PREFIX = "timm:"
# Which top-level modules of timm's MaxxVit-based CoAtNets are convolution and which attention:
# stem + stages.0-1 are MBConv, stages.2-3 transformer blocks (ours: stem = stages.0, S3-S4 = stages.3-4).
TIMM_ATTENTION_STAGES = AttentionStages((2, 3))


def is_timm_source(source: str | Path) -> bool:
    return str(source).startswith(PREFIX)


def _import_timm():
    try:
        import timm
    except ImportError:
        raise MissingDependencyError("timm", extra="timm") from None
    return timm


def parse_timm_source(source: str) -> str:
    """``timm:coatnet_0_rw_224`` -> the checked timm name; unknown names get the closest timm names suggested."""
    name = source.removeprefix(PREFIX).strip()
    timm = _import_timm()
    known = timm.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6) or \
            difflib.get_close_matches(name, timm.list_models("*coatnet*"), n=3, cutoff=0.3)
        hint = f"did you mean: {', '.join(close)}" if close else "see timm.list_models('*coatnet*')"
        raise CoatnetEdgeError(f"timm has no model '{name}'", fix=hint)
    return name


def timm_preprocess(model: nn.Module) -> PreprocessConfig:
    """Our preprocessing config equal to timm's eval transform for this model's pretrained config."""
    cfg: dict[str, Any] = dict(getattr(model, "pretrained_cfg", {}) or {})
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    return PreprocessConfig(image_size=size, crop_pct=float(cfg.get("crop_pct", 0.875)),
                            interpolation=str(cfg.get("interpolation", "bicubic")),
                            mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
                            std=tuple(cfg.get("std", (0.229, 0.224, 0.225))))


def load_timm_model(name: str, trained: TrainedWeights | None, options: SourceOptions
                    ) -> tuple[nn.Module, PreprocessConfig, dict[str, Any]]:
    """Build timm's ``name`` without downloading, load the weights strictly, eval mode.

    Classes, input size and channels come from ``options``, else from what the training tool wrote
    (``trained``), else from the weights' shapes; preprocessing likewise over timm's pretrained config.
    Returns the model, its preprocessing and where each fact came from (kept in manifests, shown by ``info``).
    """
    timm = _import_timm()
    where = trained.weights_file if trained is not None else None
    state = trained.state if trained is not None else None
    origin = dict(trained.origin) if trained is not None else {}
    kwargs: dict[str, Any] = dict(trained.model_args) if trained is not None else {}
    num_classes = options.num_classes or (trained.num_classes if trained is not None else None)
    origin["num_classes"] = USER if options.num_classes else origin.get("num_classes", "head weights")
    if num_classes is None and state is not None:
        head = next((v for k, v in state.items() if k.endswith("head.fc.weight")), None)
        num_classes = int(head.shape[0]) if head is not None else None
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    stem = state.get("stem.conv1.weight") if state is not None else None
    if stem is not None and stem.ndim == 4:
        kwargs["in_chans"] = int(stem.shape[1])
        origin["in_chans"] = "stem.conv1 weights"
    image_size = _image_size(state, trained, options, origin, where)
    if image_size is not None:
        kwargs["img_size"] = image_size
    model = timm.create_model(name, pretrained=False, **kwargs)
    if state is not None:
        load_weights(model, state, source=where)
    pretrained = timm_preprocess(model)
    channels = int(kwargs.get("in_chans", 3))
    data = trained.data_config if trained is not None else {}
    preprocess, pre_origin = resolve_preprocess(
        pretrained, f"timm pretrained_cfg of {name}", [(data, origin), (options.preprocess_overrides(), {})],
        image_size=image_size or pretrained.image_size, channels=channels)
    record = {"format": trained.format if trained is not None else "timm:<name>" + (" (random weights)"
                                                                                   if state is None else ""),
              "architecture": name, "architecture_from": origin.get("architecture", "timm:<name>"),
              "weights_key": trained.weights_key if trained is not None else None,
              "ema": options.ema, "num_classes": num_classes, "num_classes_from": origin["num_classes"],
              "image_size": preprocess.image_size,
              "image_size_from": origin.get("image_size", f"timm pretrained_cfg of {name}"),
              "channels": channels, "channels_from": origin.get("in_chans", "timm default (RGB)"),
              "preprocess_from": pre_origin}
    return model.eval(), preprocess, record


def _image_size(state: dict[str, Any] | None, trained: TrainedWeights | None, options: SourceOptions,
                origin: dict[str, str], where: Path | None) -> int | None:
    """The input size to build at: asked for, else recorded by the training tool, else read off the weights."""
    fitted = trained_image_size(state, where) if state is not None else None
    recorded = trained.image_size if trained is not None else None
    if options.image_size is not None:
        asked, origin["image_size"] = options.image_size, USER
    elif recorded is not None:
        asked = recorded
    elif fitted is not None:
        origin["image_size"] = "relative-position tables of the weights"
        return fitted
    else:
        return None
    if fitted is not None and asked != fitted:
        said = "--image-size" if origin["image_size"] == USER else origin["image_size"]
        raise CoatnetEdgeError(f"{said} {asked} fits none of the weights' relative-position tables (they were "
                               f"trained at {fitted} px)", path=where,
                               fix=f"pass --image-size {fitted}, or leave it out: it is read from the weights")
    return asked


def is_timm_coatnet(name: str) -> bool:
    """timm's CoAtNets (``coatnet_*``, ``coatnext_*``): the MaxxVit-based models this toolkit deploys."""
    return name.startswith(("coatnet", "coatnext")) or name == "test_coatnet"


def check_timm_architecture(name: str, where: Path) -> None:
    """``name`` (from a checkpoint or config.json) is a CoAtNet timm knows, or a one-line error naming the file."""
    timm = _import_timm()
    if name not in timm.list_models():
        close = difflib.get_close_matches(name, timm.list_models("*coatne*"), n=3, cutoff=0.4)
        hint = f"did you mean: {', '.join(close)}" if close else "see timm.list_models('*coatnet*')"
        raise CoatnetEdgeError(f"names the architecture '{name}', which this timm ({timm.__version__}) does not "
                               "have", path=where, fix=f"{hint}; or upgrade timm")
    if not is_timm_coatnet(name):
        raise CoatnetEdgeError(f"'{name}' is not a CoAtNet: coatnet-edge deploys CoAtNets (timm coatnet_*/"
                               "coatnext_*, or its own)", path=where,
                               fix="pass the checkpoint of a CoAtNet, e.g. one trained with --model coatnet_0_rw_224")


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
