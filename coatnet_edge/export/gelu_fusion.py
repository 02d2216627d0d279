"""One ``Gelu`` node (ONNX opset 20) for each erf-GELU the opset-17 export writes as five nodes.

Why: ONNX Runtime fuses the five nodes (Div, Erf, Add, Mul, Mul) into its Gelu kernel in a float graph,
but not once ``quantize_static`` has quantized the Conv / MatMul around them: its QDQ handling gives each
consumer its own DequantizeLinear, so the two uses of x no longer share a tensor and the pattern fails
(per-operator times with and without this rewrite: docs/ort_int8_profile.md). Written as one op before
quantizing, GELU stays one kernel. The graph is converted to opset 20 first (``Gelu`` entered the standard
there); TensorRT's graph keeps opset 17, so this rewrite is for the ONNX Runtime target only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coatnet_edge.export.graph_index import GraphIndex

GELU_OPSET = 20


def _scalar(index: GraphIndex, name: str) -> float | None:
    value = index.constant(name)
    return float(value) if value is not None and value.size == 1 else None


def fuse_gelu(model: Any) -> tuple[Any, int]:
    """``model`` at opset 20 with every x * 0.5 * (1 + erf(x / sqrt 2)) as one ``Gelu``; and how many."""
    from onnx import helper, version_converter

    model = version_converter.convert_version(model, GELU_OPSET)
    graph = model.graph
    index = GraphIndex(graph)
    replaced: dict[int, Any] = {}  # id(last node of the pattern) -> its Gelu
    dropped: set[int] = set()
    for erf in index.of_type("Erf"):
        div = index.producer(erf.input[0])
        add = index.only_consumer(erf.output[0], "Add")
        mul = add and index.only_consumer(add.output[0], "Mul")
        half = mul and index.only_consumer(mul.output[0], "Mul")
        if div is None or div.op_type != "Div" or not (add and mul and half):
            continue
        x = div.input[0]
        if x not in mul.input or not np.isclose(_scalar(index, div.input[1]) or 0, np.sqrt(2), rtol=1e-4) \
                or _scalar(index, next(i for i in add.input if i != erf.output[0])) != 1.0 \
                or not np.isclose(_scalar(index, next(i for i in half.input if i != mul.output[0])) or 0, 0.5):
            continue
        replaced[id(half)] = helper.make_node("Gelu", [x], [half.output[0]], name=f"{erf.name}_gelu")
        dropped |= {id(div), id(erf), id(add), id(mul)}
    nodes = [replaced.get(id(n), n) for n in graph.node if id(n) not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)
    return model, len(replaced)
