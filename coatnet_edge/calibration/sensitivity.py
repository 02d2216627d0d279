"""Per-layer INT8 sensitivity and the accuracy budget, on the Q/DQ ONNX graph itself.

Why on the graph: the quantized artifact is the thing that ships, so the ranking is measured on it
(in ONNX Runtime) rather than on a fake-quant twin. A layer "falls back to float" by wiring its
inputs past their QuantizeLinear/DequantizeLinear pairs; the pairs other consumers use stay put.

The ranking answers "which single layer, returned to float, recovers the most?" (logit SQNR gain
against the FP32 model on evaluation images). The budget then returns layers to float in that
order until the top-1 drop (labeled data) or the top-1 disagreement (unlabeled) is within budget.
This is the same idea as NNCF's accuracy-control loop, with the ranking kept and reported.
"""

from __future__ import annotations

import copy
import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coatnet_edge.atomic import atomic_path
from coatnet_edge.calibration.channel_shift import PAYBACK_TAG, SHIFT_TAG
from coatnet_edge.export.graph_index import GraphIndex, drop_unused_initializers
from coatnet_edge.metrics import compare_logits
from coatnet_edge.runtime.base import run_batches
from coatnet_edge.runtime.onnxruntime import InMemorySession

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class LayerSensitivity:
    node: str
    op_type: str
    sqnr_db: float  # logits SQNR vs FP32 with only this layer back in float
    sqnr_gain_db: float  # ... minus the all-INT8 SQNR
    top1_agreement: float


@dataclass
class BudgetResult:
    model: Any  # onnx.ModelProto
    float_nodes: list[str]
    met: bool
    metric: str  # "top-1 drop (points)" or "top-1 disagreement (points)"
    before: float
    after: float
    steps: list[dict[str, Any]] = field(default_factory=list)


def quantized_consumers(model: Any) -> list[str]:
    """Nodes (any op) that read at least one DequantizeLinear output: the layers that can fall back."""
    index = GraphIndex(model)
    names = []
    for node in index.nodes:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if any((p := index.producer(i)) is not None and p.op_type == "DequantizeLinear" for i in node.input):
            names.append(node.name)
    return names


