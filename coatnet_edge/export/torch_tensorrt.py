"""Torch-TensorRT: compile the PyTorch CoAtNet (dynamo IR) with FP32/FP16/INT8 kernels and save it.

Explicit typing (``use_explicit_typing=True``, Torch-TensorRT's strongly typed mode; TensorRT 11 has
no other): FP16 is the model in half, INT8 follows Torch-TensorRT's documented PTQ route: NVIDIA
Model Optimizer (``mtq.quantize`` with ``INT8_DEFAULT_CFG``: per-channel weights, per-tensor
activations, Conv/Linear inputs only, so LayerNorm, Softmax and residual adds stay float) calibrated
on the same calibration images as the NNCF path, exported under ``export_torch_mode``. The batch
dimension is a ``torch.export.Dim`` over the manifest's range.
The NNCF Q/DQ ONNX remains the one INT8 model for ONNX Runtime, OpenVINO and ``--backend tensorrt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from coatnet_edge.atomic import atomic_path
from coatnet_edge.errors import CoatnetEdgeError, MissingDependencyError
from coatnet_edge.export.tensorrt import EngineOptions
from coatnet_edge.models.coatnet import export_mode
from coatnet_edge.runtime.tensorrt import TENSORRT_HINT


def import_torch_tensorrt():
    try:
        import torch_tensorrt
    except ImportError:
        raise MissingDependencyError("torch-tensorrt", hint=TENSORRT_HINT) from None
    return torch_tensorrt


class TypedModel(nn.Module):
    """The model in the precision it should run in, with float32 in and out: Torch-TensorRT's explicit
    typing takes the precision from the module's own dtypes (FP16 = the model in half), not from flags."""

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model, self.dtype = model.to(dtype), dtype

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images.to(self.dtype)).float()


def export_program(model: nn.Module, options: EngineOptions, device: str = "cuda") -> torch.export.ExportedProgram:
    """``torch.export`` of the model with a dynamic batch dimension covering ``min_batch..max_batch`` (the
    range the manifest records), so the saved program accepts every batch it claims."""
    dynamic = options.min_batch < options.max_batch
    # NOTE: an example batch of 1 would specialise the dimension to 1; trace with one inside the range >= 2
    example_batch = max(options.opt_batch, 2) if dynamic else options.opt_batch
    example = torch.zeros(options.shape(example_batch), device=device)
    shapes = ({0: torch.export.Dim("batch", min=options.min_batch, max=options.max_batch)},) if dynamic else None
    return torch.export.export(model, (example,), dynamic_shapes=shapes)


def compile_and_save(model: nn.Module, path: str | Path, options: EngineOptions,
                     calibration: np.ndarray | None = None) -> Path:
    """Compile ``model`` for the local GPU with explicit typing and save it as an ExportedProgram (``.ep``).

    FP16: the model in half (``TypedModel``); INT8: Model Optimizer's Q/DQ on the FP32 model,
    calibrated on ``calibration`` (preprocessed NCHW images).
    """
    torch_tensorrt = import_torch_tensorrt()
    if options.precision == "int8" and calibration is None:
        raise CoatnetEdgeError("torch-tensorrt --int8 needs calibration images", fix="add --calib-dir DIR")
    if not torch.cuda.is_available():
        raise CoatnetEdgeError("torch-tensorrt needs a CUDA GPU and none is visible",
                               fix="run the export on the machine with the NVIDIA GPU")
    path = Path(path)
    inputs = [torch_tensorrt.Input(min_shape=options.shape(options.min_batch),
                                   opt_shape=options.shape(options.opt_batch),
                                   max_shape=options.shape(options.max_batch), dtype=torch.float32)]
    model = model.cuda().eval()
    with export_mode(model), torch.no_grad():
        if options.precision == "int8":
            program = _quantized_program(model, calibration, options)
        else:
            dtype = torch.float16 if options.precision == "fp16" else torch.float32
            program = export_program(TypedModel(model, dtype), options)
        compiled = torch_tensorrt.dynamo.compile(program, inputs=inputs, use_explicit_typing=True,
                                                 workspace_size=options.workspace_mib << 20)
        example = torch.zeros(options.shape(options.opt_batch), device="cuda")
        with atomic_path(path) as tmp:
            torch_tensorrt.save(compiled, str(tmp), output_format="exported_program", inputs=[example])
    return path


def _quantized_program(model: nn.Module, calibration: np.ndarray, options: EngineOptions):
    try:
        import modelopt.torch.quantization as mtq
        from modelopt.torch.quantization.utils import export_torch_mode
    except ImportError:
        raise MissingDependencyError("nvidia-modelopt", hint="pip install nvidia-modelopt (Torch-TensorRT's INT8 "
                                                             "PTQ route)") from None

    def forward_loop(net: nn.Module) -> None:
        for start in range(0, len(calibration), 16):
            net(torch.from_numpy(calibration[start:start + 16]).cuda())

    mtq.quantize(model, mtq.INT8_DEFAULT_CFG, forward_loop=forward_loop)
    with export_torch_mode():
        return export_program(model, options)
