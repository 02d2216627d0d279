"""What a train/distill run is configured with and what it returns."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coatnet_edge.errors import CoatnetEdgeError


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; recorded in every checkpoint so a run can be reproduced or resumed."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    min_crop_scale: float = 0.25  # random-resized-crop area range [min, 1]
    kd_alpha: float = 0.7  # weight of the KD term when labels exist (1.0 = pure KD)
    kd_temperature: float = 4.0
    seed: int = 0
    workers: int = 2
    max_steps_per_epoch: int | None = None
    device: str = "cpu"
    amp: bool = False

    def __post_init__(self) -> None:
        checks = [(self.epochs >= 1, "epochs must be > 0"), (self.batch_size >= 1, "batch size must be >= 1"),
                  (self.lr > 0, "learning rate must be > 0"), (0.0 <= self.kd_alpha <= 1.0, "kd_alpha is in [0, 1]"),
                  (self.kd_temperature > 0, "temperature must be > 0"), (self.workers >= 0, "workers >= 0"),
                  (0.0 < self.min_crop_scale <= 1.0, "min crop scale is in (0, 1]")]
        for ok, message in checks:
            if not ok:
                raise CoatnetEdgeError(message, fix="check the training options")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class FitResult:
    out_dir: Path
    checkpoint: Path  # last epoch's weights
    best_checkpoint: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    val_dir: Path | None = None
