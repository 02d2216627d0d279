"""The one ONNX graph index every graph pass asks: producers, consumers, constants, on a graph built here."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from coatnet_edge.export.graph_index import GraphIndex, drop_unused_initializers


def _graph() -> onnx.ModelProto:
    """x -> Relu -> a; a fans out to MatMul(a, W) and Add(a, b); Mul reads c twice; Div by a Constant node."""
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("MatMul", ["a", "W"], ["b"], name="matmul"),
        helper.make_node("Add", ["a", "b"], ["c"], name="add"),
        helper.make_node("Mul", ["c", "c"], ["d"], name="square"),
        helper.make_node("Constant", [], ["k"], name="two", value=numpy_helper.from_array(np.float32(2.0))),
        helper.make_node("Div", ["d", "k"], ["y"], name="div"),
    ]
    weight = np.arange(9, dtype=np.float32).reshape(3, 3)
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])],
                              [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(weight, "unused")])
    return helper.make_model(graph)


def _names(nodes: list) -> list[str]:
    return [n.name for n in nodes]


def test_producers_and_fan_out_consumers_in_graph_order() -> None:
    index = GraphIndex(_graph())
    assert index.producer("a").name == "relu" and index.producer("y").name == "div"
    assert index.producer("x") is None and index.producer("W") is None  # a graph input, an initializer
    assert _names(index.consumers("a")) == ["matmul", "add"]  # fan-out, in graph order
    assert _names(index.consumers("x")) == ["relu"] and _names(index.consumers("W")) == ["matmul"]
    assert index.consumers("y") == [] and index.consumers("nowhere") == []
    assert index.inputs == {"x"}


def test_only_consumer_counts_every_read() -> None:
    index = GraphIndex(_graph())
    assert index.only_consumer("b", "Add").name == "add"
    assert index.only_consumer("b", "Mul") is None  # the only reader, of another op
    assert index.only_consumer("a", "MatMul") is None  # two readers
    assert _names(index.consumers("c")) == ["square", "square"]  # Mul(c, c): two reads of one node
    assert index.only_consumer("c", "Mul") is None


def test_nodes_by_name_and_op_and_constants() -> None:
    index = GraphIndex(_graph())
    assert index.node("matmul").op_type == "MatMul" and index.node("missing") is None
    assert _names(index.of_type("Div", "Add", "Mul")) == ["add", "square", "div"]  # graph order, not argument order
    np.testing.assert_array_equal(index.constant("W"), np.arange(9, dtype=np.float32).reshape(3, 3))
    assert float(index.constant("k")) == 2.0  # a Constant node's value
    assert index.constant("a") is None and index.constant("x") is None
    assert index.is_constant("W") and index.is_constant("k")
    assert not index.is_constant("a") and not index.is_constant("x")


def test_drop_unused_initializers_keeps_what_a_node_reads() -> None:
    model = _graph()
    drop_unused_initializers(model.graph)
    assert [t.name for t in model.graph.initializer] == ["W"]
