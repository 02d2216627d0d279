"""INT8 speed at 224 px: every INT8 path of the toolkit's targets next to the plain paths a user writes in a few
lines, on the same FP32 ONNX and calibration images, in one process.

    python benchmarks/int8_peers.py [--data runs/builtin/data] [--speed-models coatnet_0,timm:coatnet_0_rw_224]
                                    [--rounds 5] [--runs 10]

Our CoAtNet-0 and timm coatnet_0_rw_224 at 224 px (seeded random weights, 64 calibration images of the built-in
train split upscaled to 224), batch 1 and 8, every configuration timed in interleaved rounds so drift hits all
alike. Fidelity is not measured here: random weights say nothing about it, and docs/int8_seeds.md compares the
same paths on trained models over calibration seeds with intervals.
Prints one JSON line per measurement and writes docs/int8_peers.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from docpage import Machine, table, write_page  # the script folder is on sys.path

from coatnet_edge.calibration.candidates import quantize_candidate
from coatnet_edge.calibration.onnxruntime_int8 import plain_graph, u8_graph
from coatnet_edge.calibration.openvino_int8 import candidate_model
from coatnet_edge.calibration.ptq import PtqSettings
from coatnet_edge.data.folders import scan_folder
from coatnet_edge.data.preprocess import PreprocessConfig, preprocess_batch
from coatnet_edge.data.sampling import ImageSample
from coatnet_edge.data.synth import SynthConfig, write_dataset
from coatnet_edge.export.onnx import export_fp32_onnx
from coatnet_edge.models.source import load_model

QDQ_TIMED = ("cnn", "transformer", "transformer+shift")  # the TensorRT baseline and the candidates kept most often
OV_NNCF = {"nncf-transformer": "NNCF on ov.convert_model, model_type=TRANSFORMER (the OpenVINO baseline)",
           "nncf": "NNCF on ov.convert_model, defaults (the plain path of NNCF's docs)",
           "nncf-transformer-unfused": "NNCF on core.read_model, model_type=TRANSFORMER"}
ORT_U8 = "ORT toolkit u8 graph (the ONNX Runtime target's u8 candidate, GELU as one op)"
ORT_PLAIN = "ORT plain quantize_static (the ONNX Runtime baseline: u8 activations, every op)"
OV_FP32_DEFAULT = "OV FP32, OpenVINO's default precision"
OV_FP32_F32 = "OV FP32, f32 pinned"


def ort_session(path: Path) -> Any:
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # the plain QDQ graph's unused-initializer warnings, one per tensor
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def ov_compiled(model: Any, hint: str | None) -> Any:
    """An IR path or an openvino.Model compiled for the CPU with INFERENCE_PRECISION_HINT ``hint`` (None:
    OpenVINO's default for this CPU)."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(model)) if isinstance(model, Path) else model
    return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint} if hint else {})


def run(target: Any, x: np.ndarray) -> None:
    """One inference of an ORT session or an OpenVINO compiled model."""
    if hasattr(target, "get_inputs"):
        target.run(None, {target.get_inputs()[0].name: x})
    else:
        target(x)


def float_math(target: Any) -> str:
    return "" if hasattr(target, "get_inputs") else target.get_property("INFERENCE_PRECISION_HINT").to_string()


def speed_model(name: str) -> Any:
    """Our variant (``coatnet_0``) or a timm one (``timm:coatnet_0_rw_224``) at 224 px, seeded random weights."""
    import torch

    from coatnet_edge.models.registry import create_model

    torch.manual_seed(0)
    return load_model(name) if name.startswith("timm:") else load_model(
        create_model(name, image_size=224, num_classes=1000))


