"""One ``Gelu`` node (ONNX opset 20) for each erf-GELU the opset-17 export writes as five nodes.

Why: ONNX Runtime fuses the five nodes (Div, Erf, Add, Mul, Mul) into its Gelu kernel in a float graph,
but not once ``quantize_static`` has quantized the Conv / MatMul around them: its QDQ handling gives each
consumer its own DequantizeLinear, so the two uses of x no longer share a tensor and the pattern fails
(per-operator times with and without this rewrite: docs/ort_int8_profile.md). Written as one op before
quantizing, GELU stays one kernel. The graph is converted to opset 20 first (``Gelu`` entered the standard
there); TensorRT's graph keeps opset 17, so this rewrite is for the ONNX Runtime target only.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

GELU_OPSET = 20


def _constant(graph: Any, name: str) -> float | None:
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.name == name:
            value = numpy_helper.to_array(init)
            return float(value) if value.size == 1 else None
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            value = numpy_helper.to_array(node.attribute[0].t)
            return float(value) if value.size == 1 else None
    return None


def fuse_gelu(model: Any) -> tuple[Any, int]:
    """``model`` at opset 20 with every x * 0.5 * (1 + erf(x / sqrt 2)) as one ``Gelu``; and how many."""
    from onnx import helper, version_converter

    model = version_converter.convert_version(model, GELU_OPSET)
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    def only_consumer(name: str, op_type: str) -> Any:
        found = consumers.get(name, [])
        return found[0] if len(found) == 1 and found[0].op_type == op_type else None

    replaced: dict[int, Any] = {}  # id(last node of the pattern) -> its Gelu
    dropped: set[int] = set()
    for erf in (n for n in graph.node if n.op_type == "Erf"):
        div = producer.get(erf.input[0])
        add = only_consumer(erf.output[0], "Add")
        mul = add and only_consumer(add.output[0], "Mul")
        half = mul and only_consumer(mul.output[0], "Mul")
        if div is None or div.op_type != "Div" or not (add and mul and half):
            continue
        x = div.input[0]
        if x not in mul.input or not np.isclose(_constant(graph, div.input[1]) or 0, np.sqrt(2), rtol=1e-4) \
                or _constant(graph, next(i for i in add.input if i != erf.output[0])) != 1.0 \
                or not np.isclose(_constant(graph, next(i for i in half.input if i != mul.output[0])) or 0, 0.5):
            continue
        replaced[id(half)] = helper.make_node("Gelu", [x], [half.output[0]], name=f"{erf.name}_gelu")
        dropped |= {id(div), id(erf), id(add), id(mul)}
    nodes = [replaced.get(id(n), n) for n in graph.node if id(n) not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)
    return model, len(replaced)
