"""Facts read from a written ONNX graph, as a reviewer would read them (never from the code that wrote it)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

QDQ = ("QuantizeLinear", "DequantizeLinear")


def constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Every constant tensor by name: initializers and Constant nodes (exporters write both)."""
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    values.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node if n.op_type == "Constant"})
    return values


def dequantized_inputs(graph: onnx.GraphProto) -> dict[str, int]:
    """Node name -> how many of its inputs a DequantizeLinear produces."""
    produced_by = {out: n.op_type for n in graph.node for out in n.output}
    return {n.name: sum(produced_by.get(i) == "DequantizeLinear" for i in n.input) for n in graph.node}


def qdq_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    return [n for n in graph.node if n.op_type in QDQ]
