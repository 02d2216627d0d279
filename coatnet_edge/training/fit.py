"""``train`` and ``distill`` around the loop: sampler, AdamW, resume, per-epoch validation and checkpoints.

AdamW, linear warm-up then cosine decay, seeded per epoch so a resumed run is the same run;
checkpoints every epoch (safetensors + a JSON state that is written last, as the commit mark).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from coatnet_edge.atomic import ensure_output_dir, write_json_atomic
from coatnet_edge.data.augment import AugmentConfig
from coatnet_edge.data.folders import ImageFolder
from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.models.checkpoint import save_checkpoint
from coatnet_edge.models.coatnet import CoAtNet
from coatnet_edge.training.config import FitResult, TrainConfig
from coatnet_edge.training.distributed import Dist
from coatnet_edge.training.loop import EpochStats, Loop, run_epochs
from coatnet_edge.training.losses import Objective, seen_through
from coatnet_edge.training.predict import predict_logits, top1
from coatnet_edge.training.schedule import Schedule, param_groups
from coatnet_edge.training.state import restore, run_identity, save_state
from coatnet_edge.training.torch_data import FolderDataset, without_worker_sigchld

Log = Callable[[str], None]
Teacher = tuple[nn.Module, PreprocessConfig]  # frozen model and the preprocessing it was trained on


@without_worker_sigchld
def fit(model: CoAtNet, pre: PreprocessConfig, train_set: ImageFolder, val_set: ImageFolder | None,
        cfg: TrainConfig, out: str | Path, *, resume: str | Path | None, teacher: Teacher | None, log: Log,
        class_names: list[str] | None = None) -> FitResult:
    """Train ``model`` (distill from ``teacher`` when given), writing ``out``/last and best weights every epoch."""
    out = ensure_output_dir(out)
    dist = Dist(cfg.device)
    task = "distill" if teacher else "train"
    model.to(dist.device, memory_format=torch.channels_last)  # ~1.5x faster convs on CPU (oneDNN)
    if teacher:
        teacher[0].to(dist.device).eval()
    dataset = FolderDataset(train_set, pre, train=True, seed=cfg.seed,
                            augment=AugmentConfig(scale=(cfg.min_crop_scale, 1.0)))
    sampler = DistributedSampler(dataset, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=True)
    steps = _steps_per_epoch(len(sampler), cfg, train_set, dist)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    net = dist.wrap(model)
    identity = run_identity(task, model, pre, train_set, cfg, teacher[0] if teacher else None)
    epoch_end = _EpochEnd(model, optimizer, pre, cfg, dist, out, identity, task,
                          list(class_names or train_set.classes), val_set, log)
    start_epoch, step = 0, 0
    if resume is not None:
        start_epoch, step, epoch_end.best, epoch_end.history = restore(resume, model, optimizer, identity,
                                                                       dist.device)
        log(f"resumed from epoch {start_epoch} (step {step})")
    objective = Objective(seen_through(teacher[0], pre, teacher[1]) if teacher else None, kd_alpha=cfg.kd_alpha,
                          temperature=cfg.kd_temperature, label_smoothing=cfg.label_smoothing)
    loop = Loop(task, cfg.epochs, steps, Schedule(cfg.lr, cfg.epochs * steps, round(cfg.warmup_epochs * steps)),
                objective, functools.partial(_epoch_loader, dataset, sampler, cfg, dist), device=dist.device,
                channels_last=True, amp=cfg.amp)
    run_epochs(model, optimizer, loop, epoch_end, net=net, start_epoch=start_epoch, step=step, dist=dist)
    summary = _finish(model, dist, out, epoch_end.history)
    return FitResult(out, epoch_end.last, epoch_end.best_path, epoch_end.history, summary,
                     val_set.root if val_set else None)


def _steps_per_epoch(samples: int, cfg: TrainConfig, train_set: ImageFolder, dist: Dist) -> int:
    """Full batches in this process's share of the images, capped by ``max_steps_per_epoch``."""
    steps = samples // cfg.batch_size
    if steps == 0:
        raise CoatnetEdgeError(f"{len(train_set)} images cannot fill one batch of {cfg.batch_size}"
                               f"{' per process' if dist.world_size > 1 else ''}", path=train_set.root,
                               fix="lower --batch-size or add images")
    return min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps


