"""The one learning-rate schedule (linear warm-up, then cosine decay to 0) and AdamW's parameter groups."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import nn


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based) of ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass(frozen=True)
class Schedule:
    peak_lr: float
    total_steps: int
    warmup_steps: int = 0  # 0: cosine from the first step (QAT starts from a calibrated model)

    def lr(self, step: int) -> float:
        return self.peak_lr * lr_factor(step, self.total_steps, self.warmup_steps)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weight matrices and kernels only: not on norms, biases or relative-position tables."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith(".table") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
