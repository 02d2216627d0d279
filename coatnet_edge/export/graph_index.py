"""Look-ups over one ONNX graph, built once: which node makes a tensor, which nodes read it, the constants.

Every graph pass (GELU fusion, the Q/DQ rules, channel centring, the signed-INT8 rewrite, the float fall-back)
asks the same questions; they are answered here. The index is a snapshot: a pass that rewires the graph and
asks again builds a new one.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class GraphIndex:
    """Producer, consumers, initializers and nodes by name or op type of an ``onnx.ModelProto`` (or its graph).

    Tensor names are as the nodes write them, the empty name of an omitted optional input included. A node that
    reads a tensor at two inputs is its consumer twice, so "the only consumer" means the only read.
    """

    def __init__(self, model: Any):
        graph = getattr(model, "graph", model)
        self.graph = graph
        self.nodes: list[Any] = list(graph.node)
        self.initializers: dict[str, Any] = {t.name: t for t in graph.initializer}
        self.inputs: set[str] = {i.name for i in graph.input}
        self._producer: dict[str, Any] = {}
        self._consumers: dict[str, list[Any]] = {}
        self._by_name: dict[str, Any] = {}
        for node in self.nodes:
            for name in node.output:
                self._producer[name] = node
            for name in node.input:
                self._consumers.setdefault(name, []).append(node)
            self._by_name.setdefault(node.name, node)
        self._arrays: dict[str, np.ndarray | None] = {}

    def producer(self, tensor: str) -> Any | None:
        """The node that writes ``tensor``; None for a graph input, an initializer or an unknown name."""
        return self._producer.get(tensor)

    def consumers(self, tensor: str) -> list[Any]:
        """The nodes that read ``tensor``, in graph order, once per input that reads it."""
        return self._consumers.get(tensor, [])

    def only_consumer(self, tensor: str, op_type: str) -> Any | None:
        """The node that reads ``tensor``, when it is the only read and that node is an ``op_type``."""
        found = self.consumers(tensor)
        return found[0] if len(found) == 1 and found[0].op_type == op_type else None

    def node(self, name: str) -> Any | None:
        """The (first) node called ``name``."""
        return self._by_name.get(name)

    def of_type(self, *op_types: str) -> list[Any]:
        """The nodes whose op is one of ``op_types``, in graph order."""
        return [n for n in self.nodes if n.op_type in op_types]

    def is_constant(self, tensor: str) -> bool:
        """An initializer, or the output of a ``Constant`` node."""
        node = self._producer.get(tensor)
        return tensor in self.initializers or (node is not None and node.op_type == "Constant")

    def constant(self, tensor: str) -> np.ndarray | None:
        """The value of an initializer or of a ``Constant`` node's ``value`` tensor; None for anything else."""
        if tensor not in self._arrays:
            from onnx import numpy_helper

            source = self.initializers.get(tensor)
            node = self._producer.get(tensor)
            if source is None and node is not None and node.op_type == "Constant" and node.attribute \
                    and node.attribute[0].name == "value":
                source = node.attribute[0].t
            self._arrays[tensor] = None if source is None else numpy_helper.to_array(source)
        return self._arrays[tensor]


def drop_unused_initializers(graph: Any) -> None:
    """Remove the initializers no node of ``graph`` reads (a pass that replaced a tensor leaves the old one)."""
    index = GraphIndex(graph)
    live = [t for t in graph.initializer if index.consumers(t.name)]
    del graph.initializer[:]
    graph.initializer.extend(live)
