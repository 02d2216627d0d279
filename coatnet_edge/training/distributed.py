"""torchrun's environment (WORLD_SIZE > 1: DistributedDataParallel, gloo on CPU, nccl on GPU), or one process."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.training.state import weights_sha256


class Dist:
    """The process group (joined on creation under torchrun), this rank and its device."""

    def __init__(self, device: str):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device(device)
        if self.device.type == "cuda":
            if not torch.cuda.is_available():
                raise CoatnetEdgeError("--device cuda but no CUDA GPU is visible", fix="use --device cpu")
            self.device = torch.device("cuda", local_rank if self.world_size > 1 else (self.device.index or 0))
            torch.cuda.set_device(self.device)
        if self.world_size > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def wrap(self, model: nn.Module) -> nn.Module:
        """What batches go through: ``model`` in DistributedDataParallel under torchrun, else itself."""
        return nn.parallel.DistributedDataParallel(model) if self.world_size > 1 else model

    def finish(self, model: nn.Module) -> dict[str, Any]:
        """The weights hash, and under torchrun whether every rank ended with the same weights; leaves the group."""
        if self.world_size > 1:  # BatchNorm running stats last moved on each rank's own batch: take rank 0's
            for buffer in model.buffers():
                torch.distributed.broadcast(buffer, 0)
        digest = weights_sha256(model)
        summary: dict[str, Any] = {"weights_sha256": digest}
        if self.world_size > 1:
            digests: list[str | None] = [None] * self.world_size
            torch.distributed.all_gather_object(digests, digest)
            summary["ddp"] = {"world_size": self.world_size, "backend": torch.distributed.get_backend(),
                              "weights_sha256_per_rank": digests, "identical": len(set(digests)) == 1}
            torch.distributed.destroy_process_group()
        return summary
