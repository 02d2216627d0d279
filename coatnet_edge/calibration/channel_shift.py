"""Per-channel activation centring for symmetric INT8: shift a layer's input, pay it back after the layer, exactly.

Why: TensorRT takes only symmetric signed INT8 activations with one scale per tensor, so a tensor whose
channels sit off zero (a norm output with its learned offset, a GELU output) wastes levels on values that
never occur. Outlier Suppression+ (Wei et al. 2023) moves each channel instead:
``W x + b = W (x - z) + (b + W z)``, exact in float for a 1x1 convolution or a matrix product, so the graph
stays a plain FP32 graph (one ``Sub`` per shifted tensor) that NNCF then quantizes. A zero-padded depthwise
convolution differs from ``W z`` at the border, so its payback is a constant map computed once and added
after the layer (``Add``, tagged ``PAYBACK_TAG``). ``z`` is the per-channel midpoint of the calibration
range times ``strength``; only layers the scheme quantizes are shifted (``only``), and dense k x k
convolutions are not. Whether a model gains is measured per model against the other candidates on held-out
images (``transformer+shift``; docs/tensorrt_candidates.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from coatnet_edge.export.graph_index import GraphIndex, drop_unused_initializers
from coatnet_edge.runtime.onnxruntime import InMemorySession

SHIFT_TAG = "/channel_shift/Sub"  # node-name suffix of each inserted Sub; sensitivity.py looks for it
PAYBACK_TAG = "/channel_shift/Add"  # ... and of each payback map added after a depthwise Conv
DEFAULT_STRENGTH = 0.5


@dataclass(frozen=True)
class _Layer:
    node: Any  # onnx.NodeProto
    channel_axis: int  # of its input activation: 1 for NCHW Conv, -1 for MatMul
    bias_owner: Any  # the node whose initializer input holds the bias (the Conv itself, or the Add after a MatMul)
    spatial: bool = False  # a grouped Conv: the payback is a map over its output (zero padding)


def shiftable_layers(model: Any) -> dict[str, list[_Layer]]:
    """Activation tensor -> the layers reading it that a shift can be paid back in exactly.

    1x1 Conv with group 1 (bias optional), MatMul with a 2-D constant weight whose only consumer is an
    Add of a constant bias vector (how the exporter writes ``nn.Linear``), or a grouped (depthwise) Conv.
    """
    index = GraphIndex(model)
    initializers = index.initializers
    found: dict[str, list[_Layer]] = {}
    for node in index.nodes:
        weight = initializers.get(node.input[1]) if len(node.input) > 1 else None
        if weight is None or node.input[0] in index.inputs:
            continue
        if node.op_type == "Conv":
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if group == 1 and list(weight.dims[2:]) == [1, 1]:
                found.setdefault(node.input[0], []).append(_Layer(node, 1, node))
            elif group > 1:
                found.setdefault(node.input[0], []).append(_Layer(node, 1, node, spatial=True))
        elif node.op_type == "MatMul" and len(weight.dims) == 2:
            add = index.only_consumer(node.output[0], "Add")
            if add is not None and any((t := initializers.get(i)) is not None and list(t.dims) == [weight.dims[1]]
                                       for i in add.input):
                found.setdefault(node.input[0], []).append(_Layer(node, -1, add))
    return found


def channel_ranges(model: Any, tensors: dict[str, int], images: np.ndarray, batch_size: int = 50
                   ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-channel (min, max) of each tensor (name -> channel axis) over ``images``, run in ONNX Runtime."""
    return _scan(model, tensors, images, batch_size)[0]


def _scan(model: Any, tensors: dict[str, int], images: np.ndarray, batch_size: int = 50
          ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, tuple[int, ...]]]:
    """``channel_ranges``, and each tensor's shape for one image (what a payback map is computed over)."""
    import onnx
    from onnx import helper

    names = list(tensors)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    runner = InMemorySession(probe)
    low: dict[str, np.ndarray] = {}
    high: dict[str, np.ndarray] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for start in range(0, len(images), batch_size):
        batch = {runner.input_name: images[start:start + batch_size]}
        for name, value in zip(names, runner.session.run(None, batch), strict=True):
            flat = np.moveaxis(value, tensors[name], 0).reshape(value.shape[tensors[name]], -1)
            low[name] = np.minimum(low.get(name, np.inf), flat.min(1))
            high[name] = np.maximum(high.get(name, -np.inf), flat.max(1))
            shapes[name] = tuple(value.shape[1:])
    return {name: (low[name], high[name]) for name in names}, shapes


