"""Checkpoints: safetensors weights with the model's JSON config in the file's own metadata.

One file holds everything needed to rebuild the model and its preprocessing, so the two can never
drift apart. Nothing is ever unpickled: ``.pt``/``.pth`` files are read only through
``torch.load(weights_only=True)`` (see ``training_checkpoint``) and then need a config from ``--config``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from coatnet_edge.atomic import atomic_path
from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.models.builtin import resolve_source
from coatnet_edge.models.coatnet import CoAtNet
from coatnet_edge.models.config import CoAtNetConfig
from coatnet_edge.models.training_checkpoint import is_pickle_file, read_pickled_checkpoint

FORMAT = "coatnet-edge/checkpoint/v1"
_META_KEY = "coatnet_edge"


@dataclass
class CheckpointInfo:
    """What a checkpoint says about its model beyond the weights."""

    model: CoAtNetConfig
    preprocess: PreprocessConfig
    class_names: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "model": self.model.to_dict(), "preprocess": self.preprocess.to_dict(),
                "class_names": list(self.class_names), "extra": self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | Path = "<config>") -> CheckpointInfo:
        try:
            return cls(model=CoAtNetConfig.from_dict(data["model"]),
                       preprocess=PreprocessConfig.from_dict(data.get("preprocess", {})),
                       class_names=list(data.get("class_names", [])), extra=dict(data.get("extra", {})))
        except KeyError as err:
            raise CoatnetEdgeError(f"config has no {err} section", path=source,
                                   fix="save the model with coatnet_edge.save_checkpoint") from None
        except CoatnetEdgeError as err:
            raise CoatnetEdgeError(str(err), path=source) from None


def default_preprocess(cfg: CoAtNetConfig) -> PreprocessConfig:
    return PreprocessConfig(image_size=cfg.image_size)


def save_checkpoint(model: CoAtNet, path: str | Path, *, preprocess: PreprocessConfig | None = None,
                    class_names: list[str] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` (``.safetensors``) atomically, config embedded in the header."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CoatnetEdgeError("checkpoints are written as safetensors", path=path,
                               fix="use a .safetensors file name")
    info = CheckpointInfo(model.cfg, preprocess or default_preprocess(model.cfg), class_names or [], extra or {})
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={_META_KEY: json.dumps(info.to_dict(), sort_keys=True)})
    return path


def read_checkpoint_info(path: str | Path, config: str | Path | dict[str, Any] | None = None) -> CheckpointInfo:
    """The config of a checkpoint without building the model (cheap: reads the header only)."""
    path = _existing(path)
    if config is not None:
        return _info_from_config_arg(config)
    if path.suffix != ".safetensors":
        raise CoatnetEdgeError("this weights file carries no model config", path=path,
                               fix="pass --config CONFIG.json (from a coatnet-edge checkpoint) or re-save "
                                   "as .safetensors with coatnet_edge.save_checkpoint")
    meta = _safetensors_metadata(path)
    if _META_KEY not in meta:
        raise CoatnetEdgeError("safetensors file has no coatnet-edge config in its metadata", path=path,
                               fix="pass --config CONFIG.json, or save it with coatnet_edge.save_checkpoint")
    try:
        return CheckpointInfo.from_dict(json.loads(meta[_META_KEY]), path)
    except json.JSONDecodeError as err:
        raise CoatnetEdgeError(f"embedded config is not valid JSON ({err.msg})", path=path,
                               fix="re-save the checkpoint") from None


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors only: safetensors directly, pickle-based formats through ``weights_only=True``."""
    path = _existing(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise CoatnetEdgeError(f"not a readable safetensors file ({_first_line(err)})", path=path,
                                   fix="re-download or re-save the checkpoint; it may be truncated") from None
    if not is_pickle_file(path):
        raise CoatnetEdgeError(f"unknown checkpoint type '{path.suffix}'", path=path,
                               fix="use a .safetensors file (or a .pt/.pth state dict, or timm's .pth.tar)")
    return read_pickled_checkpoint(path).state


def load_checkpoint(path: str | Path, *, config: str | Path | dict[str, Any] | None = None,
                    num_classes: int | None = None) -> tuple[CoAtNet, CheckpointInfo]:
    """Rebuild the model a checkpoint describes and load its weights (strictly), in eval mode."""
    info = read_checkpoint_info(path, config)
    if num_classes is not None and num_classes != info.model.num_classes:
        raise CoatnetEdgeError(f"checkpoint has {info.model.num_classes} classes, {num_classes} were expected",
                               path=path, fix="use a checkpoint trained on the same classes")
    model = CoAtNet(info.model)
    load_weights(model, load_state_dict(path), source=path)
    return model.eval(), info


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], *, source: str | Path) -> None:
    """Strict load with a one-line diagnosis of the first mismatched keys or shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:3])})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches (first: {'; '.join(shapes[:2])})")
    if problems:
        raise CoatnetEdgeError(f"weights do not match the model config: {'; '.join(problems)}", path=source,
                               fix="pass the config/variant and --num-classes the weights were trained with")
    model.load_state_dict(state, strict=True)


def _info_from_config_arg(config: str | Path | dict[str, Any]) -> CheckpointInfo:
    if isinstance(config, dict):
        return CheckpointInfo.from_dict(config)
    config = _existing(config)
    try:
        return CheckpointInfo.from_dict(json.loads(config.read_text()), config)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CoatnetEdgeError(f"config is not valid JSON ({err})", path=config, fix="check the file") from None


def _safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CoatnetEdgeError(f"not a readable safetensors file ({_first_line(err)})", path=path,
                               fix="re-download or re-save the checkpoint; it may be truncated") from None


def _existing(path: str | Path) -> Path:
    path = resolve_source(path)
    if not path.is_file():
        raise CoatnetEdgeError("file not found" if not path.exists() else "not a file", path=path,
                               fix="check the path")
    return path


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
