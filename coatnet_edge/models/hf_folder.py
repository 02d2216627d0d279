"""Hugging Face / timm folders (``save_for_hf``, ``push_to_hf_hub``, a Hub download): ``config.json`` names
the architecture, ``model_args`` how timm built it (``img_size``, ``in_chans``), ``pretrained_cfg`` its
preprocessing; the weights are ``model.safetensors`` (or ``pytorch_model.bin``, read with weights_only).
"""

from __future__ import annotations

import json
from pathlib import Path

from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.models.checkpoint import load_state_dict
from coatnet_edge.models.training_checkpoint import TrainedWeights

HF_CONFIG = "config.json"
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def read_hf_folder(folder: Path) -> TrainedWeights:
    """A folder written by timm's ``save_for_hf`` / ``push_to_hf_hub`` (or downloaded from the Hub)."""
    config_path = folder / HF_CONFIG
    if not config_path.is_file():
        raise CoatnetEdgeError(f"folder has no {HF_CONFIG}", path=folder,
                               fix="pass a folder written by timm's save_for_hf (config.json + model.safetensors)")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CoatnetEdgeError(f"not valid JSON ({err})", path=config_path, fix="check the file") from None
    name = config.get("architecture") if isinstance(config, dict) else None
    if not isinstance(name, str) or not name:
        raise CoatnetEdgeError("names no 'architecture'", path=config_path,
                               fix="write it with timm's save_for_hf, which records the model name")
    weights = next((folder / f for f in HF_WEIGHTS if (folder / f).is_file()), None)
    if weights is None:
        raise CoatnetEdgeError(f"folder has no weights ({' or '.join(HF_WEIGHTS)})", path=folder,
                               fix="save it with timm's save_for_hf(model, folder, safe_serialization=True)")
    state = load_state_dict(weights)
    found = TrainedWeights(name, state, weights, "Hugging Face folder (config.json)", weights_key=weights.name,
                           origin={"architecture": "config.json architecture"}, described_in=config_path)
    model_args = dict(config.get("model_args") or {})
    pretrained = dict(config.get("pretrained_cfg") or {})
    num_classes = model_args.pop("num_classes", config.get("num_classes"))
    if isinstance(num_classes, int):
        found.num_classes, found.origin["num_classes"] = num_classes, "config.json"
    img_size = model_args.pop("img_size", None)
    input_size = pretrained.get("input_size")
    if img_size is not None:
        found.image_size = int(img_size[-1] if isinstance(img_size, (list, tuple)) else img_size)
        found.origin["image_size"] = "config.json model_args.img_size"
    elif isinstance(input_size, (list, tuple)) and len(input_size) == 3:
        found.image_size, found.origin["image_size"] = int(input_size[-1]), "config.json pretrained_cfg.input_size"
    if isinstance(model_args.get("in_chans"), int):
        found.in_chans, found.origin["in_chans"] = model_args.pop("in_chans"), "config.json model_args.in_chans"
    found.model_args = model_args
    for key in ("mean", "std", "crop_pct", "interpolation"):
        if pretrained.get(key) not in (None, ""):
            value = pretrained[key]
            found.data_config[key] = tuple(value) if isinstance(value, list) else value
            found.origin[key] = f"config.json pretrained_cfg.{key}"
    return found
