"""Torch-TensorRT: compile the PyTorch CoAtNet (dynamo IR) with FP32/FP16 kernels and save it.

INT8 through Torch-TensorRT needs a model fake-quantized by NVIDIA's Model Optimizer; this toolkit's
INT8 is the Q/DQ ONNX, which ``--backend tensorrt --int8`` builds into an engine directly, so
``--int8`` here says so instead of producing a differently quantized model.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from coatnet_edge.errors import CoatnetEdgeError, MissingDependencyError
from coatnet_edge.export.tensorrt import TENSORRT_HINT, EngineOptions
from coatnet_edge.manifest import atomic_path


def import_torch_tensorrt():
    try:
        import torch_tensorrt
    except ImportError:
        raise MissingDependencyError("torch-tensorrt", hint=TENSORRT_HINT) from None
    return torch_tensorrt


def compile_and_save(model: nn.Module, path: str | Path, options: EngineOptions) -> Path:
    """Compile ``model`` for the local GPU and save it as an ExportedProgram (``.ep``)."""
    import torch

    from coatnet_edge.models.coatnet import export_mode

    if options.precision == "int8":
        raise CoatnetEdgeError("torch-tensorrt --int8 needs a Model-Optimizer-quantized model",
                               fix="use --backend tensorrt --int8 (builds the engine from the toolkit's Q/DQ ONNX)")
    torch_tensorrt = import_torch_tensorrt()
    if not torch.cuda.is_available():
        raise CoatnetEdgeError("torch-tensorrt needs a CUDA GPU and none is visible",
                               fix="run the export on the machine with the NVIDIA GPU")
    path = Path(path)
    precisions = {torch.float16} if options.precision == "fp16" else {torch.float32}
    inputs = [torch_tensorrt.Input(min_shape=options.shape(options.min_batch),
                                   opt_shape=options.shape(options.opt_batch),
                                   max_shape=options.shape(options.max_batch), dtype=torch.float32)]
    model = model.cuda()
    with export_mode(model), torch.no_grad():
        compiled = torch_tensorrt.compile(model, ir="dynamo", inputs=inputs, enabled_precisions=precisions,
                                          workspace_size=options.workspace_mib << 20)
        example = torch.zeros(options.shape(options.opt_batch), device="cuda")
        with atomic_path(path) as tmp:
            torch_tensorrt.save(compiled, str(tmp), output_format="exported_program", inputs=[example])
    return path
