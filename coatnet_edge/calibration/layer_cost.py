"""What returning one layer to float costs, measured: the Q/DQ graph with that layer in float, timed.

Why measured and not estimated from FLOPs: on the CPU a float layer can cost more than its FLOPs say (it
breaks an INT8 chain, so quantizers are added or removed on its neighbours) or nothing at all (a layer
OpenVINO runs in float anyway, e.g. behind a LayerNorm). So every candidate variant is compiled in
OpenVINO's CPU plugin (float parts f32, the runtime here that runs Q/DQ graphs with INT8 kernels; TensorRT
cannot run here, so for that target this is a proxy) and timed with the all-INT8 graph as every choice by speed
is (``CANDIDATE_TIMING``: batch 1, interleaved rounds): the cost of a layer is the median over rounds of (its
variant's p50 - the INT8 graph's p50).

The speed-aware budget order then ranks layers by accuracy recovered per millisecond lost (logit SQNR gain
/ cost, the cost floored at ``NOISE_MS`` or at ``NOISE_SHARE`` of the INT8 latency, whichever is larger,
so that timing noise cannot make a layer look free), in the spirit of Model Optimizer's ``auto_quantize``,
which searches formats under a cost constraint, but with costs measured on the target CPU.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coatnet_edge.calibration.sensitivity import LayerSensitivity, with_float_nodes
from coatnet_edge.measure.benchmark import CANDIDATE_TIMING
from coatnet_edge.runtime.openvino import CpuCompiled

NOISE_MS = 0.005
NOISE_SHARE = 0.005
METHOD = (f"OpenVINO CPU, float parts f32, {CANDIDATE_TIMING.describe()}: each variant's p50 in a round minus the "
          f"all-INT8 graph's, median over the rounds")
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class LayerCost:
    node: str
    sqnr_gain_db: float
    cost_ms: float  # measured latency added by this layer in float (negative: float was faster)
    gain_per_ms: float  # SQNR gain / max(cost, floor)


def compiled_f32(path: Path) -> CpuCompiled:
    """The ONNX file compiled for the CPU with f32 float parts, as every cost is timed."""
    return CpuCompiled(str(path), "f32")


def p50_batch1(model: Any, images: np.ndarray) -> float:
    """Batch-1 p50 (ms) of an in-memory Q/DQ graph, timed as the costs are: the median of its per-round p50s."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="coatnet-edge-cost-") as tmp:
        onnx.save(model, str(Path(tmp) / "model.onnx"))
        compiled = compiled_f32(Path(tmp) / "model.onnx")
        return float(np.median(CANDIDATE_TIMING.p50_rounds([compiled], np.ascontiguousarray(images[:1]))[0]))


def measure_costs(model: Any, fp32: Any, ranking: list[LayerSensitivity], image: np.ndarray, *,
                  progress: Progress | None = None) -> tuple[float, list[LayerCost]]:
    """The all-INT8 p50 (ms) and each ranked layer's cost and SQNR gain per millisecond."""
    import onnx

    image = np.ascontiguousarray(image[:1])
    with tempfile.TemporaryDirectory(prefix="coatnet-edge-cost-") as tmp:
        paths = {"": Path(tmp) / "int8.onnx"}
        onnx.save(model, str(paths[""]))
        for i, row in enumerate(ranking):
            paths[row.node] = Path(tmp) / f"float_{i}.onnx"
            onnx.save(with_float_nodes(model, [row.node], fp32), str(paths[row.node]))
        steps = len(paths) * (CANDIDATE_TIMING.rounds + 1)
        compiled = []
        for done, (name, path) in enumerate(paths.items()):
            compiled.append(compiled_f32(path))
            if progress:
                progress(done, steps, f"compiled {name or 'INT8'}")

        def round_done(r: int, i: int) -> None:
            if progress:
                progress(len(paths) * (r + 1) + i, steps, f"round {r + 1}")

        rounds = dict(zip(paths, CANDIDATE_TIMING.p50_rounds(compiled, image, round_done), strict=True))
    base = float(np.median(rounds[""]))
    floor = max(NOISE_MS, NOISE_SHARE * base)
    costs = []
    for row in ranking:
        cost = float(np.median(np.subtract(rounds[row.node], rounds[""])))
        costs.append(LayerCost(row.node, row.sqnr_gain_db, round(cost, 4),
                               round(max(row.sqnr_gain_db, 0.0) / max(cost, floor), 3)))
    return base, costs


def per_ms_order(ranking: list[LayerSensitivity], costs: list[LayerCost]) -> list[LayerSensitivity]:
    """``ranking`` reordered by SQNR gain per millisecond lost, highest first (ties: larger gain first)."""
    value = {c.node: c.gain_per_ms for c in costs}
    return sorted(ranking, key=lambda r: (value.get(r.node, 0.0), r.sqnr_gain_db), reverse=True)
