"""Mixed-precision FP16 ONNX: precision lives in the graph, so a strongly typed TensorRT build (10.x with
``STRONGLY_TYPED``, 11.x always) runs exactly this file, and ONNX Runtime / OpenVINO measure it on any CPU.

Float32 stays where FP16 breaks: LayerNormalization / ReduceMean (a variance of activations in the
hundreds overflows FP16's 65504), Softmax and Exp (sums of exponentials), Erf (GELU's tail loses its
precision), GlobalAveragePool (a sum over the feature map), Pow / Sqrt (norms). The graph's input and
output stay float32, so callers feed and read it like the FP32 file.

A Q/DQ INT8 graph gets the same pass for its float parts (what a TensorRT 11 INT8 engine runs): it is
moved to opset 19 first, the first opset whose QuantizeLinear/DequantizeLinear take FP16 scales, so
the quantizers run in FP16 too instead of sitting between Casts.

Why onnxconverter-common's converter and not Model Optimizer's AutoCast: AutoCast lives behind
``nvidia-modelopt[onnx]``, which pulls onnxruntime-gpu, cupy and an older onnx into a CPU install;
onnxconverter-common is pure Python (onnx, numpy, protobuf) and is what AutoCast itself builds on.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import version_converter

from coatnet_edge.errors import CoatnetEdgeError, MissingDependencyError
from coatnet_edge.export.graph_index import GraphIndex

FP32_OPS = ("LayerNormalization", "ReduceMean", "ReduceSum", "Softmax", "Exp", "Erf", "GlobalAveragePool", "Pow",
            "Sqrt")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
FP16_QDQ_OPSET = 19


def to_mixed_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with float tensors in FP16 except around ``FP32_OPS``; float32 I/O."""
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise MissingDependencyError("onnxconverter-common", hint="pip install onnxconverter-common") from None
    if is_quantized(model) and _opset(model) < FP16_QDQ_OPSET:
        model = version_converter.convert_version(model, FP16_QDQ_OPSET)
    try:
        converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=list(FP32_OPS))
    except Exception as err:  # the converter's own errors are not ours to pass through raw
        raise CoatnetEdgeError(f"FP16 conversion failed ({str(err).splitlines()[0][:200]})",
                               fix="check the ONNX file with `python -m onnx.checker`") from None
    onnx.checker.check_model(converted)
    return converted


def is_quantized(model: onnx.ModelProto) -> bool:
    return bool(GraphIndex(model).of_type(*QDQ_OPS))


def float32_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes the pass kept in float32 (recorded in the manifest)."""
    return [node.name for node in GraphIndex(model).of_type(*FP32_OPS)]


def graph_precision(path: str | Path) -> str:
    """``fp32``, ``fp16``, ``int8`` or ``int8+fp16``: what an ONNX file's weights and quantizers say."""
    model = onnx.load(str(path), load_external_data=False)
    half = any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)
    if is_quantized(model):
        return "int8+fp16" if half else "int8"
    return "fp16" if half else "fp32"


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
