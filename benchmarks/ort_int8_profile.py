"""Where ONNX Runtime spends its time on CoAtNet-0 at 224: FP32 vs the Q/DQ graphs TensorRT builds vs the u8
graph of the ONNX Runtime target (GELU as one op), per operator type, from ONNX Runtime's own profiler.

    python benchmarks/ort_int8_profile.py [--model coatnet_0] [--runs 10]

Why: the Q/DQ graph ran slower than FP32 in ONNX Runtime (docs/int8_peers.md). This page shows which
kernels cost what in each graph, so the cause is measured rather than guessed. The Q/DQ graphs are two of
``quantize``'s candidates, made by its own candidate code: ``cnn`` (the baseline it keeps unless another is
more faithful) and ``transformer+shift`` (the centred one: its extra Sub / Add ops show here). Seeded random
weights (timing only, so no candidate is chosen by accuracy), 32 calibration images of the built-in train
split upscaled to 224, batch 1; each graph runs 3 warm-up + ``--runs`` profiled runs; times are the mean per
run of each operator type's kernels.
Writes docs/ort_int8_profile.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from docpage import Machine, table, write_page  # the script folder is on sys.path

from coatnet_edge.calibration.candidates import quantize_candidate
from coatnet_edge.calibration.onnxruntime_int8 import u8_graph
from coatnet_edge.calibration.ptq import PtqSettings
from coatnet_edge.data.folders import scan_folder
from coatnet_edge.data.preprocess import PreprocessConfig, preprocess_batch
from coatnet_edge.data.sampling import ImageSample
from coatnet_edge.data.synth import SynthConfig, write_dataset
from coatnet_edge.export.onnx import export_fp32_onnx
from coatnet_edge.models.registry import create_model
from coatnet_edge.models.source import load_model

TOP = 12  # operator types listed per graph


def profile(path: Path, image: np.ndarray, runs: int, work: Path) -> tuple[dict[str, float], float]:
    """Mean kernel milliseconds per run by operator type, and the mean wall time per run."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.enable_profiling = True
    options.profile_file_prefix = str(work / path.stem)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for _ in range(3):
        session.run(None, {name: image})
    started = time.perf_counter()
    for _ in range(runs):
        session.run(None, {name: image})
    wall = (time.perf_counter() - started) * 1000 / runs
    events = json.loads(Path(session.end_profiling()).read_text())
    per_op: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"] / 1000
    total_runs = runs + 3  # the profiler records the warm-up runs too
    return {op: ms / total_runs for op, ms in per_op.items()}, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="coatnet_0")
    parser.add_argument("--data", type=Path, default=Path("runs/builtin/data"))
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    import onnx
    import torch

    machine, started = Machine(), time.perf_counter()
    work = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    loaded = load_model(create_model(args.model, image_size=224, num_classes=1000))
    fp32, _ = export_fp32_onnx(loaded, work, log=lambda line: None)
    data = write_dataset(args.data, SynthConfig(seed=0), workers=2)
    pre = PreprocessConfig(image_size=224, crop_pct=1.0)
    paths = sorted(scan_folder(data / "train", verify=False).paths)[::100][:32]
    calib = ImageSample(data / "train", paths, preprocess_batch(paths, pre), pre, seed=0)
    qdq = {name: work / f"qdq_{name.replace('+', '_')}.onnx" for name in ("cnn", "transformer+shift")}
    graphs = {"FP32": fp32, **{f"Q/DQ, candidate {name} (a TensorRT graph)": path for name, path in qdq.items()},
              "u8, GELU left as the export wrote it (five ops)": work / "u8_split.onnx",
              "u8 (the ONNX Runtime target's u8 candidate, GELU as one op)": work / "u8.onnx"}
    for name, path in qdq.items():
        onnx.save(quantize_candidate(fp32, calib, PtqSettings(), name).model, str(path))
    onnx.save(u8_graph(fp32, calib.images), str(work / "u8.onnx"))
    onnx.save(u8_graph(fp32, calib.images, fuse=False), str(work / "u8_split.onnx"))
    results = {label: profile(path, calib.images[:1], args.runs, work) for label, path in graphs.items()}
    for label, (ops, wall) in results.items():
        print(json.dumps({"graph": label, "wall_ms": round(wall, 2), "kernel_ms": round(sum(ops.values()), 2)}))
    summary = [f"- {label}: {sum(ops.values()):.1f} ms per run in kernels ({wall:.1f} ms wall under the profiler, "
               "which adds per-node overhead: unprofiled speed ratios are in docs/int8_peers.md)."
               for label, (ops, wall) in results.items()]
    sections = ["## Summary\n\n" + "\n".join(summary) + "\n"]
    for label, (ops, _) in results.items():
        rows: list[list[Any]] = [[op, round(ms, 2), f"{100 * ms / sum(ops.values()):.0f} %"]
                                 for op, ms in sorted(ops.items(), key=lambda kv: -kv[1])[:TOP]]
        sections.append(f"## {label}\n\n" + table(["operator type", "ms per run", "share"], rows))
    write_page("ort_int8_profile.md", title=f"ONNX Runtime per-operator time, {args.model} at 224",
               method=__doc__.split("\n\n", 2)[2].split("Writes")[0], machine=machine,
               wall_s=time.perf_counter() - started, sections=sections)


if __name__ == "__main__":
    main()
