"""The toolkit's INT8 vs the plain INT8 paths a user writes in a few lines: same FP32 ONNX, same calibration
images, same preprocessing, one process (issue 16's peer benchmark).

    python benchmarks/int8_peers.py [--data runs/builtin/data] [--models builtin:student,builtin:teacher]
                                    [--calib-size 300] [--speed-models coatnet_0,timm:coatnet_0_rw_224]
                                    [--rounds 5] [--runs 10]

Fidelity: each built-in model is exported to FP32 ONNX once; every INT8 path starts from that file and the
same calibration images, and is measured against the FP32 ONNX in ONNX Runtime on the whole validation
split and on its corrupted copy (`coatnet-edge data corrupt`: blur, noise, contrast, JPEG cycled, severity 3).
Speed: our CoAtNet-0 and timm coatnet_0_rw_224 at 224 px (seeded random weights, 64 calibration images of the
built-in train split upscaled to 224), batch 1 and 8, every configuration timed in interleaved rounds so drift
hits all alike.
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

from coatnet_edge.calibration.candidates import candidate_settings
from coatnet_edge.calibration.onnxruntime_int8 import u8_graph
from coatnet_edge.calibration.openvino_int8 import candidate_model
from coatnet_edge.calibration.ptq import PtqSettings, quantize_onnx
from coatnet_edge.calibration.quantize import quantize
from coatnet_edge.data.corrupt import CorruptConfig, write_corrupted
from coatnet_edge.data.folders import scan_folder
from coatnet_edge.data.preprocess import PreprocessConfig, preprocess_batch
from coatnet_edge.data.sampling import ImageSample, build_calibration_set
from coatnet_edge.data.synth import SynthConfig, write_dataset
from coatnet_edge.export.onnx import export_fp32_onnx
from coatnet_edge.export.openvino import export_openvino
from coatnet_edge.manifest import read_manifest
from coatnet_edge.metrics import compare_logits
from coatnet_edge.models.source import load_model

FIDELITY_PATHS = ("toolkit TensorRT target (`quantize` default, kept {trt}): the Q/DQ graph in ONNX Runtime",
                  "toolkit OpenVINO target (`export --backend openvino --int8`, kept {ov}): its IR in OpenVINO",
                  "toolkit ONNX Runtime target (`export --backend onnxruntime --int8`, kept {ort})",
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


def ov_compiled(model: Any, hint: str | None) -> Any:
    """An IR path or an openvino.Model compiled for the CPU with INFERENCE_PRECISION_HINT ``hint`` (None:
    OpenVINO's default for this CPU)."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(model)) if isinstance(model, Path) else model
    return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint} if hint else {})


def run(target: Any, images: np.ndarray, batch: int = 100) -> np.ndarray:
    """Logits of an ORT session, an OpenVINO compiled model or a toolkit runner."""
    outs = []
    for i in range(0, len(images), batch):
        x = np.ascontiguousarray(images[i:i + batch])
        if hasattr(target, "info"):
            outs.append(target.run(x))
        elif hasattr(target, "get_inputs"):
            outs.append(target.run(None, {target.get_inputs()[0].name: x})[0])
        else:
            outs.append(np.array(target(x)[target.output(0)]))
    return np.concatenate(outs)


def float_math(compiled: Any) -> str:
    return compiled.get_property("INFERENCE_PRECISION_HINT").to_string()


