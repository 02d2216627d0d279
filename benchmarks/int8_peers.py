"""The toolkit's INT8 vs the plain INT8 paths a user writes in a few lines: same FP32 ONNX, same calibration
images, same preprocessing, one process (issue 16's peer benchmark).

    python benchmarks/int8_peers.py [--data runs/builtin/data] [--models builtin:student,builtin:teacher]
                                    [--calib-size 300] [--speed-model coatnet_0] [--rounds 5] [--runs 10]

Fidelity: each built-in model is exported to FP32 ONNX once; every INT8 path starts from that file and the
same calibration images, and is measured against the FP32 ONNX in ONNX Runtime on the whole validation
split and on its corrupted copy (`coatnet-edge data corrupt`: blur, noise, contrast, JPEG cycled, severity 3).
Speed: our CoAtNet-0 at 224 px (seeded random weights, 64 calibration images of the built-in train split
upscaled to 224), batch 1 and 8, every configuration timed in interleaved rounds so drift hits all alike.
Prints one JSON line per measurement and writes docs/int8_peers.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from docpage import Machine, table, write_page  # the script folder is on sys.path

from coatnet_edge.calibration.candidates import choose_ptq
from coatnet_edge.calibration.options import QuantizeOptions
from coatnet_edge.calibration.ptq import PtqSettings, quantize_onnx
from coatnet_edge.calibration.quantize import held_out_images
from coatnet_edge.data.corrupt import CorruptConfig, write_corrupted
from coatnet_edge.data.folders import scan_folder
from coatnet_edge.data.preprocess import PreprocessConfig, preprocess_batch
from coatnet_edge.data.sampling import ImageSample, build_calibration_set
from coatnet_edge.data.synth import SynthConfig, write_dataset
from coatnet_edge.export.onnx import export_fp32_onnx
from coatnet_edge.export.openvino import export_openvino
from coatnet_edge.metrics import compare_logits
from coatnet_edge.models.source import load_model

FIDELITY_PATHS = ("toolkit default (--scheme auto, kept {chosen}): Q/DQ graph in ONNX Runtime (the TensorRT graph)",
                  "toolkit default (--scheme auto, kept {chosen}): OpenVINO IR converted from it",
                  "plain: OpenVINO convert_model + nncf.quantize defaults",
                  "plain: the same with model_type=TRANSFORMER",
                  "plain: ONNX Runtime quantize_static QDQ (u8 activations, s8 per-channel weights)")


def plain_openvino(fp32_onnx: Path, calib: np.ndarray, out: Path, *, transformer: bool) -> Path:
    """What the OpenVINO/NNCF docs show: convert, quantize the OpenVINO model with defaults, save."""
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.WARNING)
    model = ov.convert_model(str(fp32_onnx))
    quantized = nncf.quantize(model, nncf.Dataset([calib[i:i + 1] for i in range(len(calib))]),
                              subset_size=len(calib),
                              model_type=nncf.ModelType.TRANSFORMER if transformer else None)
    ov.save_model(quantized, str(out))
    return out


def plain_onnxruntime(fp32_onnx: Path, calib: np.ndarray, out: Path) -> Path:
    """What the ONNX Runtime docs show for x86: static QDQ, u8 activations x s8 per-channel weights."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"images": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self) -> dict | None:
            return next(self.items, None)

    quantize_static(str(fp32_onnx), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def ort_session(path: Path) -> Any:
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # the plain QDQ graph's unused-initializer warnings, one per tensor
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def ov_compiled(path: Path, hint: str | None) -> Any:
    """Compiled for the CPU with INFERENCE_PRECISION_HINT ``hint`` (None: OpenVINO's default for this CPU)."""
    import openvino as ov

    core = ov.Core()
    return core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": hint} if hint else {})


def run(target: Any, images: np.ndarray, batch: int = 100) -> np.ndarray:
    """Logits of an ORT session or an OpenVINO compiled model."""
    outs = []
    for i in range(0, len(images), batch):
        x = np.ascontiguousarray(images[i:i + batch])
        if hasattr(target, "get_inputs"):
            outs.append(target.run(None, {target.get_inputs()[0].name: x})[0])
        else:
            outs.append(np.array(target(x)[target.output(0)]))
    return np.concatenate(outs)


def float_math(compiled: Any) -> str:
    return compiled.get_property("INFERENCE_PRECISION_HINT").to_string()


def fidelity(source: str, data: Path, corrupted: Path, calib_size: int, work: Path) -> list[dict[str, Any]]:
    loaded = load_model(source)
    fp32, _ = export_fp32_onnx(loaded, work / source.replace(":", "_"), log=lambda line: None)
    splits = {"clean": data / "val", "corrupted": corrupted}
    images = {name: preprocess_batch(scan_folder(path, verify=False).paths, loaded.preprocess)
              for name, path in splits.items()}
    reference = {name: run(ort_session(fp32), x) for name, x in images.items()}
    calib = build_calibration_set(data / "train", loaded.preprocess, size=calib_size, seed=0)
    toolkit = work / f"{fp32.stem}.toolkit.int8.onnx"
    import onnx

    # what `coatnet-edge quantize` does by default: every candidate scored on the train folder beyond calibration
    options = QuantizeOptions()
    scored, what = held_out_images(data / "train", calib, None, options)
    result, selection = choose_ptq(onnx.load(str(fp32)), calib, PtqSettings(attention_stages=loaded.attention_stages),
                                   options.candidates, scored, what, log=print)
    onnx.save(result.model, str(toolkit))
    chosen = selection["chosen"]
    targets = {
        FIDELITY_PATHS[0].format(chosen=chosen): ort_session(toolkit),
        FIDELITY_PATHS[1].format(chosen=chosen): ov_compiled(
            export_openvino(toolkit, work / f"{fp32.stem}.toolkit.xml", precision="int8"), "f32"),
        FIDELITY_PATHS[2]: ov_compiled(plain_openvino(fp32, calib.images, work / f"{fp32.stem}.plain.xml",
                                                      transformer=False), "f32"),
        FIDELITY_PATHS[3]: ov_compiled(plain_openvino(fp32, calib.images, work / f"{fp32.stem}.plain_tr.xml",
                                                      transformer=True), "f32"),
        FIDELITY_PATHS[4]: ort_session(plain_onnxruntime(fp32, calib.images, work / f"{fp32.stem}.ort_u8.onnx")),
    }
    targets.update(variant_targets(fp32, calib, loaded.attention_stages, work))
    rows = []
    for path, target in targets.items():
        row: dict[str, Any] = {"model": source, "path": path}
        for name, x in images.items():
            agreement = compare_logits(reference[name], run(target, x))
            row[f"{name}_agree"] = round(agreement.top1_agreement * 100, 2)
            row[f"{name}_cos"] = round(agreement.cosine, 5)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def speed(variant: str, data: Path, rounds: int, runs: int, work: Path) -> tuple[list[dict[str, Any]], dict]:
    """Batch-1 and batch-8 latency of every INT8 path on CoAtNet-0 at 224, interleaved rounds."""
    import onnx
    import torch

    from coatnet_edge.models.registry import create_model

    torch.manual_seed(0)
    loaded = load_model(create_model(variant, image_size=224, num_classes=1000))
    fp32, _ = export_fp32_onnx(loaded, work / variant, log=lambda line: None)
    pre = PreprocessConfig(image_size=224, crop_pct=1.0)
    paths = sorted(scan_folder(data / "train", verify=False).paths)[::50][:64]  # upscaled: fine for timing
    calib = ImageSample(data / "train", paths, preprocess_batch(paths, pre), pre, seed=0)
    toolkit, toolkit_xml = {}, {}
    for scheme in ("hybrid", "transformer"):  # random weights: speed only, so both schemes are timed
        toolkit[scheme] = work / f"{variant}.toolkit.{scheme}.int8.onnx"
        onnx.save(quantize_onnx(fp32, calib, PtqSettings(scheme=scheme)).model, str(toolkit[scheme]))
        toolkit_xml[scheme] = export_openvino(toolkit[scheme], work / f"{variant}.{scheme}.xml", precision="int8")
    fp32_xml = export_openvino(fp32, work / f"{variant}.fp32.xml", precision="fp32")
    plain_xml = plain_openvino(fp32, calib.images, work / f"{variant}.plain.xml", transformer=False)
    ort_u8 = plain_onnxruntime(fp32, calib.images, work / f"{variant}.ort_u8.onnx")
    configs = {
        "ORT FP32": ort_session(fp32),
        **{f"ORT toolkit {s} Q/DQ (s8 activations, the TensorRT graph)": ort_session(p) for s, p in toolkit.items()},
        "ORT plain quantize_static (u8 activations)": ort_session(ort_u8),
        "OV FP32, OpenVINO's default precision": ov_compiled(fp32_xml, None),
        "OV FP32, f32 pinned": ov_compiled(fp32_xml, "f32"),
        **{f"OV toolkit {s} INT8, default float precision": ov_compiled(p, None) for s, p in toolkit_xml.items()},
        **{f"OV toolkit {s} INT8, f32 pinned": ov_compiled(p, "f32") for s, p in toolkit_xml.items()},
        "OV plain NNCF INT8, default float precision": ov_compiled(plain_xml, None),
        "OV plain NNCF INT8, f32 pinned": ov_compiled(plain_xml, "f32"),
    }
    check = calib.images[:32]
    reference = run(configs["ORT FP32"], check, batch=8)
    cosines = {name: round(compare_logits(reference, run(target, check, batch=8)).cosine, 5)
               for name, target in configs.items()}
    rows = []
    for batch in (1, 8):
        x = np.ascontiguousarray(np.repeat(calib.images[:1], batch, axis=0))
        times: dict[str, list[float]] = {name: [] for name in configs}
        for target in configs.values():  # warm-up
            for _ in range(3):
                run(target, x, batch)
        for _ in range(rounds):
            for name, target in configs.items():
                for _ in range(runs):
                    started = time.perf_counter()
                    run(target, x, batch)
                    times[name].append((time.perf_counter() - started) * 1000)
        for name, samples in times.items():
            target = configs[name]
            rows.append({"batch": batch, "config": name, "p50_ms": round(float(np.percentile(samples, 50)), 2),
                         "p90_ms": round(float(np.percentile(samples, 90)), 2), "timed_runs": len(samples),
                         "float_math": "" if hasattr(target, "get_inputs") else float_math(target),
                         "cosine_vs_fp32": cosines[name]})
            print(json.dumps(rows[-1]), flush=True)
    return rows, {"calib": len(calib)}


VARIANTS = ("why: toolkit --scheme transformer (TensorRT preset, signed INT8)",
            "why: the same without the signed rewrite (u8 kept after GELU/Sigmoid; not a TensorRT graph)",
            "why: toolkit --preset openvino --scheme transformer (asymmetric activations)",
            "why: toolkit --preset openvino (hybrid, asymmetric activations)")


def variant_targets(fp32: Path, calib: ImageSample, stages: str, work: Path) -> dict[str, Any]:
    """Toolkit settings that isolate the differences from the plain paths: scheme, signedness, asymmetry.
    Each runs in ONNX Runtime (the Q/DQ graph itself)."""
    import onnx

    from coatnet_edge.calibration import ptq

    settings = (PtqSettings(scheme="transformer", attention_stages=stages),
                PtqSettings(scheme="transformer", attention_stages=stages),
                PtqSettings(preset="openvino", scheme="transformer", attention_stages=stages),
                PtqSettings(preset="openvino", attention_stages=stages))
    out = {}
    for index, (name, setting) in enumerate(zip(VARIANTS, settings, strict=True)):
        keep = ptq.to_signed_int8
        if index == 1:  # diagnostic only: skip the rewrite TensorRT needs, to measure what it costs
            ptq.to_signed_int8 = lambda model: 0
        try:
            model = quantize_onnx(fp32, calib, setting).model
        finally:
            ptq.to_signed_int8 = keep
        path = work / f"{fp32.stem}.variant{index}.onnx"
        onnx.save(model, str(path))
        out[name] = ort_session(path)
    return out


def fidelity_table(rows: list[dict[str, Any]]) -> str:
    header = ["model", "INT8 path (same FP32 ONNX, same calibration images)", "clean agree %", "clean cosine",
              "corrupted agree %", "corrupted cosine"]
    return table(header, [[r["model"], r["path"], r["clean_agree"], r["clean_cos"], r["corrupted_agree"],
                           r["corrupted_cos"]] for r in rows])


def speed_table(rows: list[dict[str, Any]]) -> str:
    base = {(r["batch"], r["config"]): r["p50_ms"] for r in rows}
    header = ["batch", "configuration", "float math", "p50 ms", "p90 ms", "x OV FP32 f32", "x ORT FP32",
              "cosine vs FP32 (random weights)"]
    cells = [[r["batch"], r["config"], r["float_math"], r["p50_ms"], r["p90_ms"],
              round(base[(r["batch"], "OV FP32, f32 pinned")] / r["p50_ms"], 2),
              round(base[(r["batch"], "ORT FP32")] / r["p50_ms"], 2), r["cosine_vs_fp32"]] for r in rows]
    return table(header, cells)


def summary(fid: list[dict[str, Any]], spd: list[dict[str, Any]]) -> str:
    """Statements computed from the rows, so they cannot go stale."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in fid):
        mine = [r for r in fid if r["model"] == model]
        for split in ("clean", "corrupted"):
            best_plain = max((r for r in mine if r["path"].startswith("plain")), key=lambda r: r[f"{split}_agree"])
            best_toolkit = max((r for r in mine if r["path"].startswith(("toolkit", "why: toolkit"))),
                               key=lambda r: r[f"{split}_agree"])
            toolkit = [r for r in mine if r["path"].startswith("toolkit")]
            lines.append(f"- {model}, {split}: toolkit {' / '.join(str(r[f'{split}_agree']) for r in toolkit)} % "
                         f"agreement (ORT graph / OV IR) vs best plain {best_plain[f'{split}_agree']} % "
                         f"({best_plain['path'].removeprefix('plain: ')}); >= 99 %: "
                         f"{'yes' if min(r[f'{split}_agree'] for r in toolkit) >= 99 else 'no'}; best toolkit setting "
                         f"{best_toolkit[f'{split}_agree']} % ({best_toolkit['path'].removeprefix('why: ')}).")
    p50 = {(r["batch"], r["config"]): r["p50_ms"] for r in spd}
    for batch in (1, 8):
        for hint in ("default float precision", "f32 pinned"):
            plain = p50[(batch, f"OV plain NNCF INT8, {hint}")]
            ratios = [f"{plain / p50[(batch, f'OV toolkit {s} INT8, {hint}')]:.2f}x ({s})"
                      for s in ("hybrid", "transformer")]
            lines.append(f"- OpenVINO, batch {batch}, {hint}: toolkit INT8 runs at {' / '.join(ratios)} the plain "
                         "NNCF path's speed (target 1.2x).")
        ort = p50[(batch, "ORT FP32")]
        toolkit_ort = min(p50[(batch, f"ORT toolkit {s} Q/DQ (s8 activations, the TensorRT graph)")]
                          for s in ("hybrid", "transformer"))
        plain_ort = p50[(batch, "ORT plain quantize_static (u8 activations)")]
        lines.append(f"- ONNX Runtime, batch {batch}: toolkit Q/DQ (faster scheme) {ort / toolkit_ort:.2f}x and plain "
                     f"u8 QDQ {ort / plain_ort:.2f}x the speed of ORT FP32.")
    return "\n".join(lines) + "\n"


METHOD = """
Fidelity: the built-in models ({models}), each exported once to FP32 ONNX. Every INT8 path starts from that
file and the same {calib} calibration images of the built-in train split (seeded, stratified), with the
model's own preprocessing. The toolkit rows are `coatnet-edge quantize` defaults (NNCF on the ONNX graph,
TensorRT preset: signed symmetric INT8; `--scheme auto`: each default candidate scored on up to 300 train
images beyond the calibration sample and a corrupted copy of them, the most faithful kept); the plain rows are
what each library's documentation shows, with default settings. All rows are measured against the FP32 ONNX in
ONNX Runtime (the same reference for all), on the whole validation split (clean) and on its corrupted copy
(`coatnet-edge data corrupt`, the four kinds cycled, severity 3). agree = share of images whose INT8 top-1
equals FP32's; cosine = mean cosine of the logits. OpenVINO rows are compiled with float parts pinned to f32
(so bf16 float math on AMX/AVX512-BF16 CPUs does not mix into INT8 fidelity). The "why" rows are other toolkit
settings on the same inputs, run in ONNX Runtime, to isolate what differs from the plain paths (scheme, the
signed-INT8 rewrite TensorRT needs, asymmetric activations); the unsigned one is a diagnostic, not a graph
TensorRT accepts.

