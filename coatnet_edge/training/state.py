"""Resume state of a train/distill run: the optimizer beside the last weights, and what the run must agree on.

The JSON state is written last, as the commit mark: it names the weight and optimizer files by hash,
so a half-written epoch is never resumed from.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from coatnet_edge.atomic import atomic_path, write_json_atomic
from coatnet_edge.data.folders import ImageFolder
from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.hashing import sha256_file
from coatnet_edge.models.checkpoint import load_state_dict, load_weights
from coatnet_edge.models.coatnet import CoAtNet
from coatnet_edge.training.config import TrainConfig

STATE_FORMAT = "coatnet-edge/train-state/v1"


def weights_sha256(model: nn.Module) -> str:
    """Hash of every tensor in the state dict: equal hashes mean bit-identical models."""
    digest = hashlib.sha256()
    for v in model.state_dict().values():
        digest.update(v.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def run_identity(task: str, model: CoAtNet, pre: PreprocessConfig, train_set: ImageFolder,
                 cfg: TrainConfig, teacher: nn.Module | None) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed (everything but the epoch count and workers)."""
    teacher_digest = weights_sha256(teacher) if teacher is not None else None
    identity = {"task": task, "model": model.cfg.to_dict(), "preprocess": pre.to_dict(),
                "classes": train_set.classes, "num_images": len(train_set), "seed": cfg.seed,
                "batch_size": cfg.batch_size, "lr": cfg.lr, "teacher_sha256": teacher_digest}
    return json.loads(json.dumps(identity))  # as it will read back from JSON (tuples -> lists)


def save_state(out: Path, optimizer: torch.optim.Optimizer, identity: dict[str, Any], epoch: int, step: int,
               best: float, history: list[dict[str, Any]]) -> None:
    """Optimizer tensors to ``last.optim.safetensors``, then ``last.state.json`` (after ``last.safetensors``)."""
    from safetensors.torch import save_file

    tensors, scalars = {}, {}
    for idx, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    optim_path = out / "last.optim.safetensors"
    with atomic_path(optim_path) as tmp:
        save_file(tensors, str(tmp))
    write_json_atomic(out / "last.state.json", {
        "format": STATE_FORMAT, "identity": identity, "epoch": epoch, "step": step, "best": best,
        "history": history, "optimizer_scalars": scalars,
        "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in optimizer.state_dict()["param_groups"]],
        "files": {"model": "last.safetensors", "model_sha256": sha256_file(out / "last.safetensors"),
                  "optimizer": optim_path.name, "optimizer_sha256": sha256_file(optim_path)},
    })


def restore(resume: str | Path, model: CoAtNet, optimizer: torch.optim.Optimizer, identity: dict[str, Any],
            device: torch.device) -> tuple[int, int, float, list[dict[str, Any]]]:
    """Load weights and optimizer state of an earlier run of the same identity: (epoch, step, best, history)."""
    path, state = _read_state(resume)
    diffs = [k for k in identity if state["identity"].get(k) != identity[k]]
    if diffs:
        raise CoatnetEdgeError(f"checkpoint belongs to another run (differs in: {', '.join(diffs)})", path=path,
                               fix="resume with the same model, data and options, or start a new --out")
    folder = path.parent
    for key in ("model", "optimizer"):
        file = folder / state["files"][key]
        if not file.is_file() or sha256_file(file) != state["files"][f"{key}_sha256"]:
            raise CoatnetEdgeError(f"{state['files'][key]} is missing or changed since the state was written",
                                   path=folder, fix="resume from an intact run folder or start a new --out")
    model_file = folder / state["files"]["model"]
    load_weights(model, load_state_dict(model_file), source=model_file)
    _load_optimizer(optimizer, state, folder / state["files"]["optimizer"], device)
    return state["epoch"], state["step"], state["best"], state["history"]


def _read_state(resume: str | Path) -> tuple[Path, dict[str, Any]]:
    """The state JSON named by a run folder, its state file or its ``.safetensors`` weights."""
    path = Path(resume)
    path = path / "last.state.json" if path.is_dir() else path
    if path.suffix == ".safetensors":
        path = path.with_name("last.state.json")
    if not path.is_file():
        raise CoatnetEdgeError("no training state to resume from", path=path,
                               fix="pass the output folder of an earlier train/distill run")
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        state = {}
    if state.get("format") != STATE_FORMAT:
        raise CoatnetEdgeError("not a coatnet-edge training state", path=path,
                               fix="resume from the folder a train/distill run wrote")
    return path, state


def _load_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any], tensors_file: Path,
                    device: torch.device) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(tensors_file), device=str(device))
    per_param: dict[int, dict[str, Any]] = {}
    for name, value in {**tensors, **state["optimizer_scalars"]}.items():
        idx, key = name.split(".", 1)  # "<param index>.<state key>"
        per_param.setdefault(int(idx), {})[key] = value
    groups = optimizer.state_dict()["param_groups"]
    for group, saved in zip(groups, state["param_groups"], strict=True):
        group.update({k: v for k, v in saved.items() if k != "params"})
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})
