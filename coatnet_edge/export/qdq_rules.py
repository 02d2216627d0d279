"""Check a Q/DQ ONNX graph against TensorRT's explicit-quantization rules, on any ONNX file.

Errors are what TensorRT rejects or silently mis-runs: custom-domain ops (e.g. OpenVINO's
FakeQuantize), unsigned or asymmetric quantizers, per-tensor weight scales or scales on the wrong
axis, per-channel activation scales, a run-time Gather on a constant table. Advisories are what
stops TensorRT from fusing Q/DQ into its INT8 kernels: a quantized LayerNormalization input, a
quantizer between a Conv and the BatchNorm/activation it would fuse, half-quantized Conv/MatMul
layers, an attention block without the Q/DQ pattern of TensorRT's fused INT8 attention.
Shape-only ops (Transpose, Reshape, Squeeze, ...) are looked through: TensorRT moves Q/DQ across them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coatnet_edge.export.graph_index import GraphIndex

WEIGHTED = ("Conv", "MatMul", "Gemm")
SHAPE_ONLY = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity")
FUSED_EPILOGUES = ("BatchNormalization", "Relu", "Sigmoid", "Clip", "LeakyRelu")


@dataclass(frozen=True)
class Finding:
    rule: str
    node: str
    message: str
    error: bool

    def __str__(self) -> str:
        return f"{'error' if self.error else 'advice'} [{self.rule}] {self.node}: {self.message}"


@dataclass
class QdqReport:
    findings: list[Finding] = field(default_factory=list)
    quantized_layers: int = 0
    float_layers: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.error]

    @property
    def advisories(self) -> list[Finding]:
        return [f for f in self.findings if not f.error]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "quantized_layers": self.quantized_layers, "float_layers": self.float_layers,
                "errors": [str(f) for f in self.errors], "advisories": [str(f) for f in self.advisories]}


def _source(g: GraphIndex, name: str) -> Any | None:
    """The producer of ``name``, looking back through shape-only ops."""
    node = g.producer(name)
    while node is not None and node.op_type in SHAPE_ONLY:
        node = g.producer(node.input[0])
    return node


def _attr(node: Any, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def check_qdq(model: Any | str | Path) -> QdqReport:
    """Every rule on one graph; ``report.ok`` when there is no error."""
    import onnx

    model = onnx.load(str(model)) if isinstance(model, str | Path) else model
    g = GraphIndex(model)
    report = QdqReport()
    add = report.findings.append

    for node in g.nodes:
        if node.domain not in ("", "ai.onnx"):
            add(Finding("standard-ops", node.name, f"op {node.domain}::{node.op_type} is not standard ONNX", True))
        if node.op_type == "Gather" and g.is_constant(node.input[0]) and not g.is_constant(node.input[1]):
            add(Finding("float-constant-bias", node.name, "run-time Gather on a constant table (fold it)", True))
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            _check_quantizer(g, node, add)
        if node.op_type == "LayerNormalization" and _quantized(g, node.input[0]):
            add(Finding("layernorm-float", node.name, "LayerNormalization reads a quantized tensor", False))
        if node.op_type == "QuantizeLinear":
            _check_placement(g, node, add)

    for node in g.nodes:
        if node.op_type not in WEIGHTED:
            continue
        inputs = [name for name in node.input[:2] if name]
        quantized = [_quantized(g, name) for name in inputs]
        if all(quantized):
            report.quantized_layers += 1
            _check_weight_axis(g, node, add)
        elif any(quantized):
            add(Finding("whole-layer", node.name, "only some inputs are quantized: TensorRT runs it in float", False))
            report.float_layers.append(node.name)
        else:
            report.float_layers.append(node.name)
    _check_attention(g, add)
    return report


def _quantized(g: GraphIndex, name: str) -> bool:
    node = _source(g, name)
    return node is not None and node.op_type == "DequantizeLinear"


def _check_quantizer(g: GraphIndex, node: Any, add: Any) -> None:
    if len(node.input) < 3 or not node.input[2]:
        add(Finding("signed-symmetric", node.name, "no zero point: ONNX defaults to uint8", True))
        return
    zero_point = g.constant(node.input[2])
    if zero_point is None:
        add(Finding("signed-symmetric", node.name, "zero point is not a constant", True))
        return
    if zero_point.dtype != np.int8:
        add(Finding("signed-symmetric", node.name, f"{zero_point.dtype} quantizer: TensorRT takes int8", True))
    if zero_point.any():
        add(Finding("signed-symmetric", node.name, "non-zero zero point: TensorRT takes symmetric only", True))
    scale = g.constant(node.input[1])
    if node.op_type == "DequantizeLinear" and scale is not None and scale.size > 1:
        source = node.input[0]
        q = g.producer(source)
        weight = g.is_constant(source) or (q is not None and q.op_type == "QuantizeLinear"
                                           and g.is_constant(q.input[0]))
        if not weight:
            add(Finding("per-tensor-activations", node.name, f"activation with {scale.size} scales", True))


def _check_weight_axis(g: GraphIndex, layer: Any, add: Any) -> None:
    """Weights quantized per output channel, on the output-channel axis."""
    weight_input = layer.input[1]
    dq = _source(g, weight_input)
    if dq is None or dq.op_type != "DequantizeLinear":
        return
    q = g.producer(dq.input[0])
    raw = dq.input[0] if g.is_constant(dq.input[0]) else (q.input[0] if q is not None else None)
    if raw is None or not g.is_constant(raw):
        return  # an activation x activation MatMul (attention): per-tensor on both sides is right
    weight = g.constant(raw)
    scale = g.constant(dq.input[1])
    if weight is None or scale is None or weight.ndim < 2:
        return
    axis = _attr(dq, "axis", 1)
    transposed = g.producer(weight_input) is not dq  # a Transpose between DQ and the layer
    if layer.op_type == "Conv":
        expected = 0
    elif layer.op_type == "Gemm":
        expected = 0 if _attr(layer, "transB", 0) else 1
    else:
        expected = 0 if transposed else weight.ndim - 1
    if scale.size == 1:
        add(Finding("per-channel-weights", layer.name, "per-tensor weight scale", True))
    elif axis % weight.ndim != expected or scale.size != weight.shape[expected]:
        add(Finding("per-channel-weights", layer.name,
                    f"weight scales on axis {axis} ({scale.size}), output channels are axis {expected}", True))


def _check_placement(g: GraphIndex, q: Any, add: Any) -> None:
    """Quantize inputs, not outputs: no Q/DQ between a Conv/MatMul and the epilogue TensorRT fuses into it."""
    producer = g.producer(q.input[0])
    if producer is None or producer.op_type not in WEIGHTED:
        return
    for dq in g.consumers(q.output[0]):
        for consumer in g.consumers(dq.output[0]):
            if consumer.op_type in FUSED_EPILOGUES:
                add(Finding("quantize-inputs-not-outputs", q.name,
                            f"Q/DQ between {producer.op_type} {producer.name} and {consumer.op_type} blocks fusion",
                            False))


def _check_attention(g: GraphIndex, add: Any) -> None:
    """TensorRT's fused INT8 attention: Q/DQ on both inputs of QK^T, after Softmax, and on P@V's inputs."""
    for softmax in g.of_type("Softmax"):
        pv = [c for c in g.consumers(softmax.output[0]) if c.op_type == "QuantizeLinear"]
        if not pv:
            add(Finding("attention-qdq", softmax.name, "Softmax output is not quantized", False))
        qk = _upstream_matmul(g, softmax.input[0])
        if qk is not None and not all(_quantized(g, name) for name in qk.input[:2]):
            add(Finding("attention-qdq", qk.name, "an input of QK^T is not quantized", False))


def _upstream_matmul(g: GraphIndex, name: str, depth: int = 4) -> Any | None:
    node = g.producer(name)
    for _ in range(depth):
        if node is None:
            return None
        if node.op_type == "MatMul":
            return node
        node = g.producer(node.input[0])
    return None


def float_layers(model: Any) -> list[str]:
    """The Conv/MatMul/Gemm layers TensorRT runs in float (not all of their data and weight inputs dequantized):
    the one count the manifests, the candidates' records and the docs use."""
    return check_qdq(model).float_layers