Speed: our {variant} at 224 px, seeded random weights, batch 1 and 8 (one image repeated), {rounds}
interleaved rounds of {runs} timed runs per configuration after 3 warm-up runs; p50/p90 over all timed runs.
Ratios are p50 ratios measured in this run. "float math" is what OpenVINO compiled the float parts for
(INFERENCE_PRECISION_HINT read back). The cosine column uses random weights and 32 images, so it says little
about accuracy; the fidelity table above does.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("runs/builtin/data"))
    parser.add_argument("--models", default="builtin:student,builtin:teacher")
    parser.add_argument("--calib-size", type=int, default=300)
    parser.add_argument("--speed-model", default="coatnet_0")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-page", action="store_true", help="print only (a trial run)")
    args = parser.parse_args()
    machine, started = Machine(), time.perf_counter()
    data = write_dataset(args.data, SynthConfig(seed=0), workers=2)
    corrupted = data.parent / f"{data.name}_val_corrupted"
    if not corrupted.is_dir():
        write_corrupted(data / "val", corrupted, CorruptConfig(severity=3))
    work = Path(tempfile.mkdtemp())
    fid = [row for source in args.models.split(",") for row in fidelity(source, data, corrupted, args.calib_size, work)]
    spd, _ = speed(args.speed_model, data, args.rounds, args.runs, work)
    if args.no_page:
        return
    write_page("int8_peers.md", title="INT8: the toolkit's paths vs the plain ones",
               method=METHOD.format(models=args.models, calib=args.calib_size, variant=args.speed_model,
                                    rounds=args.rounds, runs=args.runs),
               machine=machine, wall_s=time.perf_counter() - started,
               sections=["## Summary\n\n" + summary(fid, spd), "## Fidelity\n\n" + fidelity_table(fid),
                         f"## Speed ({args.speed_model}, 224 px)\n\n" + speed_table(spd)])


if __name__ == "__main__":
    main()
