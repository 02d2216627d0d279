"""The one training loop, for train, distill and QAT alike.

They differ only in what they pass in: each epoch's batches (and how the epoch is seeded), the
objective, the schedule, how the model enters train mode, and what happens after each epoch
(validation, history, checkpoints). Batches run on ``Loop.device``, optionally NHWC and bf16.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from coatnet_edge.progress import progress_bar
from coatnet_edge.training.distributed import Dist
from coatnet_edge.training.schedule import Schedule
from coatnet_edge.training.torch_data import NO_LABEL, without_worker_sigchld

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]  # (images (N, 3, H, W), labels (N,), NO_LABEL if none)
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class EpochStats:
    """One epoch so far; ``loss`` and ``kd`` are sums over images (divide by ``seen``)."""

    epoch: int  # 1-based, as logged
    step: int  # optimizer steps so far, all epochs
    started: float = field(default_factory=time.perf_counter)
    loss: float = 0.0
    kd: float = 0.0
    correct: int = 0
    labeled: int = 0
    seen: int = 0

    def add(self, loss: torch.Tensor, kd: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Count one optimizer step on the batch ``y``."""
        has_label = y != NO_LABEL
        self.step += 1
        self.loss += float(loss.detach()) * len(y)
        self.kd += float(kd) * len(y)
        self.correct += int((logits.detach().argmax(1) == y)[has_label].sum())
        self.labeled += int(has_label.sum())
        self.seen += len(y)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def status(self) -> str:
        text = f"loss {self.loss / max(self.seen, 1):.3f}"
        if self.labeled:
            text += f" acc {self.correct / self.labeled:.3f}"
        return text + f" {self.seen / max(self.elapsed(), 1e-9):.0f} img/s"


@dataclass(frozen=True)
class Loop:
    """What a fit chooses besides the model and optimizer."""

    title: str  # progress bar: "<title> epoch i/n"
    epochs: int
    steps_per_epoch: int  # every epoch runs exactly this many optimizer steps
    schedule: Schedule
    objective: LossFn  # (logits, x, y) -> (loss, KD term for logging)
    batches: Callable[[int], Batches]  # 0-based epoch -> its loader; seeds the epoch
    train_mode: Callable[[nn.Module], object] = nn.Module.train  # QAT: BatchNorm statistics stay frozen
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    channels_last: bool = False  # NHWC inputs: ~1.5x faster convs on CPU (oneDNN)
    amp: bool = False  # bf16 autocast


@without_worker_sigchld  # the loaders start their workers here
def run_epochs(model: nn.Module, optimizer: torch.optim.Optimizer, loop: Loop, on_epoch: Callable[[EpochStats], None],
               *, net: nn.Module | None = None, start_epoch: int = 0, step: int = 0, dist: Dist | None = None) -> int:
    """Run epochs ``start_epoch`` .. ``loop.epochs - 1`` from optimizer step ``step``; return the last step.

    ``on_epoch`` runs on every rank after each epoch. ``net`` is what batches go through (``model``
    in DDP under torchrun); ``dist`` None means one process.
    """
    net = model if net is None else net
    main = dist is None or dist.main
    for epoch in range(start_epoch, loop.epochs):
        batches = loop.batches(epoch)
        loop.train_mode(model)
        stats = EpochStats(epoch + 1, step)
        with progress_bar(f"{loop.title} epoch {epoch + 1}/{loop.epochs}", enabled=None if main else False) as bar:
            for i, (x, y) in enumerate(batches):
                if i >= loop.steps_per_epoch:
                    break
                _step(net, optimizer, x, y, loop, loop.schedule.lr(stats.step), stats)
                bar(i + 1, loop.steps_per_epoch, stats.status())
        on_epoch(stats)
        if dist is not None:
            dist.barrier()
        step = stats.step
    return step


def _step(net: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, loop: Loop,
          lr: float, stats: EpochStats) -> None:
    x = x.to(loop.device, non_blocking=True)
    if loop.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = y.to(loop.device, non_blocking=True)
    for group in optimizer.param_groups:
        group["lr"] = lr
    with torch.autocast(loop.device.type, dtype=torch.bfloat16, enabled=loop.amp):
        logits = net(x)
        loss, kd = loop.objective(logits, x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    stats.add(loss, kd, logits, y)