def fidelity(source: str, data: Path, corrupted: Path, calib_size: int, work: Path,
             label: str) -> list[dict[str, Any]]:
    from coatnet_edge.pipeline.export import export
    from coatnet_edge.runtime import load_runner

    loaded = load_model(source)
    # the toolkit's three INT8 targets, each made by the verb a user types, with its defaults
    done = quantize(source, calib_dir=data / "train", out=work / label.replace(":", "_"), calib_size=calib_size)
    fp32, toolkit = done.fp32_onnx, done.int8_onnx
    ov_xml = export(toolkit, out=work / f"{fp32.stem}.ov", backend="openvino", precision="int8").artifact
    ort_graph = export(toolkit, out=work / f"{fp32.stem}.ort", backend="onnxruntime", precision="int8").artifact
    kept = {"trt": done.manifest["quantization"]["selection"]["chosen"],
            "ov": read_manifest(ov_xml)["openvino_int8"]["chosen"],
            "ort": read_manifest(ort_graph)["onnxruntime_int8"]["chosen"]}
    ov_runner = load_runner(ov_xml)  # float parts as the export chose them (manifest)
    splits = {"clean": data / "val", "corrupted": corrupted}
    images = {name: preprocess_batch(scan_folder(path, verify=False).paths, loaded.preprocess)
              for name, path in splits.items()}
    reference = {name: run(ort_session(fp32), x) for name, x in images.items()}
    calib = build_calibration_set(data / "train", loaded.preprocess, size=calib_size, seed=0)
    paths = [path.format(**kept) for path in FIDELITY_PATHS]
    targets = {
        paths[0]: ort_session(toolkit),
        f"{paths[1]}, float parts {ov_runner.info.precision}": ov_runner,
        paths[2]: ort_session(ort_graph),
        paths[3]: ov_compiled(plain_openvino(fp32, calib.images, work / f"{fp32.stem}.plain.xml",
                                             transformer=False), "f32"),
        paths[4]: ov_compiled(plain_openvino(fp32, calib.images, work / f"{fp32.stem}.plain_tr.xml",
                                             transformer=True), "f32"),
        paths[5]: ort_session(plain_onnxruntime(fp32, calib.images, work / f"{fp32.stem}.ort_u8.onnx")),
    }
    targets.update(variant_targets(fp32, calib, loaded.attention_stages, work))
    rows = []
    for path, target in targets.items():
        row: dict[str, Any] = {"model": label, "path": path}
        for name, x in images.items():
            agreement = compare_logits(reference[name], run(target, x))
            row[f"{name}_agree"] = round(agreement.top1_agreement * 100, 2)
            row[f"{name}_cos"] = round(agreement.cosine, 5)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def speed_model(name: str) -> Any:
    """Our variant (``coatnet_0``) or a timm one (``timm:coatnet_0_rw_224``) at 224 px, seeded random weights."""
    import torch

    from coatnet_edge.models.registry import create_model

    torch.manual_seed(0)
    return load_model(name) if name.startswith("timm:") else load_model(
        create_model(name, image_size=224, num_classes=1000))


QDQ_TIMED = ("hybrid", "transformer", "transformer+shift")
OV_TOOLKIT = {"qdq hybrid": "the Q/DQ graph converted (hybrid scheme)",
              "qdq transformer": "the Q/DQ graph converted (transformer scheme)",
              "qdq transformer+shift": "the Q/DQ graph converted (transformer scheme, per-channel centring)",
              "nncf-transformer": "NNCF on the OpenVINO model, model_type=TRANSFORMER (= plain TRANSFORMER)"}


