"""Every artifact `coatnet-edge export` can build on this machine, for the built-in student and for
CoAtNet-0 at 224: export time, size on disk, parity; plus the residual-add INT8 trade-off.

    python benchmarks/export_artifacts.py [--out runs/export_bench] [--skip-coatnet0]

CoAtNet-0 has random weights here (no downloads): parity and sizes are what they would be for a
trained model, accuracy is not measured for it. Calibration images: the built-in synthetic dataset,
generated at 256 px for the 224 model. Latency: OpenVINO CPU, batch 1, 10 warm-up runs then the
median (p50) of 50 timed runs, all in this process, so ratios are comparable within one run.
Residual adds: the hybrid PTQ model as built (S1-S2 residual Adds quantized) vs the same with those
Adds kept in float (`--ignore`): agreement with FP32 on validation images and OpenVINO latency.
Prints the tables and writes them, with the machine, to docs/export.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from docpage import INTERVALS_NOTE, Machine, fidelity_fields, fraction_text, mean_text, printable, table, write_page

from coatnet_edge.data.sampling import build_calibration_set
from coatnet_edge.data.synth import SynthConfig, write_dataset
from coatnet_edge.environment import cpu_info
from coatnet_edge.pipeline.export import export_model
from coatnet_edge.runtime import load_runner


def _p50_ms(path: Path, image: np.ndarray, warmup: int = 10, runs: int = 50) -> float:
    runner = load_runner(path, backend="openvino")
    for _ in range(warmup):
        runner.run(image)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        runner.run(image)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


def _residual_adds(onnx_path: Path) -> list[str]:
    import onnx

    model = onnx.load(str(onnx_path))
    constants = {t.name for t in model.graph.initializer} | {n.output[0] for n in model.graph.node
                                                             if n.op_type == "Constant"}
    return [n.name for n in model.graph.node if n.op_type == "Add" and n.name.startswith(("/stages/stages.1/",
            "/stages/stages.2/")) and not any(i in constants for i in n.input)]


def coatnet0_checkpoint(out: Path) -> Path:
    import torch

    from coatnet_edge.data.preprocess import PreprocessConfig
    from coatnet_edge.models.checkpoint import save_checkpoint
    from coatnet_edge.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("coatnet_0", num_classes=1000, image_size=224).eval()
    path = out / "coatnet_0_224.safetensors"
    save_checkpoint(model, path, preprocess=PreprocessConfig(image_size=224, crop_pct=0.875))
    return path


def bench(model: str, data: Path, out: Path, calib_size: int) -> list[dict]:
    rows = []
    targets = [("onnx", "fp32"), ("openvino", "fp32"), ("openvino", "fp16"), ("onnx", "int8"), ("openvino", "int8")]
    for backend, precision in targets:
        started = time.perf_counter()
        int8_onnx = next(out.glob("*.int8.onnx"), None)
        source = str(int8_onnx) if (backend, precision) == ("openvino", "int8") and int8_onnx else model
        result = export_model(source, out=out, backend=backend, precision=precision, calib_dir=data / "train",
                              log=lambda s: None, **({"calib_size": calib_size} if precision == "int8"
                                                     and source == model else {}))
        seconds = time.perf_counter() - started
        m = result.manifest
        parity = m.get("parity_vs_onnx") or m.get("parity_vs_pytorch") or m.get("check_vs_fp32", {})
        rows.append({"model": model, "artifact": result.artifact.name, "backend": backend, "precision": precision,
                     "export_s": round(seconds, 1), "size_mb": round(sum(m.get("files_bytes", {}).values()
                                                                         or [m["size_bytes"]]) / 1e6, 2),
                     "parity_vs": parity.get("method", ""), "max_abs": parity.get("max_abs"),
                     "cosine": parity.get("cosine"), "top1_agreement": parity.get("top1_agreement"),
                     "cosine_ci": parity.get("cosine_ci"), "agreement_ci": parity.get("agreement_ci")})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def residual_tradeoff(model: str, data: Path, out: Path, calib_size: int) -> list[dict]:
    from coatnet_edge.calibration.quantize import quantize
    from coatnet_edge.models.checkpoint import load_checkpoint

    _, info = load_checkpoint(model)
    val = build_calibration_set(data / "val", info.preprocess, size=240, seed=1, warn_short=False).images
    rows = []
    for label, sub in (("residual adds INT8", "res_int8"), ("residual adds float", "res_float")):
        target = out / sub
        ignore = () if sub == "res_int8" else tuple(f"^{name}$" for name in _residual_adds(
            next(out.glob("*.fp32.onnx"))))
        result = quantize(model, calib_dir=data / "train", out=target, calib_size=calib_size, ignored_patterns=ignore,
                          log=lambda s: None)
        fp32 = result.fp32_onnx
        ref = np.concatenate([load_runner(fp32).run(val[i:i + 60]) for i in range(0, len(val), 60)])
        got = np.concatenate([load_runner(result.int8_onnx).run(val[i:i + 60]) for i in range(0, len(val), 60)])
        xml = export_model(str(result.int8_onnx), out=target, backend="openvino", precision="int8",
                           log=lambda s: None).artifact
        fp32_xml = export_model(model, out=target, backend="openvino", precision="fp32", log=lambda s: None).artifact
        image = val[:1]
        row = {"model": model, "config": label, "ignored_adds": len(ignore), **fidelity_fields(ref, got),
               "ov_fp32_p50_ms": round(_p50_ms(fp32_xml, image), 3), "ov_int8_p50_ms": round(_p50_ms(xml, image), 3)}
        row["speedup_vs_fp32"] = round(row["ov_fp32_p50_ms"] / row["ov_int8_p50_ms"], 2)
        rows.append(row)
        print(json.dumps(printable(row)), flush=True)
    return rows


def parity_count(method: str) -> int:
    """How many inputs an export's parity check used, read from its recorded method ('the first 8 images ...')."""
    return next(int(word) for word in method.split() if word.isdigit())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/export_bench"))
    parser.add_argument("--calib-size", type=int, default=300)
    parser.add_argument("--skip-coatnet0", action="store_true")
    args = parser.parse_args()
    machine, wall_started = Machine(), time.perf_counter()
    print(json.dumps({"cpu": cpu_info()}), flush=True)
    small = write_dataset(args.out / "data80", SynthConfig(seed=0), workers=2)
    rows = bench("builtin:student", small, args.out / "student", args.calib_size)
    rows += residual_tradeoff("builtin:student", small, args.out / "student", args.calib_size)
    if not args.skip_coatnet0:
        large = write_dataset(args.out / "data256", SynthConfig(seed=0, image_size=256, train_per_class=25,
                                                                val_per_class=20), workers=2)
        checkpoint = coatnet0_checkpoint(args.out)
        rows += bench(str(checkpoint), large, args.out / "coatnet_0", args.calib_size)
        rows += residual_tradeoff(str(checkpoint), large, args.out / "coatnet_0", args.calib_size)
    exports = table(["model", "artifact", "export s", "size MB", "parity measured against", "max abs", "cosine",
                     "top-1 agree"],
                    [[_name(r["model"]), r["artifact"], r["export_s"], r["size_mb"], r["parity_vs"],
                      f"{r['max_abs']:.2e}", f"{r['cosine']:.6f} [{r['cosine_ci'][0]:.6f}, {r['cosine_ci'][1]:.6f}]",
                      fraction_text(r["top1_agreement"], parity_count(r["parity_vs"]))]
                     for r in rows if "artifact" in r])
    residual = table(["model", "INT8 variant", "Adds kept float", "top-1 agreement", "cosine", "OV FP32 p50 ms",
                      "OV INT8 p50 ms", "INT8 speed-up"],
                     [[_name(r["model"]), r["config"], r["ignored_adds"], r["agree_text"],
                       r["cos_text"], r["ov_fp32_p50_ms"], r["ov_int8_p50_ms"],
                       r["speedup_vs_fp32"]] for r in rows if "config" in r])
    print()
    print(exports)
    print(residual)
    write_page("export.md", title="Export: time, size and parity of every artifact; the residual-add INT8 trade-off",
               machine=machine, method=METHOD.format(calib=args.calib_size, intervals=INTERVALS_NOTE), sections=[
                   "## Artifacts\n", exports, "## Residual adds: INT8 or float\n", RESIDUAL, residual,
                   "## Generated from the tables above\n", summary(rows)],
               wall_s=time.perf_counter() - wall_started)


