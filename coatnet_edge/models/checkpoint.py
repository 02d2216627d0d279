"""Checkpoints: safetensors weights with the model's JSON config in the file's own metadata.

One file holds everything needed to rebuild the model and its preprocessing, so the two can never
drift apart. Nothing is ever unpickled: ``.pt``/``.pth`` files are read only through
``torch.load(weights_only=True)`` and then need a config from ``--config``.
"""

from __future__ import annotations

import json
import pickle
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

FORMAT = "coatnet-edge/checkpoint/v1"
_META_KEY = "coatnet_edge"
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


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
    if path.suffix not in _PICKLE_SUFFIXES:
        raise CoatnetEdgeError(f"unknown checkpoint type '{path.suffix}'", path=path,
                               fix="use a .safetensors file (or a .pt/.pth state dict)")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        detail = _first_line(err)
        if isinstance(err, pickle.UnpicklingError) or "weights only" in str(err).lower():
            raise CoatnetEdgeError("refused to unpickle: the file holds Python objects beyond tensors, and "
                                   "loading them could run arbitrary code", path=path,
                                   fix="re-save it as safetensors (safetensors.torch.save_file(model.state_dict()"
                                       ", 'model.safetensors')) where it was made") from None
        raise CoatnetEdgeError(f"cannot read checkpoint ({detail})", path=path,
                               fix="the file may be truncated or not a PyTorch checkpoint") from None
    return _unwrap_state_dict(obj, path)


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


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model", "model_state_dict", "ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CoatnetEdgeError("checkpoint is not a state dict of tensors", path=path,
                               fix="save model.state_dict(), ideally as safetensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _existing(path: str | Path) -> Path:
    path = resolve_source(path)
    if not path.is_file():
        raise CoatnetEdgeError("file not found" if not path.exists() else "not a file", path=path,
                               fix="check the path")
    return path


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
