"""The one interface every backend runner has: run a preprocessed NCHW batch, return logits.

Runners never import torch (they are what an edge device runs with NumPy and one runtime), except
the TensorRT runner, which takes its CUDA buffers from PyTorch for now.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class RunnerInfo:
    """What ran: ``precision`` is the precision that really executed (a row's label), ``artifact_precision``
    what the file holds; they differ when a runtime falls back (an FP16 IR on a CPU without FP16 math
    runs in bf16)."""

    backend: str
    precision: str
    device: str
    artifact: str
    artifact_precision: str = ""

    def __post_init__(self) -> None:
        if not self.artifact_precision:
            object.__setattr__(self, "artifact_precision", self.precision)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Runner(Protocol):
    info: RunnerInfo

    def run(self, images: np.ndarray) -> np.ndarray:
        """Logits (N, classes) for a float32 NCHW batch."""
        ...


def run_batches(runner: Runner, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Logits of ``images`` in batches of ``batch_size``: the one way every layer runs a runner over a set."""
    return np.concatenate([runner.run(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