def _name(model: str) -> str:
    return "built-in student" if model == "builtin:student" else Path(model).stem


def summary(rows: list[dict]) -> str:
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        pair = {r["config"]: r for r in rows if r["model"] == model and "config" in r}
        if len(pair) != 2:
            continue
        q, f = pair["residual adds INT8"], pair["residual adds float"]
        lines.append(f"- {_name(model)}: keeping the residual Adds float changed OpenVINO INT8 p50 from "
                     f"{q['ov_int8_p50_ms']} to {f['ov_int8_p50_ms']} ms "
                     f"({100 * (f['ov_int8_p50_ms'] / q['ov_int8_p50_ms'] - 1):+.1f} %, one run's p50s) and logit "
                     f"cosine from {q['cos_text']} to {f['cos_text']}; cosine change paired on the same images "
                     f"{mean_text(f['cosines'] - q['cosines'])}.")
    return "\n".join(lines) + "\n"


METHOD = """
Models: the shipped built-in student (64 px) and CoAtNet-0 at 224 px with random weights and 1,000
outputs (no downloads: its parity and sizes are those of a trained model, its agreement figures are
not accuracy). Each row is one `coatnet_edge.export_model` call; export s is its wall time, INT8 ONNX
including NNCF calibration on {calib} images of the built-in train split (drawn at 256 px for the
224 model), the INT8 IR converted from that INT8 ONNX. size MB: the artifact's files on disk. Parity
is the export's own check as recorded in the artifact's manifest; the "parity measured against"
column is that record's method (what was compared, on which inputs): max abs logit difference,
mean logit cosine and top-1 agreement (on a handful of inputs: a sanity check, hence wide intervals). Export
times include the parity check. {intervals}
"""

RESIDUAL = """The hybrid PTQ model as built (the S1-S2 MBConv residual Adds quantized, as NNCF's CNN treatment does)
against the same quantization with those Adds kept float (`--ignore` patterns). Agreement and cosine
with the FP32 ONNX on 240 validation images; latency: OpenVINO CPU, batch 1, 10 warm-up runs then the
p50 of 50 timed `runner.run` calls, both variants in this one process.
"""


if __name__ == "__main__":
    main()