def configurations(variant: str, data: Path, work: Path) -> dict[str, Any]:
    """Every timed configuration of one model, compiled: ORT and OpenVINO, FP32, the toolkit's INT8 candidates,
    the plain paths."""
    import onnx

    loaded = speed_model(variant)
    folder = work / variant.replace(":", "_")
    fp32, _ = export_fp32_onnx(loaded, folder, log=lambda line: None)
    pre = PreprocessConfig(image_size=224, crop_pct=1.0)
    paths = sorted(scan_folder(data / "train", verify=False).paths)[::50][:64]  # upscaled: fine for timing
    calib = ImageSample(data / "train", paths, preprocess_batch(paths, pre), pre, seed=0)
    settings = PtqSettings(attention_stages=loaded.attention_stages)
    qdq = {}
    for candidate in QDQ_TIMED:
        qdq[candidate] = folder / f"toolkit.{candidate}.int8.onnx"
        onnx.save(quantize_candidate(onnx.load(str(fp32)), calib, settings, candidate).model, str(qdq[candidate]))
    saved = {"u8": u8_graph(fp32, calib.images), "plain": plain_graph(fp32, calib.images)}
    for name, model in saved.items():
        onnx.save(model, str(folder / f"{name}.onnx"))
    ov_models = {**{f"qdq {c}": candidate_model("qdq", fp32, path, calib.images) for c, path in qdq.items()},
                 **{name: candidate_model(name, fp32, qdq["cnn"], calib.images) for name in OV_NNCF}}
    labels = {**{f"qdq {c}": f"the {c} Q/DQ graph converted (OpenVINO candidate qdq)" for c in QDQ_TIMED}, **OV_NNCF}
    return {
        "ORT FP32": ort_session(fp32),
        **{f"ORT toolkit Q/DQ {c} (s8 activations, the TensorRT graph)": ort_session(p) for c, p in qdq.items()},
        ORT_U8: ort_session(folder / "u8.onnx"),
        ORT_PLAIN: ort_session(folder / "plain.onnx"),
        OV_FP32_DEFAULT: ov_compiled(fp32, None),
        OV_FP32_F32: ov_compiled(fp32, "f32"),
        **{f"OV {labels[k]}, {h}": ov_compiled(model, hint) for k, model in ov_models.items()
           for h, hint in (("default float precision", None), ("f32 pinned", "f32"))},
    }


def speed(variant: str, data: Path, rounds: int, runs: int, work: Path) -> list[dict[str, Any]]:
    """Batch-1 and batch-8 latency of every configuration of one model at 224, interleaved rounds."""
    configs = configurations(variant, data, work)
    image = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    rows = []
    for batch in (1, 8):
        x = np.ascontiguousarray(np.repeat(image, batch, axis=0))
        times: dict[str, list[float]] = {name: [] for name in configs}
        for target in configs.values():  # warm-up
            for _ in range(3):
                run(target, x)
        for _ in range(rounds):
            for name, target in configs.items():
                for _ in range(runs):
                    started = time.perf_counter()
                    run(target, x)
                    times[name].append((time.perf_counter() - started) * 1000)
        for name, samples in times.items():
            rows.append({"model": variant, "batch": batch, "config": name,
                         "p50_ms": round(float(np.percentile(samples, 50)), 2),
                         "p90_ms": round(float(np.percentile(samples, 90)), 2), "timed_runs": len(samples),
                         "float_math": float_math(configs[name])})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def speed_table(rows: list[dict[str, Any]]) -> str:
    base = {(r["model"], r["batch"], r["config"]): r["p50_ms"] for r in rows}
    header = ["model", "batch", "configuration", "float math", "p50 ms", "p90 ms", "x OV FP32 f32", "x ORT FP32"]
    cells = [[r["model"], r["batch"], r["config"], r["float_math"], r["p50_ms"], r["p90_ms"],
              round(base[(r["model"], r["batch"], OV_FP32_F32)] / r["p50_ms"], 2),
              round(base[(r["model"], r["batch"], "ORT FP32")] / r["p50_ms"], 2)] for r in rows]
    return table(header, cells)


