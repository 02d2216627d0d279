"""Torch-TensorRT: compile the PyTorch CoAtNet (dynamo IR) with FP32/FP16/INT8 kernels and save it.

INT8 follows Torch-TensorRT's documented PTQ route: NVIDIA Model Optimizer (``mtq.quantize`` with
``INT8_DEFAULT_CFG``: per-channel weights, per-tensor activations, Conv/Linear inputs only, so
LayerNorm, Softmax and residual adds stay float) calibrated on the same calibration images as the
NNCF path, exported under ``export_torch_mode`` and compiled with ``enabled_precisions={int8}``.
The NNCF Q/DQ ONNX remains the one INT8 model for ONNX Runtime, OpenVINO and ``--backend tensorrt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from coatnet_edge.atomic import atomic_path
from coatnet_edge.errors import CoatnetEdgeError, MissingDependencyError
from coatnet_edge.export.job import ExportJob, ExportOutput
from coatnet_edge.export.tensorrt import NOT_CHECKED, EngineOptions, engine_options, engine_record
from coatnet_edge.models.coatnet import export_mode
from coatnet_edge.runtime.tensorrt import TENSORRT_HINT


def import_torch_tensorrt():
    try:
        import torch_tensorrt
    except ImportError:
        raise MissingDependencyError("torch-tensorrt", hint=TENSORRT_HINT) from None
    return torch_tensorrt


def compile_and_save(model: nn.Module, path: str | Path, options: EngineOptions,
                     calibration: np.ndarray | None = None) -> Path:
    """Compile ``model`` for the local GPU and save it as an ExportedProgram (``.ep``).

    INT8 needs ``calibration`` (preprocessed NCHW images) for Model Optimizer's PTQ.
    """
    import torch

    torch_tensorrt = import_torch_tensorrt()
    if options.precision == "int8" and calibration is None:
        raise CoatnetEdgeError("torch-tensorrt --int8 needs calibration images", fix="add --calib-dir DIR")
    if not torch.cuda.is_available():
        raise CoatnetEdgeError("torch-tensorrt needs a CUDA GPU and none is visible",
                               fix="run the export on the machine with the NVIDIA GPU")
    path = Path(path)
    precisions = {"fp16": {torch.float16}, "int8": {torch.int8, torch.float16}}.get(options.precision,
                                                                                     {torch.float32})
    inputs = [torch_tensorrt.Input(min_shape=options.shape(options.min_batch),
                                   opt_shape=options.shape(options.opt_batch),
                                   max_shape=options.shape(options.max_batch), dtype=torch.float32)]
    model = model.cuda()
    example = torch.zeros(options.shape(options.opt_batch), device="cuda")
    with export_mode(model), torch.no_grad():
        if options.precision == "int8":
            compiled = _compile_int8(model, calibration, example, inputs, precisions, options)
        else:
            compiled = torch_tensorrt.compile(model, ir="dynamo", inputs=inputs, enabled_precisions=precisions,
                                              workspace_size=options.workspace_mib << 20)
        with atomic_path(path) as tmp:
            torch_tensorrt.save(compiled, str(tmp), output_format="exported_program", inputs=[example])
    return path


def _compile_int8(model: nn.Module, calibration: np.ndarray, example, inputs, precisions, options: EngineOptions):
    import torch
    import torch_tensorrt

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
        program = torch.export.export(model, (example,))
        return torch_tensorrt.dynamo.compile(program, inputs=inputs, enabled_precisions=precisions,
                                             workspace_size=options.workspace_mib << 20)


def export_artifact(job: ExportJob) -> ExportOutput:
    """An ExportedProgram compiled by Torch-TensorRT from the PyTorch model itself (not from the ONNX)."""
    if job.net is None:
        raise CoatnetEdgeError("torch-tensorrt compiles the PyTorch model, not an ONNX file", path=job.onnx_path,
                               fix="pass the checkpoint as --model")
    options = engine_options(job)
    calibration = job.calibration() if job.precision == "int8" and job.calibration else None
    artifact = compile_and_save(job.net, job.artifact_path(".ep"), options, calibration)
    return ExportOutput(artifact, [], NOT_CHECKED, {"engine": engine_record(options)})
