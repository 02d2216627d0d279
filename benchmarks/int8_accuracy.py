"""INT8 accuracy of the built-in teacher and student: PTQ schemes, SmoothQuant, torch vs ONNX route,
QAT and the accuracy budget, each measured in ONNX Runtime (INT8 ONNX) and OpenVINO (INT8 IR).

    python benchmarks/int8_accuracy.py [--data runs/builtin/data] [--calib-size 300] [--qat-epochs 3]

Calibration: 300 images of the built-in train split (seeded, stratified). Evaluation: the whole
validation split (1,200 images); "drop" is the same runtime's FP32 top-1 minus INT8 top-1 in points,
"agree" the share of images whose INT8 top-1 equals FP32's. The accuracy-budget rows are fitted on
the even-indexed half of the validation split and reported on the odd half and on the whole split.
Prints one JSON line per configuration, then the Markdown tables, and writes them with the machine
and a summary generated from the numbers to docs/int8.md.

Run time: the defaults take tens of minutes on 2 CPU cores, most of it the two QAT rows; to shrink
it, `--qat-epochs 0` leaves QAT out and `--models builtin:student` measures one model. The page
records the command it was written by, so a shrunken run says so.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from docpage import INTERVALS_NOTE, Machine, change_text, fidelity_fields, printable, share_text, table, write_page

from coatnet_edge.calibration.ptq import PtqSettings, quantize_onnx
from coatnet_edge.calibration.qat import QatConfig, export_qat_onnx, fake_quantize, qat
from coatnet_edge.calibration.sensitivity import fit_budget, onnx_logits, rank_layers
from coatnet_edge.data.folders import scan_folder
from coatnet_edge.data.preprocess import preprocess_batch
from coatnet_edge.data.sampling import build_calibration_set
from coatnet_edge.data.synth import SynthConfig, write_dataset
from coatnet_edge.environment import cpu_info
from coatnet_edge.export.onnx import export_onnx
from coatnet_edge.export.openvino import export_openvino
from coatnet_edge.export.qdq_rules import float_layers
from coatnet_edge.runtime import load_runner


def _logits(path: Path, images: np.ndarray) -> np.ndarray:
    runner = load_runner(path)
    return np.concatenate([runner.run(images[i:i + 100]) for i in range(0, len(images), 100)])


def _measure(onnx_path: Path, work: Path, images: np.ndarray, labels: np.ndarray, ref: dict) -> dict:
    """ORT on the ONNX file, OpenVINO on the IR converted from it; each number with its interval."""
    xml = export_openvino(onnx_path, work / f"{onnx_path.stem}.xml", precision="int8")
    row = {}
    for backend, path in (("ort", onnx_path), ("ov", xml)):
        out = _logits(path, images)
        correct, fp32_correct = out.argmax(1) == labels, ref[backend].argmax(1) == labels
        row.update({f"{backend}_top1": share_text(correct),
                    # drop = FP32 minus INT8 hits, paired on the same images (positive: INT8 lost images)
                    f"{backend}_drop": change_text(fp32_correct, correct, say=False),
                    **fidelity_fields(ref[backend], out, prefix=f"{backend}_")})
    return row


def main() -> None:
    import onnx

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("runs/builtin/data"))
    parser.add_argument("--calib-size", type=int, default=300)
    parser.add_argument("--qat-epochs", type=int, default=3, help="0 skips the QAT row")
    parser.add_argument("--budget", type=float, default=1.0, help="max disagreement points for the budget rows")
    parser.add_argument("--models", default="builtin:student,builtin:teacher")
    args = parser.parse_args()
    from coatnet_edge.models.checkpoint import load_checkpoint

    machine, wall_started = Machine(), time.perf_counter()
    data = write_dataset(args.data, SynthConfig(seed=0), workers=2)
    print(json.dumps({"cpu": cpu_info()}), flush=True)
    work = Path(tempfile.mkdtemp())
    rows = []
    for source in args.models.split(","):
        net, info = load_checkpoint(source)
        val = scan_folder(data / "val", labeled=True, verify=False)
        images, labels = preprocess_batch(val.paths, info.preprocess), np.asarray(val.labels)
        fp32 = export_onnx(net, work / "fp32.onnx", image_size=info.preprocess.image_size)
        fp32_xml = export_openvino(fp32, work / "fp32.xml")
        ref = {"ort": _logits(fp32, images), "ov": _logits(fp32_xml, images)}
        rows.append({"model": source, "config": "FP32", **{f"{b}_top1": share_text(r.argmax(1) == labels)
                                                             for b, r in ref.items()}})
        print(json.dumps(rows[-1]), flush=True)
        calib = build_calibration_set(data / "train", info.preprocess, size=args.calib_size, seed=0)

        def record(config: str, model, seconds: float, extra: dict | None = None, source=source, images=images,
                   labels=labels, ref=ref) -> None:
            path = work / f"{len(rows)}.int8.onnx"
            onnx.save(model, str(path))
            rows.append({"model": source, "config": config, "seconds": round(seconds, 1),
                         "float_conv_matmul": len(float_layers(model)),
                         **_measure(path, work, images, labels, ref), **(extra or {})})
            print(json.dumps(printable(rows[-1])), flush=True)

        ptq_hybrid = None
        for scheme, preset, sq in (("hybrid", "tensorrt", False), ("cnn", "tensorrt", False),
                                   ("transformer", "tensorrt", False), ("transformer", "tensorrt", True),
                                   ("hybrid", "tensorrt", True), ("hybrid", "openvino", False)):
            started = time.perf_counter()
            result = quantize_onnx(fp32, calib, PtqSettings(preset=preset, scheme=scheme, smooth_quant=sq))
            record(f"PTQ {scheme} {preset}{' +SmoothQuant' if sq else ''}", result.model,
                   time.perf_counter() - started)
            if (scheme, preset, sq) == ("hybrid", "tensorrt", False):
                ptq_hybrid = result.model

        started = time.perf_counter()
        torch_q, _ = fake_quantize(net, calib, PtqSettings())
        record("PTQ hybrid tensorrt, NNCF torch route (no bias correction)",
               _signed(export_qat_onnx(torch_q, info.preprocess.image_size)), time.perf_counter() - started)

        if args.qat_epochs:
            started = time.perf_counter()
            train = scan_folder(data / "train", labeled=True, verify=False)
            result = qat(net, calib, train, config=QatConfig(epochs=args.qat_epochs), log=lambda s: None)
            record(f"QAT hybrid tensorrt ({args.qat_epochs} epochs, KD from FP32)", result.model,
                   time.perf_counter() - started, {"history": result.history})

        fit, held = slice(0, None, 2), slice(1, None, 2)
        ref_fit = onnx_logits(onnx.load(str(fp32)), images[fit])
        started = time.perf_counter()
        fp32_model = onnx.load(str(fp32))
        ranking = rank_layers(ptq_hybrid, fp32_model, images[fit], ref_fit)
        budget = fit_budget(ptq_hybrid, fp32_model, ranking, images[fit], ref_fit, max_drop=args.budget, max_float=16)
        held_agree = fidelity_fields(ref["ort"][held], onnx_logits(budget.model, images[held]))["agree_text"]
        record(f"PTQ hybrid tensorrt + budget {args.budget} disagreement pts", budget.model,
               time.perf_counter() - started,
               {"budget_met": budget.met, "float_nodes": budget.float_nodes, "fit_half": budget.after,
                "held_out_half_agree": held_agree})

    results = results_table(rows)
    budget_md = budget_table(rows, args.budget)
    print()
    print(results)
    print(budget_md)
    qat_text = (f"{args.qat_epochs} epochs of fine-tuning the NNCF fake-quantized model with distillation from the "
                "FP32 model" if args.qat_epochs else "not run (--qat-epochs 0)")
    write_page("int8.md", title="INT8 accuracy: PTQ schemes, SmoothQuant, torch vs ONNX route, QAT, accuracy budget",
               machine=machine, method=METHOD.format(calib=args.calib_size, budget=args.budget, qat=qat_text,
                                                    intervals=INTERVALS_NOTE),
               sections=["## Results\n", COLUMNS_NOTE, results, "## Accuracy budget\n", budget_md,
                         "## Generated from the tables above\n", summary(rows)],
               wall_s=time.perf_counter() - wall_started)


METHOD = """
Models: the shipped built-in student (`coatnet_pico`) and teacher (`coatnet_micro`), 64 px, 12
classes. Each is exported to FP32 ONNX; every INT8 configuration is quantized from that graph (or,
for the torch-route and QAT rows, from the torch model) with {calib} calibration images of the
built-in train split (seeded, stratified over classes), and measured twice: the INT8 ONNX in ONNX
Runtime (ORT) and the OpenVINO INT8 IR converted from it (OV). Evaluation: the whole validation split
of the built-in dataset, labeled. drop = that runtime's FP32 top-1 minus its INT8 top-1, in points
(negative: INT8 scored higher); agree = share of images whose INT8 top-1 equals the same runtime's
FP32 top-1; cos = mean cosine of INT8 vs FP32 logits. {intervals} QAT: {qat}. Budget rows: the default PTQ model, layers
ranked by the logit SQNR each recovers alone in float and returned to float in that order (at most 16)
until top-1 disagreement with FP32 is at most {budget} points on the even-indexed half of the
validation split; reported on the whole split and on the held-out odd half. seconds: wall time of
the quantization step (calibration, QAT training or budget fitting), not of the measurement. No
latency is measured here.
"""

COLUMNS_NOTE = """Schemes (each a candidate of the TensorRT target, `quantize --candidate`; `cnn` with the tensorrt
preset is its baseline, which `quantize` keeps unless another candidate is more faithful on held-out
images, see int8_seeds.md): `hybrid` quantizes the convolutional stages S0-S2 as a CNN and keeps LayerNorm,
Softmax, residual/bias adds and scale multiplies of the attention stages S3-S4, and the head's global
pooling, in float; `cnn` and `transformer` are NNCF's uniform treatments (model type default /
TRANSFORMER). Presets: `tensorrt` is NNCF's PERFORMANCE preset made signed symmetric INT8 (every zero
point 0); `openvino` is NNCF's MIXED preset (asymmetric activations). float Conv/MatMul: weighted
layers (Conv, MatMul, Gemm) none of whose inputs is dequantized, i.e. left in float.
"""


def results_table(rows: list[dict]) -> str:
    header = ["model", "config", "ORT top-1", "ORT drop", "ORT agree %", "ORT cos", "OV IR top-1", "OV drop",
              "OV agree %", "OV cos", "float Conv/MatMul", "seconds"]
    cells = []
    for r in rows:
        if r["config"] == "FP32":
            cells.append([r["model"], "FP32", r["ort_top1"], "", "", "", r["ov_top1"], "", "", "", "", ""])
        else:
            cells.append([r["model"], r["config"], r["ort_top1"], r["ort_drop"], r["ort_agree_text"],
                          r["ort_cos_text"], r["ov_top1"], r["ov_drop"], r["ov_agree_text"], r["ov_cos_text"],
                          r["float_conv_matmul"], r["seconds"]])
    return table(header, cells)


def budget_table(rows: list[dict], budget: float) -> str:
    header = ["model", "budget (disagreement pts, fitting half)", "met", "layers returned to float",
              "disagreement on fitting half", "ORT agree % on held-out half", "ORT agree % on whole split"]
    cells = [[r["model"], budget, "yes" if r["budget_met"] else "no", len(r["float_nodes"]), round(r["fit_half"], 2),
              r["held_out_half_agree"], r["ort_agree_text"]] for r in rows if "budget_met" in r]
    return table(header, cells)


def summary(rows: list[dict]) -> str:
    """Statements computed from the rows (so they cannot go stale when the numbers change): each configuration's
    agreement against the baseline PTQ (cnn, tensorrt) paired on the same images, better/worse only beyond the
    interval."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model and r["config"] != "FP32"]
        baseline = next(r for r in mine if r["config"] == BASELINE)
        lines.append(f"- {model}: baseline ({BASELINE}) drop {baseline['ort_drop']} (ORT) / {baseline['ov_drop']} (OV) "
                     f"points, agreement {baseline['ort_agree_text']} % / {baseline['ov_agree_text']} %.")
        for row in mine:
            if row is baseline:
                continue
            lines.append(f"  - {row['config']}: agreement vs the baseline "
                         f"{change_text(row['ort_hits'], baseline['ort_hits'])} points (ORT), "
                         f"{change_text(row['ov_hits'], baseline['ov_hits'])} (OV); {row['seconds']} s.")
    return "\n".join(lines) + "\n"


BASELINE = "PTQ cnn tensorrt"


def _signed(model):
    from coatnet_edge.calibration.ptq import to_signed_int8

    to_signed_int8(model)
    return model


if __name__ == "__main__":
    main()