def summary(rows: list[dict[str, Any]]) -> str:
    """Statements computed from the rows, so they cannot go stale."""
    lines = []
    p50 = {(r["model"], r["batch"], r["config"]): r["p50_ms"] for r in rows}
    for model in dict.fromkeys(r["model"] for r in rows):
        for batch in (1, 8):
            ms = {config: p50[(m, b, config)] for (m, b, config) in p50 if (m, b) == (model, batch)}
            for hint in ("default float precision", "f32 pinned"):
                baseline = ms[f"OV {OV_NNCF['nncf-transformer']}, {hint}"]
                others = {k: v for k, v in ms.items() if k.startswith("OV ") and k.endswith(hint) and "FP32" not in k}
                ratios = ", ".join(f"{baseline / t:.2f}x ({k.removeprefix('OV ').removesuffix(', ' + hint)})"
                                   for k, t in others.items())
                lines.append(f"- {model}, OpenVINO, batch {batch}, {hint}: speed relative to the baseline "
                             f"nncf-transformer: {ratios}; the baseline at {ms[OV_FP32_F32] / baseline:.2f}x OV FP32 "
                             f"f32 and {ms[OV_FP32_DEFAULT] / baseline:.2f}x OV FP32 at OpenVINO's default precision.")
            ort = ms["ORT FP32"]
            qdq = min(ms[f"ORT toolkit Q/DQ {c} (s8 activations, the TensorRT graph)"] for c in QDQ_TIMED)
            lines.append(f"- {model}, ONNX Runtime, batch {batch}: the u8 graph (GELU as one op) "
                         f"{ort / ms[ORT_U8]:.2f}x, the fastest Q/DQ graph {ort / qdq:.2f}x, plain quantize_static "
                         f"{ort / ms[ORT_PLAIN]:.2f}x the speed of ORT FP32.")
    return "\n".join(lines) + "\n"


METHOD = """
{variant} at 224 px, seeded random weights, batch 1 and 8 (one seeded random image repeated), {rounds}
interleaved rounds of {runs} timed runs per configuration after 3 warm-up runs; p50/p90 over all timed runs.
Ratios are p50 ratios measured in this run (single p50s: a ratio within a few per cent of 1 is not a
difference). Every INT8 path starts from the same FP32 ONNX and 64 calibration images. The ORT rows are the
TensorRT target's Q/DQ graphs (its baseline cnn and two candidates), the ONNX Runtime target's u8 candidate
and its baseline (quantize_static with its docs' defaults); the OV rows are the OpenVINO target's candidates
(each Q/DQ graph converted, and NNCF on the OpenVINO model in both graph forms; nncf-transformer is its
baseline, nncf the plain path of NNCF's docs). "float math" is what OpenVINO compiled the float parts for
(INFERENCE_PRECISION_HINT read back). Fidelity is not measured here (random weights say nothing about it):
docs/int8_seeds.md compares the same paths on trained models, over calibration seeds, with intervals.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("runs/builtin/data"))
    parser.add_argument("--speed-models", default="coatnet_0,timm:coatnet_0_rw_224")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-page", action="store_true", help="print only (a trial run)")
    args = parser.parse_args()
    machine, started = Machine(), time.perf_counter()
    data = write_dataset(args.data, SynthConfig(seed=0), workers=2)
    work = Path(tempfile.mkdtemp())
    rows = [row for name in args.speed_models.split(",") for row in speed(name, data, args.rounds, args.runs, work)]
    if args.no_page:
        return
    write_page("int8_peers.md", title="INT8 speed at 224 px: the toolkit's paths vs the plain ones",
               method=METHOD.format(variant=args.speed_models, rounds=args.rounds, runs=args.runs),
               machine=machine, wall_s=time.perf_counter() - started,
               sections=["## Summary\n\n" + summary(rows), "## Speed (224 px)\n\n" + speed_table(rows)])


if __name__ == "__main__":
    main()