def center_activations(model: Any, images: np.ndarray, only: set[str] | None = None,
                       strength: float = DEFAULT_STRENGTH) -> tuple[Any, list[str]]:
    """A copy of ``model`` whose shiftable layers (those named in ``only``, if given) read their input minus
    ``strength`` x its per-channel calibration midpoint, paid back in the bias (or by a map after a depthwise
    Conv); and the shifted tensors."""
    import onnx
    from onnx import helper, numpy_helper

    result = onnx.ModelProto()
    result.CopyFrom(model)
    layers = {x: [layer for layer in found if only is None or layer.node.name in only]
              for x, found in shiftable_layers(result).items()}
    layers = {x: found for x, found in layers.items() if found}
    if not layers:
        return result, []
    ranges, shapes = _scan(result, {x: found[0].channel_axis for x, found in layers.items()}, images)
    initializers = GraphIndex(result).initializers
    inserted: dict[str, Any] = {}  # tensor -> the node that reads it, placed right after the node that makes it
    for x, found in layers.items():
        low, high = ranges[x]
        shift = (strength * (low + high) / 2).astype(np.float32)
        conv = found[0].channel_axis == 1
        shift_name, centred = f"{x}.channel_shift", f"{x}.centred"
        result.graph.initializer.append(numpy_helper.from_array(shift.reshape(1, -1, 1, 1) if conv else shift,
                                                                shift_name))
        inserted[x] = helper.make_node("Sub", [x, shift_name], [centred], name=f"{x}{SHIFT_TAG}")
        for layer in found:
            layer.node.input[0] = centred
            if layer.spatial:
                add = _payback_map(result, layer, shift, shapes[x], initializers)
                inserted[add.input[0]] = add  # right after the Conv, which now writes its first input
                continue
            weight = numpy_helper.to_array(initializers[layer.node.input[1]]).astype(np.float64)
            payback = weight[:, :, 0, 0] @ shift if conv else shift @ weight
            _add_to_bias(result, layer, payback.astype(np.float32), initializers)
    _insert_after_producers(result, inserted)
    drop_unused_initializers(result.graph)  # the replaced biases
    return result, list(layers)


def _payback_map(model: Any, layer: _Layer, shift: np.ndarray, shape: tuple[int, ...],
                 initializers: dict[str, Any]) -> Any:
    """``conv(pad(z))`` without bias, for one image of ``shape`` (C, H, W): the Conv now writes ``<out>.uncompensated``;
    the returned Add adds the map back under the old output name."""
    import onnx
    from onnx import helper, numpy_helper

    node = layer.node
    weight = initializers[node.input[1]]
    one = helper.make_graph(
        [helper.make_node("Conv", ["z", "w"], ["p"], **{a.name: helper.get_attribute_value(a)
                                                        for a in node.attribute})],
        "payback", [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [1, *shape])],
        [helper.make_tensor_value_info("p", onnx.TensorProto.FLOAT, None)],
        [numpy_helper.from_array(numpy_helper.to_array(weight), "w")])
    probe = helper.make_model(one, opset_imports=list(model.opset_import))
    probe.ir_version = model.ir_version
    runner = InMemorySession(probe)
    z_map = np.broadcast_to(shift.reshape(1, -1, 1, 1), (1, *shape)).astype(np.float32)
    payback = runner.session.run(None, {runner.input_name: np.ascontiguousarray(z_map)})[0]
    out = node.output[0]
    name = f"{node.name}.shift_payback"
    model.graph.initializer.append(numpy_helper.from_array(payback.astype(np.float32), name))
    node.output[0] = f"{out}.uncompensated"
    return helper.make_node("Add", [node.output[0], name], [out], name=f"{node.name}{PAYBACK_TAG}")


def _add_to_bias(model: Any, layer: _Layer, payback: np.ndarray, initializers: dict[str, Any]) -> None:
    """New bias = old + payback, as a new initializer: the exporter shares equal constants between layers."""
    from onnx import numpy_helper

    owner = layer.bias_owner
    if owner is layer.node:  # Conv: input 2, maybe absent
        index = 2
        old = numpy_helper.to_array(initializers[owner.input[2]]) if len(owner.input) > 2 and owner.input[2] else 0
    else:  # the Add after the MatMul
        index = next(i for i, name in enumerate(owner.input) if name in initializers)
        old = numpy_helper.to_array(initializers[owner.input[index]])
    name = f"{layer.node.name}.shifted_bias"
    model.graph.initializer.append(numpy_helper.from_array((old + payback).astype(np.float32), name))
    if index < len(owner.input):
        owner.input[index] = name
    else:
        owner.input.append(name)


def _insert_after_producers(model: Any, inserted: dict[str, Any]) -> None:
    """Keep the node list topologically sorted: each inserted node right after the node that makes its input."""
    index = GraphIndex(model)
    del model.graph.node[:]
    model.graph.node.extend(new for x, new in inserted.items() if index.producer(x) is None)
    for node in index.nodes:
        model.graph.node.append(node)
        model.graph.node.extend(inserted[out] for out in node.output if out in inserted)
