"""timm `coatnet_0_rw_224` through the toolkit vs the plain hand-built path, measured in one run.

    python benchmarks/timm_coatnet.py [--out runs/timm_bench] [--runs 60] [--calib-size 300]

The model has random weights saved to a local safetensors file (no downloads), 12 classes; images
are the built-in shapes drawn at 256 px. Rows:
- toolkit: `coatnet-edge export` FP32 ONNX / OpenVINO IR, `quantize` at its defaults (NNCF PTQ on the ONNX graph,
  TensorRT preset, timm's stage map, candidates against the baseline `cnn`) -> INT8 ONNX and the INT8 IR target;
- plain: what a user writes without the toolkit: `torch.onnx.export` of the timm model ->
  `ov.convert_model` -> `nncf.quantize` on the OpenVINO model with default settings -> IR.
Agreement with FP32 (top-1, cosine) on 240 validation images; OpenVINO/ORT CPU latency p50 at
batch 1 (10 warm-up + --runs timed runs), all in this process. Prints the table and writes it, with
the machine and a comparison generated from the numbers, to docs/timm.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from docpage import INTERVALS_NOTE, Machine, change_text, fidelity_fields, mean_text, printable, table, write_page

METHOD = """
Model: timm `{name}` built with `pretrained=False` and 12 classes, random weights (seed 0) saved to a
local safetensors file and loaded as `timm:{name}` + weights, as a user's fine-tuned checkpoint would
be (nothing is downloaded). Images: the built-in shapes drawn at 256 px; {calib} calibration images
from the train split, 240 evaluation images from the validation split, the timm model's own
preprocessing. Toolkit rows: `coatnet_edge.export_model` FP32 ONNX and OpenVINO IR, and INT8 with the
toolkit's defaults (`export --precision int8`: the TensorRT target's Q/DQ graph, then `export --backend
openvino --int8` from it), each row saying how it was made (the "made by" column, from its manifest).
Plain row: what a user writes without the toolkit: `torch.onnx.export` (legacy
exporter, opset 17) -> `ov.convert_model` -> `nncf.quantize` with default settings on the OpenVINO
model -> IR. Agreement: top-1 agreement and mean logit cosine against the toolkit FP32 ONNX in ONNX
Runtime on the 240 images. Latency: batch 1, 10 untimed warm-up runs then {runs} timed
`runner.run(batch)` calls (`time.perf_counter`, host to host), p50/p90 in ms, ONNX Runtime or
OpenVINO CPU with default threading, all in one process; speed-up = OpenVINO FP32 IR p50 / row p50.
Random weights make agreement a measure of quantization error, not of accuracy on a real task.
{intervals} The summary compares the two INT8 IRs paired on the same images.
"""


def main() -> None:
    import nncf
    import openvino as ov
    import timm
    import torch
    from safetensors.torch import save_file

    from coatnet_edge.data.sampling import build_calibration_set
    from coatnet_edge.data.synth import SynthConfig, write_dataset
    from coatnet_edge.environment import cpu_info
    from coatnet_edge.measure.benchmark import time_runner
    from coatnet_edge.models.timm_source import timm_preprocess
    from coatnet_edge.pipeline.export import export_model
    from coatnet_edge.runtime import load_runner
    from coatnet_edge.runtime.artifact import artifact_origin
    from coatnet_edge.runtime.base import run_batches

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/timm_bench"))
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--calib-size", type=int, default=300)
    parser.add_argument("--name", default="coatnet_0_rw_224")
    args = parser.parse_args()
    machine, wall_started = Machine(), time.perf_counter()
    print(json.dumps({"cpu": cpu_info()}), flush=True)
    data = write_dataset(args.out / "data256", SynthConfig(seed=0, image_size=256, train_per_class=25,
                                                           val_per_class=20), workers=2)
    torch.manual_seed(0)
    model = timm.create_model(args.name, pretrained=False, num_classes=12).eval()
    weights = args.out / f"{args.name}_ft.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    pre = timm_preprocess(model)
    calib = build_calibration_set(data / "train", pre, size=args.calib_size, seed=0)
    val = build_calibration_set(data / "val", pre, size=240, seed=1, warn_short=False).images
    source = {"weights": weights, "log": lambda s: None}
    tool = args.out / "toolkit"
    timings: dict[str, float] = {}
    started = time.perf_counter()
    fp32_onnx = export_model(f"timm:{args.name}", out=tool, backend="onnx", **source).artifact
    fp32_xml = export_model(f"timm:{args.name}", out=tool, backend="openvino", **source).artifact
    timings["toolkit FP32 export s"] = time.perf_counter() - started
    started = time.perf_counter()
    int8_onnx = export_model(f"timm:{args.name}", out=tool, backend="onnx", precision="int8", calib_dir=data / "train",
                             calib_size=args.calib_size, **source).artifact
    int8_xml = export_model(str(int8_onnx), out=tool, backend="openvino", precision="int8", log=lambda s: None).artifact
    timings["toolkit INT8 (calibrate + export) s"] = time.perf_counter() - started

    plain = args.out / "plain"
    plain.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    torch.onnx.export(model, (torch.zeros(1, 3, pre.image_size, pre.image_size),), str(plain / "model.onnx"),
                      opset_version=17, input_names=["images"], output_names=["logits"], dynamo=False)
    ov_model = ov.convert_model(str(plain / "model.onnx"))
    nncf.set_log_level(logging.WARNING)
    quantized = nncf.quantize(ov_model, nncf.Dataset([calib.images[i:i + 1] for i in range(len(calib))]),
                              subset_size=len(calib))
    ov.save_model(quantized, str(plain / "model_int8.xml"))
    timings["plain INT8 (export + nncf.quantize) s"] = time.perf_counter() - started

    ref = run_batches(load_runner(fp32_onnx), val, 24)
    image = val[:1]
    rows = []
    for label, path, backend in (("toolkit FP32 ONNX", fp32_onnx, "onnxruntime"),
                                 ("toolkit FP32 IR", fp32_xml, "openvino"),
                                 ("toolkit INT8 Q/DQ ONNX", int8_onnx, "onnxruntime"),
                                 ("toolkit INT8 IR", int8_xml, "openvino"),
                                 ("plain NNCF-OpenVINO INT8 IR", plain / "model_int8.xml", "openvino")):
        runner = load_runner(path, backend=backend, precision="int8" if "INT8" in label else "fp32")
        # the plain export has a fixed batch of 1, as torch.onnx.export writes it without dynamic_axes
        output = run_batches(runner, val, 1 if label.startswith("plain") else 24)
        latency = time_runner(runner, image, warmup=10, runs=args.runs)
        made_by = "NNCF defaults on ov.convert_model" if label.startswith("plain") else artifact_origin(path) or ""
        rows.append({"config": label, **fidelity_fields(ref, output),
                     "p50_ms": latency["p50_ms"], "p90_ms": latency["p90_ms"], "made_by": made_by})
        print(json.dumps(printable(rows[-1])), flush=True)
    base = rows[1]["p50_ms"]
    print(json.dumps({k: round(v, 1) for k, v in timings.items()}))
    results = table(["configuration", "top-1 agreement with FP32 %", "cosine", "p50 ms", "p90 ms",
                     "speed-up vs OpenVINO FP32", "made by"],
                    [[r["config"], r["agree_text"], r["cos_text"], f"{r['p50_ms']:.2f}",
                      f"{r['p90_ms']:.2f}", f"{base / r['p50_ms']:.2f}", r["made_by"]] for r in rows])
    steps = table(["step", "seconds"], [[k.removesuffix(" s"), round(v, 1)] for k, v in timings.items()])
    print()
    print(results)
    print(steps)
    tool, plain = rows[3], rows[4]
    summary = (f"- toolkit INT8 IR: {base / tool['p50_ms']:.2f}x OpenVINO FP32 (p50 ratio, one run), cosine "
               f"{tool['cos_text']}, agreement {tool['agree_text']} %\n"
               f"- plain NNCF-OpenVINO INT8 IR: {base / plain['p50_ms']:.2f}x OpenVINO FP32, cosine "
               f"{plain['cos_text']}, agreement {plain['agree_text']} %\n"
               f"- toolkit minus plain, paired on the {len(val)} images: agreement "
               f"{change_text(tool['hits'], plain['hits'])} (points); cosine "
               f"{mean_text(tool['cosines'] - plain['cosines'])} (interval over images)\n")
    write_page("timm.md", title=f"A timm CoAtNet ({args.name}): toolkit vs the plain NNCF-OpenVINO path",
               machine=machine, method=METHOD.format(name=args.name, calib=args.calib_size, runs=args.runs,
                                                           intervals=INTERVALS_NOTE),
               sections=["## Agreement and latency\n", results, "## Time per step\n", steps,
                         "## Generated from the tables above\n", summary, DIFFERENCE],
               wall_s=time.perf_counter() - wall_started)


DIFFERENCE = """What differs between the two INT8 rows (by construction, not measured): the toolkit's IR is what
its OpenVINO target made from its INT8 ONNX (see "made by"); the plain result is NNCF's default
quantization of the OpenVINO model (default preset, every op NNCF quantizes by default), an IR for
OpenVINO only.
"""


if __name__ == "__main__":
    main()
