"""PyTorch eager runner: the FP32 reference (and BF16 autocast) for a checkpoint, same interface as
the deployment runners so the reference is measured the same way as every artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.models.source import load_model
from coatnet_edge.models.source_options import SourceOptions
from coatnet_edge.runtime.base import RunnerInfo

PRECISIONS = ("fp32", "bf16", "fp16")


class PyTorchRunner:
    def __init__(self, path: str | Path, *, precision: str = "fp32", device: str = "cpu", threads: int | None = None,
                 weights: str | Path | None = None, source_options: SourceOptions | None = None, **_: object):
        import torch

        if precision not in PRECISIONS:
            raise CoatnetEdgeError(f"unknown PyTorch precision '{precision}'",
                                   fix=f"use one of: {', '.join(PRECISIONS)}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise CoatnetEdgeError("no CUDA GPU is visible for the PyTorch runner", fix="use device='cpu'")
        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.loaded = load_model(path, source_options, weights=weights)  # any model source load_model reads
        self.model = self.loaded.net
        self.model.eval().to(device)
        self.device = torch.device(device)
        self.dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        name = "CPU" if self.device.type == "cpu" else torch.cuda.get_device_name(self.device)
        self.info = RunnerInfo("pytorch", precision, name, str(path))

    def run(self, images: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(self.device)
        with torch.no_grad(), torch.autocast(self.device.type, dtype=self.dtype or torch.float32,
                                             enabled=self.dtype is not None):
            return self.model(x).float().cpu().numpy()