def with_float_nodes(model: Any, nodes: list[str] | set[str], fp32: Any | None = None) -> Any:
    """A copy of ``model`` where ``nodes`` read their inputs unquantized; orphaned Q/DQ pairs are removed.

    Activations are wired past their QuantizeLinear/DequantizeLinear pair. A weight stored as an INT8
    initializer (NNCF's ONNX backend does that) has no float copy in ``model``: it, and the bias fast
    bias correction adjusted for it, come back from ``fp32``, the graph that was quantized (same node
    names).
    """
    result = copy.deepcopy(model)
    graph = result.graph
    index = GraphIndex(graph)  # producers and consumers as quantized: rewiring a node never changes what it writes
    original = GraphIndex(fp32) if fp32 is not None else None
    present = set(index.initializers)
    wanted = set(nodes)
    for node in index.nodes:
        if node.name not in wanted:
            continue
        from_fp32 = False
        for i, name in enumerate(node.input):
            dq = index.producer(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = index.producer(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
            elif _restore_from(node, i, original, graph, present):
                from_fp32 = True
            else:
                raise ValueError(f"{node.name}: input {i} is an INT8 constant; pass the FP32 graph to restore it")
        if from_fp32:  # the FP32 weight and bias were never smoothed nor shifted: the activation must not be either
            # a bias the centring gave a Conv that had none in FP32
            del node.input[len(original.node(node.name).input):]
            _read_before_rewrites(node, index)
            _drop_payback_after(node, index)
            # the bias that fast bias correction shifted for the INT8 weight (MatMul: in the next Add)
            bias_adds = [n for n in index.consumers(node.output[0]) if n.op_type == "Add"]
            for owner in [node, *bias_adds]:
                for i in range(len(owner.input)):
                    if owner.input[i] in present:
                        _restore_from(owner, i, original, graph, present)
    _prune_dead_nodes(graph)
    return result


# Ops inserted in front of a quantized layer that its FP32 weight and bias do not expect, outermost first: NNCF's
# SmoothQuant Mul (the activation divided by the factor the INT8 weight was multiplied by), then the per-channel
# centring Sub of ``channel_shift.py`` (whose payback lives only in the shifted bias).
_REWRITES_BEFORE_LAYER = (("Mul", "nncf_smooth_quant"), ("Sub", SHIFT_TAG))


def _read_before_rewrites(node: Any, index: GraphIndex) -> None:
    """Wire ``node`` to the activation from before those ops; their other consumers keep them."""
    for op_type, suffix in _REWRITES_BEFORE_LAYER:
        for i, name in enumerate(node.input):
            op = index.producer(name)
            if op is not None and op.op_type == op_type and op.name.endswith(suffix):
                node.input[i] = op.input[0]


def _drop_payback_after(node: Any, index: GraphIndex) -> None:
    """A depthwise conv read the centred activation and had ``channel_shift.py``'s payback map added after it;
    reading the uncentred one again, it must not get the map: the payback ``Add`` becomes an ``Identity``."""
    for payback in (n for n in index.consumers(node.output[0]) if n.name.endswith(PAYBACK_TAG)):
        payback.op_type = "Identity"
        del payback.input[1:]


def _restore_from(node: Any, index: int, fp32: GraphIndex | None, graph: Any, present: set[str]) -> bool:
    original = fp32.node(node.name) if fp32 is not None else None
    if original is None or index >= len(original.input) or original.input[index] not in fp32.initializers:
        return False
    name = f"{original.input[index]}.fp32"  # the quantized graph may hold a changed tensor under the old name
    if name not in present:
        tensor = copy.deepcopy(fp32.initializers[original.input[index]])
        tensor.name = name
        graph.initializer.append(tensor)
        present.add(name)
    node.input[index] = name
    return True


def _prune_dead_nodes(graph: Any) -> None:
    """Drop nodes no graph output depends on, found by walking back from the outputs (not by list order)."""
    index = GraphIndex(graph)
    reached: set[int] = set()  # id() of the nodes an output depends on
    pending = [o.name for o in graph.output]
    while pending:
        node = index.producer(pending.pop())
        if node is not None and id(node) not in reached:
            reached.add(id(node))
            pending.extend(node.input)
    keep = [node for node in index.nodes if id(node) in reached]
    del graph.node[:]
    graph.node.extend(keep)
    drop_unused_initializers(graph)


def onnx_logits(model: Any, images: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """Run an in-memory ONNX model in ONNX Runtime (CPU) over ``images``."""
    return run_batches(InMemorySession(model), images, batch_size)


def rank_layers(model: Any, fp32: Any, images: np.ndarray, reference: np.ndarray, *,
                progress: Progress | None = None) -> list[LayerSensitivity]:
    """Every fall-back candidate, most sensitive first (largest SQNR gain when returned to float)."""
    base = compare_logits(reference, onnx_logits(model, images))
    candidates = quantized_consumers(model)
    index = GraphIndex(model)
    rows = []
    for done, name in enumerate(candidates, 1):
        agreement = compare_logits(reference, onnx_logits(with_float_nodes(model, [name], fp32), images))
        node = index.node(name)
        rows.append(LayerSensitivity(name, node.op_type, agreement.sqnr_db, agreement.sqnr_db - base.sqnr_db,
                                     agreement.top1_agreement))
        if progress:
            progress(done, len(candidates), name)
    return sorted(rows, key=lambda r: r.sqnr_gain_db, reverse=True)


def fit_budget(model: Any, fp32: Any, ranking: list[LayerSensitivity], images: np.ndarray, reference: np.ndarray, *,
               max_drop: float, labels: np.ndarray | None = None, max_float: int | None = None,
               progress: Progress | None = None) -> BudgetResult:
    """Return ranked layers to float, most sensitive first, until the drop is at most ``max_drop`` points.

    With ``labels`` the drop is FP32 top-1 minus INT8 top-1 (points); without, it is the share of
    images whose INT8 top-1 differs from FP32 (points). Stops after ``max_float`` layers (default: all
    ranked) and reports whether the budget was met.
    """
    def drop(logits: np.ndarray) -> float:
        if labels is not None:
            return 100.0 * (float(np.mean(reference.argmax(1) == labels)) - float(np.mean(logits.argmax(1) == labels)))
        return 100.0 * (1.0 - compare_logits(reference, logits).top1_agreement)

    metric = "top-1 drop (points)" if labels is not None else "top-1 disagreement (points)"
    limit = len(ranking) if max_float is None else min(max_float, len(ranking))
    before = current = drop(onnx_logits(model, images))
    chosen: list[str] = []
    steps: list[dict[str, Any]] = []
    candidate = model
    while current > max_drop and len(chosen) < limit:
        chosen.append(ranking[len(chosen)].node)
        candidate = with_float_nodes(model, chosen, fp32)
        current = drop(onnx_logits(candidate, images))
        steps.append({"float_nodes": len(chosen), "node": chosen[-1], "drop": round(current, 4)})
        if progress:
            progress(len(chosen), limit, f"{metric} {current:.2f}")
    return BudgetResult(candidate, chosen, current <= max_drop, metric, before, current, steps)


def write_sensitivity_csv(ranking: list[LayerSensitivity], path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["rank", "node", "op_type", "sqnr_gain_db", "sqnr_db", "top1_agreement"])
        for rank, row in enumerate(ranking, 1):
            writer.writerow([rank, row.node, row.op_type, f"{row.sqnr_gain_db:.4f}", f"{row.sqnr_db:.4f}",
                             f"{row.top1_agreement:.4f}"])
    return path


def plot_sensitivity(ranking: list[LayerSensitivity], path: str | Path, *, top: int = 25,
                     title: str = "INT8 sensitivity") -> Path:
    """Horizontal bar chart of the ``top`` most sensitive layers (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = ranking[:top][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(rows) + 1.5))
    ax.barh([f"{r.node} ({r.op_type})" for r in rows], [r.sqnr_gain_db for r in rows], color="#4c72b0")
    ax.set_xlabel("logit SQNR gain vs FP32 when this layer alone runs in float (dB)")
    ax.set_title(title)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