def _epoch_loader(dataset: FolderDataset, sampler: DistributedSampler, cfg: TrainConfig, dist: Dist,
                  epoch: int) -> DataLoader:
    """One epoch's batches, all randomness seeded by (seed, epoch): the same after a resume."""
    torch.manual_seed(cfg.seed * 100_003 + epoch)  # drop-path etc.
    sampler.set_epoch(epoch)
    dataset.set_epoch(epoch)
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                      drop_last=True, pin_memory=dist.device.type == "cuda")


@dataclass
class _EpochEnd:
    """After each epoch: record it; on rank 0 also validate, save last (and best) weights and the state, log."""

    model: CoAtNet
    optimizer: torch.optim.Optimizer
    pre: PreprocessConfig
    cfg: TrainConfig
    dist: Dist
    out: Path
    identity: dict[str, Any]
    task: str
    class_names: list[str]
    val_set: ImageFolder | None
    log: Log
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float = -1.0  # best score so far: val top-1, or -train loss without a validation set

    @property
    def last(self) -> Path:
        return self.out / "last.safetensors"

    @property
    def best_path(self) -> Path:
        return self.out / "best.safetensors"

    def __call__(self, stats: EpochStats) -> None:
        record = self._record(stats)
        if not self.dist.main:
            return
        if self.val_set is not None:
            record["val_top1"] = top1(*predict_logits(self.model, self.val_set, self.pre, device=self.dist.device))
        self.history.append(record)
        score = record.get("val_top1", -record["train_loss"])
        extra = {"task": self.task, "epoch": stats.epoch, "history": self.history,
                 "train_config": self.cfg.to_dict()}
        save_checkpoint(self.model, self.last, preprocess=self.pre, class_names=self.class_names, extra=extra)
        if score > self.best:
            self.best = score
            save_checkpoint(self.model, self.best_path, preprocess=self.pre, class_names=self.class_names,
                            extra=extra)
        save_state(self.out, self.optimizer, self.identity, stats.epoch, stats.step, self.best, self.history)
        self.log(_epoch_line(record, self.cfg.epochs))

    def _record(self, stats: EpochStats) -> dict[str, Any]:
        seconds = stats.elapsed()
        record = {"epoch": stats.epoch, "step": stats.step, "lr": self.optimizer.param_groups[0]["lr"],
                  "train_loss": stats.loss / stats.seen, "seconds": round(seconds, 2),
                  "images_per_s": round(stats.seen * self.dist.world_size / seconds, 1)}
        if self.task == "distill":
            record["train_kd"] = stats.kd / stats.seen
        if stats.labeled:
            record["train_top1"] = stats.correct / stats.labeled
        return record


def _epoch_line(r: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {r['epoch']}/{epochs}", f"loss {r['train_loss']:.4f}"]
    if "train_kd" in r:
        parts.append(f"kd {r['train_kd']:.4f}")
    if "train_top1" in r:
        parts.append(f"train top-1 {r['train_top1']:.3f}")
    if "val_top1" in r:
        parts.append(f"val top-1 {r['val_top1']:.4f}")
    parts += [f"{r['images_per_s']:.0f} img/s", f"{r['seconds']:.1f} s"]
    return " | ".join(parts)


def _finish(model: CoAtNet, dist: Dist, out: Path, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's summary; under torchrun the ranks' agreement also goes into the state rank 0 wrote."""
    summary = dist.finish(model)
    if history:
        summary["final"] = history[-1]
    if dist.main and dist.world_size > 1:
        state = json.loads((out / "last.state.json").read_text())
        write_json_atomic(out / "last.state.json", {**state, "ddp": summary["ddp"]})
    return summary
