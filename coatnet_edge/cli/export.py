"""``coatnet-edge export``: backends and precisions come from the backend registry, the build options'
defaults from the export verb's signature, the INT8 options from ``QuantizeOptions``."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import click

from coatnet_edge.calibration.options import ONNXRUNTIME_CANDIDATES, OPENVINO_CANDIDATES
from coatnet_edge.cli.options import library_option, model_source_options, path_option, stack
from coatnet_edge.cli.output import echo_lines
from coatnet_edge.cli.quantize import quantization_options, quantize_inputs
from coatnet_edge.measure.summary import export_lines
from coatnet_edge.models.source_options import SourceOptions
from coatnet_edge.pipeline.export import export_model
from coatnet_edge.runtime import registry

PRECISION_HELP = {  # what a flag adds to "<PRECISION>. Built by --backend <backends>."
    "fp16": "the float parts in FP16 (OpenVINO: compressed weights)",
    "int8": "quantizes with --calib-dir (NNCF, Q/DQ ONNX), or takes an INT8 .onnx as --model",
    "int8+fp16": "the INT8 Q/DQ graph with its float parts in FP16 (from --calib-dir or an INT8 .onnx)",
}


def _precision_flags(func: Any) -> Any:
    """One flag per precision some backend builds (``int8+fp16`` -> ``--int8-fp16``), all setting `precision`."""
    default = inspect.signature(export_model).parameters["precision"].default
    precisions = dict.fromkeys(p for backend in registry.BACKENDS for p in backend.precisions)

    def flag(precision: str) -> Any:
        builders = [b.export_name for b in registry.BACKENDS if b.export_name and precision in b.precisions]
        hint = PRECISION_HELP.get(precision)
        text = (precision.upper() + (f": {hint}" if hint else "") + (" (the default)" if precision == default else "")
                + f". Built by --backend {', '.join(builders)}.")
        return click.option(f"--{precision.replace('+', '-')}", "precision", flag_value=precision, help=text,
                            **({"default": True} if precision == default else {}))

    return stack(*map(flag, precisions))(func)


@click.command()
@click.option("--model", "model", required=True,
              help="Checkpoint (.safetensors, builtin:student, ...), timm:<name> with --weights, a timm training "
                   "checkpoint (.pth.tar), a Hugging Face folder, or for --int8 an INT8 .onnx from `quantize`.")
@model_source_options
@library_option(export_model, "backend", type=click.Choice(registry.export_names()), help="Target runtime.")
@_precision_flags
@library_option(export_model, "batch", help="Batch size (TensorRT: the optimization profile's opt).")
@library_option(export_model, "dynamic_batch", "--dynamic-batch/--static-batch",
                help="Dynamic batch axis (TensorRT profile 1..--max-batch) or a fixed --batch.")
@library_option(export_model, "max_batch", help="Largest batch of the TensorRT profile.")
@library_option(export_model, "device", help="OpenVINO device the IR is compiled for at export (CPU, GPU, NPU, AUTO).")
@library_option(export_model, "workspace_mib", help="TensorRT builder workspace limit.")
@click.option("--openvino-candidate", "openvino_candidates", multiple=True, type=click.Choice(OPENVINO_CANDIDATES),
              default=OPENVINO_CANDIDATES, show_default=True,
              help="OpenVINO --int8: a path measured in OpenVINO on held-out images (repeatable; narrows the set; "
                   "the first is the baseline, kept unless another is more faithful beyond its paired interval). "
                   "nncf[-transformer]-unfused: NNCF on core.read_model(onnx), the graph as exported; "
                   "nncf[-transformer]: NNCF on ov.convert_model(onnx), fused; qdq: the Q/DQ graph converted.")
@click.option("--onnxruntime-candidate", "onnxruntime_candidates", multiple=True,
              type=click.Choice(ONNXRUNTIME_CANDIDATES), default=ONNXRUNTIME_CANDIDATES, show_default=True,
              help="--backend onnxruntime --int8: a graph measured in ONNX Runtime on held-out images (repeatable; "
                   "the first is the baseline). plain: quantize_static as ONNX Runtime's docs show it (u8 "
                   "activations, s8 per-channel weights); u8: Conv/MatMul/Gemm only, percentile ranges, GELU as one "
                   "op; qdq: the Q/DQ graph as is.")
@quantization_options(calib_required=False)
@path_option("--out", "out_dir", required=True, help="Folder for the artifact and its manifest.")
def export(model: str, source_options: SourceOptions, backend: str, precision: str, batch: int,
           dynamic_batch: bool, max_batch: int, device: str, workspace_mib: int, out_dir: Path,
           openvino_candidates: tuple[str, ...], onnxruntime_candidates: tuple[str, ...], **values: Any) -> None:
    """Export a model for one backend, check it where it runs, and write its manifest.

    \b
    Examples:
      coatnet-edge export --model ft.safetensors --backend onnx --out art/
      coatnet-edge export --model ft.safetensors --backend openvino --fp16 --out art/
      coatnet-edge export --model ft.safetensors --backend openvino --int8 --calib-dir images/ --out art/
      coatnet-edge export --model art/ft.int8.onnx --backend onnxruntime --int8 --out art/   # x86 CPUs
      coatnet-edge export --model ft.safetensors --backend tensorrt --int8 --calib-dir images/ --out art/
      coatnet-edge export --model art/ft.int8.onnx --backend tensorrt --int8 --out art/   # on the Jetson
    """
    inputs = quantize_inputs(values)
    options = inputs.pop("options")  # the export verb takes the quantize options as keywords
    result = export_model(model, out=out_dir, backend=backend, precision=precision, batch=batch,
                          dynamic_batch=dynamic_batch, max_batch=max_batch, device=device, workspace_mib=workspace_mib,
                          source_options=source_options, openvino_candidates=openvino_candidates,
                          onnxruntime_candidates=onnxruntime_candidates, log=click.echo,
                          **inputs, **options.to_dict())
    echo_lines(export_lines(result.artifact, backend, precision, result.manifest, result.extra_files))
