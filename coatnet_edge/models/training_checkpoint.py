"""What a training tool wrote: timm's ``CheckpointSaver`` files (``model_best.pth.tar``), read without a
full unpickle, as a ``TrainedWeights`` (also what ``hf_folder`` reads a Hugging Face folder into).

timm's checkpoints carry an ``argparse.Namespace`` (the training args): it is the one Python type allowed
past ``torch.load(weights_only=True)``, through ``torch.serialization.safe_globals``; anything else is
refused before it is built. A ``TrainedWeights`` holds the architecture, the weights, and what the file
says about classes, input size and preprocessing, each fact with its origin.
"""

from __future__ import annotations

import argparse
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from coatnet_edge.errors import CoatnetEdgeError

ALLOWED_GLOBALS = (argparse.Namespace,)  # what timm's train.py pickles besides tensors and builtins
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar")
_WEIGHT_KEYS = ("state_dict", "model", "model_state_dict")
_EMA_KEY = "state_dict_ema"


@dataclass
class TrainedWeights:
    """A model as its training tool described it; ``origin`` says where each fact was read."""

    architecture: str | None  # a timm model name; None for a bare state dict
    state: dict[str, torch.Tensor]
    weights_file: Path  # hashed into manifests
    format: str
    weights_key: str | None = None
    num_classes: int | None = None
    image_size: int | None = None
    in_chans: int | None = None
    data_config: dict[str, Any] = field(default_factory=dict)  # mean, std, crop_pct, interpolation
    model_args: dict[str, Any] = field(default_factory=dict)  # extra timm.create_model arguments
    origin: dict[str, str] = field(default_factory=dict)
    described_in: Path | None = None  # a Hugging Face folder's config.json (errors name it)


def safe_torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with ``ALLOWED_GLOBALS``; refuses anything else in one line."""
    head = path.read_bytes()[:4] if path.is_file() else b""
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch.save: a zip, or (legacy) a pickle
        raise CoatnetEdgeError(f"not a PyTorch checkpoint (it starts with {head!r}, neither the zip archive "
                               "torch.save writes nor a pickle)", path=path,
                               fix="pass the .pth/.pth.tar/.pt file your training wrote, or a .safetensors file")
    try:
        with torch.serialization.safe_globals(list(ALLOWED_GLOBALS)):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        text = str(err)
        if isinstance(err, pickle.UnpicklingError) or "weights only" in text.lower():
            found = re.search(r"GLOBAL ([\w.]+)", text)
            what = f" ({found.group(1)})" if found else ""
            allowed = ", ".join(f"{t.__module__}.{t.__qualname__}" for t in ALLOWED_GLOBALS)
            raise CoatnetEdgeError(f"refused to unpickle: the file holds a Python object{what} beyond tensors and "
                                   f"the allowed {allowed}, and loading it could run arbitrary code", path=path,
                                   fix="re-save the weights as safetensors (safetensors.torch.save_file("
                                       "model.state_dict(), 'model.safetensors')) where they were made") from None
        lines = text.strip().splitlines()
        raise CoatnetEdgeError(f"cannot read checkpoint ({lines[0][:200] if lines else type(err).__name__})",
                               path=path, fix="the file may be truncated or not a PyTorch checkpoint") from None


def is_pickle_file(path: Path) -> bool:
    return path.suffix in PICKLE_SUFFIXES


def read_pickled_checkpoint(path: Path, *, ema: bool = False) -> TrainedWeights:
    """A ``.pth.tar``/``.pth``/``.pt``: timm's training checkpoint (weights + ``arch``/``args``) or a state dict."""
    obj = safe_torch_load(path)
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()) and obj:
        if ema:
            raise _no_ema(path, "a bare state dict")
        return TrainedWeights(None, _strip_module(obj), path, "state dict (torch.save)")
    if not isinstance(obj, dict):
        raise CoatnetEdgeError(f"checkpoint holds a {type(obj).__name__}, not a dict of weights", path=path,
                               fix="pass the file timm's train.py wrote (model_best.pth.tar) or a state dict")
    present = [k for k in (*_WEIGHT_KEYS, _EMA_KEY) if isinstance(obj.get(k), dict)]
    if ema:
        if _EMA_KEY not in present:
            raise _no_ema(path, f"only {', '.join(present)}" if present else "no weights")
        key = _EMA_KEY
    else:
        key = next((k for k in _WEIGHT_KEYS if k in present), None)
    if key is None:
        raise CoatnetEdgeError(f"checkpoint holds no weights (keys: {', '.join(sorted(map(str, obj))[:8])}; no "
                               f"'state_dict')", path=path,
                               fix="pass the model_best.pth.tar / last.pth.tar timm's CheckpointSaver wrote, "
                                   "or a state dict")
    state = obj[key]
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CoatnetEdgeError(f"'{key}' is not a dict of tensors", path=path, fix="pass a timm training checkpoint")
    args = obj.get("args")
    args = vars(args) if isinstance(args, argparse.Namespace) else args if isinstance(args, dict) else {}
    weights_note = key + (f" ({_EMA_KEY} also present: --ema loads the EMA weights)"
                          if key != _EMA_KEY and _EMA_KEY in present else "")
    found = TrainedWeights(None, _strip_module(state), path, "timm training checkpoint (CheckpointSaver)",
                           weights_key=weights_note)
    if isinstance(args.get("model"), str):
        found.architecture, found.origin["architecture"] = args["model"], "args.model"
    elif isinstance(obj.get("arch"), str):
        found.architecture, found.origin["architecture"] = obj["arch"], "arch"
    else:
        found.format = "state dict (in a checkpoint dict)"
    _take_training_args(found, args)
    return found


def _take_training_args(found: TrainedWeights, args: dict[str, Any]) -> None:
    """timm train.py's ``--num-classes --img-size/--input-size --in-chans --mean --std --crop-pct --interpolation``."""
    if isinstance(args.get("num_classes"), int):
        found.num_classes, found.origin["num_classes"] = args["num_classes"], "args.num_classes"
    input_size = args.get("input_size")
    if isinstance(args.get("img_size"), int):
        found.image_size, found.origin["image_size"] = args["img_size"], "args.img_size"
    elif isinstance(input_size, (list, tuple)) and len(input_size) == 3:
        found.image_size, found.origin["image_size"] = int(input_size[-1]), "args.input_size"
    if isinstance(args.get("in_chans"), int):
        found.in_chans, found.origin["in_chans"] = args["in_chans"], "args.in_chans"
    elif isinstance(input_size, (list, tuple)) and len(input_size) == 3:
        found.in_chans, found.origin["in_chans"] = int(input_size[0]), "args.input_size"
    for name in ("mean", "std", "crop_pct", "interpolation"):
        value = args.get(name)
        if value not in (None, "", [], ()):
            found.data_config[name] = tuple(value) if isinstance(value, (list, tuple)) else value
            found.origin[name] = f"args.{name}"


def _strip_module(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("module."): v for k, v in state.items()}


def _no_ema(path: Path, holds: str) -> CoatnetEdgeError:
    return CoatnetEdgeError(f"--ema asked for EMA weights ({_EMA_KEY}), but the checkpoint holds {holds}", path=path,
                            fix="drop --ema, or pass a checkpoint saved with --model-ema")
