"""Logits of a torch model in eval mode, batch by batch: over image tensors or an image folder."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader

from coatnet_edge.data.folders import ImageFolder
from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.training.torch_data import FolderDataset, without_worker_sigchld


@torch.no_grad()
def eval_logits(model: nn.Module, batches: Iterable[torch.Tensor], *,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """Logits (N, classes), float32 on the CPU, of the (n, 3, H, W) ``batches`` in turn.

    The model runs in eval mode and gets its train/eval mode back afterwards. For a tensor of images,
    pass ``images.split(batch_size)``.
    """
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x.to(device)).float().cpu() for x in batches])
    finally:
        model.train(was_training)


@without_worker_sigchld
def predict_logits(model: nn.Module, folder: ImageFolder, pre: PreprocessConfig, *, device: torch.device,
                   batch_size: int = 128, workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels over a folder with the eval preprocessing."""
    loader = DataLoader(FolderDataset(folder, pre, train=False), batch_size=batch_size, num_workers=workers)
    labels: list[torch.Tensor] = []

    def images() -> Iterator[torch.Tensor]:
        for x, y in loader:
            labels.append(y)
            yield x

    logits = eval_logits(model, images(), device=device)
    return logits, torch.cat(labels)


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean()) if len(labels) else float("nan")
