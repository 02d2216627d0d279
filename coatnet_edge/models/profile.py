"""Parameter and multiply-accumulate counts.

Counting method: MACs are measured, not derived from a formula: one batch-1 forward pass runs
under ``torch.utils.flop_counter.FlopCounterMode``, which counts the FLOPs of every matrix
multiply and convolution aten op (conv, mm/addmm/bmm, attention matmuls included) as 2 x MACs.
Element-wise work (norms, activations, softmax, pooling, the bias add) is not counted, the same
convention as the CoAtNet paper's FLOPs column and timm's profiling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from coatnet_edge.models.coatnet import CoAtNet
from coatnet_edge.models.config import CoAtNetConfig


@dataclass(frozen=True)
class ModelProfile:
    params: int
    macs: int
    image_size: int

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, image_size: int, in_chans: int = 3) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, in_chans, image_size, image_size, device=_device_of(model)))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def profile_model(model: nn.Module, image_size: int | None = None, in_chans: int = 3) -> ModelProfile:
    """Profile a built model; a CoAtNet is re-built on the meta device so no real compute runs."""
    cfg = getattr(model, "cfg", None)
    if cfg is not None and hasattr(cfg, "depths"):
        return profile_config(cfg if image_size is None else cfg.replace(image_size=image_size))
    size = image_size or 224
    return ModelProfile(count_parameters(model), count_macs(model, size, in_chans), size)


def profile_config(cfg: CoAtNetConfig) -> ModelProfile:
    """Counts for a config without allocating weights (meta tensors carry shapes only)."""
    with torch.device("meta"):
        model = CoAtNet(cfg)
        macs = count_macs(model, cfg.image_size, cfg.in_chans)
    return ModelProfile(count_parameters(model), macs, cfg.image_size)


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