def speed(variant: str, data: Path, rounds: int, runs: int, work: Path) -> list[dict[str, Any]]:
    """Batch-1 and batch-8 latency of every INT8 path on one model at 224, interleaved rounds."""
    import onnx

    loaded = speed_model(variant)
    folder = work / variant.replace(":", "_")
    fp32, _ = export_fp32_onnx(loaded, folder, log=lambda line: None)
    pre = PreprocessConfig(image_size=224, crop_pct=1.0)
    paths = sorted(scan_folder(data / "train", verify=False).paths)[::50][:64]  # upscaled: fine for timing
    calib = ImageSample(data / "train", paths, preprocess_batch(paths, pre), pre, seed=0)
    qdq, ov = {}, {}
    for scheme in QDQ_TIMED:  # random weights: speed only, so each candidate the toolkit keeps most is timed
        qdq[scheme] = folder / f"toolkit.{scheme}.int8.onnx"
        settings = candidate_settings(PtqSettings(attention_stages=loaded.attention_stages), scheme)
        onnx.save(quantize_onnx(fp32, calib, settings).model, str(qdq[scheme]))
        ov[f"qdq {scheme}"] = export_openvino(qdq[scheme], folder / f"{scheme}.xml", precision="int8")
    ov["nncf-transformer"] = candidate_model("nncf-transformer", fp32, qdq["hybrid"], calib.images)
    u8 = folder / "toolkit.u8.onnx"
    onnx.save(u8_graph(fp32, calib.images), str(u8))
    fp32_xml = export_openvino(fp32, folder / "fp32.xml", precision="fp32")
    plain_xml = plain_openvino(fp32, calib.images, folder / "plain.xml", transformer=False)
    ort_u8 = plain_onnxruntime(fp32, calib.images, folder / "ort_u8.onnx")
    configs = {
        "ORT FP32": ort_session(fp32),
        **{f"ORT toolkit Q/DQ {s} (s8 activations, the TensorRT graph)": ort_session(p) for s, p in qdq.items()},
        ORT_U8: ort_session(u8),
        ORT_PLAIN: ort_session(ort_u8),
        OV_FP32_DEFAULT: ov_compiled(fp32_xml, None),
        "OV FP32, f32 pinned": ov_compiled(fp32_xml, "f32"),
        **{f"OV toolkit {k}: {text}, {h}": ov_compiled(ov[k], hint) for k, text in OV_TOOLKIT.items()
           for h, hint in (("default float precision", None), ("f32 pinned", "f32"))},
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
            rows.append({"model": variant, "batch": batch, "config": name,
                         "p50_ms": round(float(np.percentile(samples, 50)), 2),
                         "p90_ms": round(float(np.percentile(samples, 90)), 2), "timed_runs": len(samples),
                         "float_math": "" if hasattr(target, "get_inputs") else float_math(target),
                         "cosine_vs_fp32": cosines[name]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


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
    base = {(r["model"], r["batch"], r["config"]): r["p50_ms"] for r in rows}
    header = ["model", "batch", "configuration", "float math", "p50 ms", "p90 ms", "x OV FP32 f32", "x ORT FP32",
              "cosine vs FP32 (random weights)"]
    cells = [[r["model"], r["batch"], r["config"], r["float_math"], r["p50_ms"], r["p90_ms"],
              round(base[(r["model"], r["batch"], "OV FP32, f32 pinned")] / r["p50_ms"], 2),
              round(base[(r["model"], r["batch"], "ORT FP32")] / r["p50_ms"], 2), r["cosine_vs_fp32"]] for r in rows]
    return table(header, cells)


ORT_U8 = "ORT toolkit u8 graph (the ONNX Runtime target's u8 candidate, GELU as one op)"
ORT_PLAIN = "ORT plain quantize_static (u8 activations, every op)"
OV_FP32_DEFAULT = "OV FP32, OpenVINO's default precision"


def _fidelity_lines(fid: list[dict[str, Any]]) -> list[str]:
    lines = []
    for model in dict.fromkeys(r["model"] for r in fid):
        mine = [r for r in fid if r["model"] == model]
        for split in ("clean", "corrupted"):
            agree, cos = f"{split}_agree", f"{split}_cos"
            plain = max((r for r in mine if r["path"].startswith("plain")), key=lambda r: (r[agree], r[cos]))
            for target in ("TensorRT", "OpenVINO", "ONNX Runtime"):
                row = next(r for r in mine if r["path"].startswith(f"toolkit {target} target"))
                verdict = "at least as high" if (row[agree], row[cos]) >= (plain[agree], plain[cos]) else "below"
                goal = "yes" if row[agree] >= 99 and row[cos] >= 0.999 else "no"
                lines.append(f"- {model}, {split}, {target} target: {row[agree]} % / {row[cos]} (agreement / cosine) "
                             f"vs best plain {plain[agree]} % / {plain[cos]} ({plain['path'].removeprefix('plain: ')}):"
                             f" {verdict}; >= 99 % and 0.999: {goal}.")
    return lines


def _speed_lines(spd: list[dict[str, Any]]) -> list[str]:
    lines = []
    p50 = {(r["model"], r["batch"], r["config"]): r["p50_ms"] for r in spd}
    for model in dict.fromkeys(r["model"] for r in spd):
        for batch in (1, 8):
            ms = {config: p50[(m, b, config)] for (m, b, config) in p50 if (m, b) == (model, batch)}
            for hint in ("default float precision", "f32 pinned"):
                plain = ms[f"OV plain NNCF INT8, {hint}"]
                mine = {k: ms[f"OV toolkit {k}: {text}, {hint}"] for k, text in OV_TOOLKIT.items()}
                ratios = ", ".join(f"{plain / t:.2f}x ({k})" for k, t in mine.items())
                fastest = min(mine.values())
                lines.append(f"- {model}, OpenVINO, batch {batch}, {hint}: toolkit INT8 candidates at {ratios} the "
                             f"plain NNCF path's speed (target 1.2x); the fastest at "
                             f"{ms['OV FP32, f32 pinned'] / fastest:.2f}x OV FP32 f32 (target 2x) and "
                             f"{ms[OV_FP32_DEFAULT] / fastest:.2f}x OV FP32 at OpenVINO's default precision.")
            ort = ms["ORT FP32"]
            qdq = min(ms[f"ORT toolkit Q/DQ {s} (s8 activations, the TensorRT graph)"] for s in QDQ_TIMED)
            lines.append(f"- {model}, ONNX Runtime, batch {batch}: the u8 graph (GELU as one op) "
                         f"{ort / ms[ORT_U8]:.2f}x, the Q/DQ graph {ort / qdq:.2f}x, plain quantize_static "
                         f"{ort / ms[ORT_PLAIN]:.2f}x the speed of ORT FP32.")
    return lines


def summary(fid: list[dict[str, Any]], spd: list[dict[str, Any]]) -> str:
    """Statements computed from the rows, so they cannot go stale."""
    return "\n".join(_fidelity_lines(fid) + _speed_lines(spd)) + "\n"


METHOD = """
Fidelity: the built-in models ({models}), on the built-in shapes; with `--glyphs`, also the teacher and
student `benchmarks/train_builtin.py --family glyphs` trained on the glyph family (`coatnet-edge data synth
--family glyphs`: letters and digits from matplotlib's fonts), on their own data. `coatnet-edge quantize`
(defaults, {calib} calibration images of the train split, seeded and stratified) exports each to FP32 ONNX
once; every INT8 path starts from that file and those calibration images, with the model's own preprocessing.
The three toolkit rows are its three INT8 targets, made by the verbs a user types, with their defaults: the
TensorRT target is `quantize`'s Q/DQ graph (NNCF on the ONNX graph, signed symmetric INT8; `--scheme auto`
keeps the candidate scheme most faithful on up to 300 train images beyond the calibration sample and a
corrupted copy of them); the OpenVINO target is `export --backend openvino --int8` from it (the Q/DQ graph
converted, or NNCF on the OpenVINO model with default or TRANSFORMER settings, each measured in OpenVINO on
the same held-out images, one kept by the stated rule; run with the float parts its export chose); the ONNX
Runtime target is `export --backend onnxruntime --int8` (the Q/DQ graph, or ONNX Runtime's own u8 graph with
GELU as one op, measured the same way). The plain rows are what each library's documentation shows, with
default settings. All rows are measured against the FP32 ONNX in ONNX Runtime (the same reference for all), on
the whole validation split (clean) and on its corrupted copy (`coatnet-edge data corrupt`, the four kinds
cycled, severity 3). agree = share of images whose INT8 top-1 equals FP32's; cosine = mean cosine of the
logits. Plain OpenVINO rows are compiled with float parts pinned to f32. The "why" rows are other toolkit
settings on the same inputs, run in ONNX Runtime, to isolate what differs from the plain paths (scheme, the
signed-INT8 rewrite TensorRT needs, asymmetric activations); the unsigned one is a diagnostic, not a graph
TensorRT accepts.

Speed: {variant} at 224 px, seeded random weights, batch 1 and 8 (one image repeated), {rounds} interleaved
rounds of {runs} timed runs per configuration after 3 warm-up runs; p50/p90 over all timed runs. Ratios are
p50 ratios measured in this run. The OpenVINO toolkit rows are each candidate the OpenVINO target measures
(which one it keeps depends on the trained model and images: see the fidelity table); "float math" is what
OpenVINO compiled the float parts for (INFERENCE_PRECISION_HINT read back). The cosine column uses random
weights and 32 images, so it says little about accuracy; the fidelity table above does.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("runs/builtin/data"))
    parser.add_argument("--models", default="builtin:student,builtin:teacher")
    parser.add_argument("--glyphs", type=Path, default=None,
                        help="OUT of `train_builtin.py --family glyphs`: its student and teacher, on its data, too")
    parser.add_argument("--calib-size", type=int, default=300)
    parser.add_argument("--speed-models", default="coatnet_0,timm:coatnet_0_rw_224")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-page", action="store_true", help="print only (a trial run)")
    args = parser.parse_args()
    machine, started = Machine(), time.perf_counter()
    data = write_dataset(args.data, SynthConfig(seed=0), workers=2)
    families = [(data, [(source, source) for source in args.models.split(",")])]
    if args.glyphs:
        families.append((args.glyphs / "data", [(f"glyphs:{role}", str(args.glyphs / role / "best.safetensors"))
                                                for role in ("student", "teacher")]))
    work = Path(tempfile.mkdtemp())
    fid = []
    for root, models in families:
        corrupted = root.parent / f"{root.name}_val_corrupted"
        if not corrupted.is_dir():
            write_corrupted(root / "val", corrupted, CorruptConfig(severity=3))
        for label, source in models:
            fid += fidelity(source, root, corrupted, args.calib_size, work, label=label)
    spd = [row for name in args.speed_models.split(",") for row in speed(name, data, args.rounds, args.runs, work)]
    if args.no_page:
        return
    write_page("int8_peers.md", title="INT8: the toolkit's paths vs the plain ones",
               method=METHOD.format(models=args.models, calib=args.calib_size, variant=args.speed_models,
                                    rounds=args.rounds, runs=args.runs),
               machine=machine, wall_s=time.perf_counter() - started,
               sections=["## Summary\n\n" + summary(fid, spd), "## Fidelity\n\n" + fidelity_table(fid),
                         "## Speed (224 px)\n\n" + speed_table(spd)])


if __name__ == "__main__":
    main()
