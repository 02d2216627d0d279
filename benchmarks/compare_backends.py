"""The full comparison on this machine: PyTorch FP32, ONNX Runtime FP32/INT8, OpenVINO FP32/FP16/INT8,
for the built-in student (64 px) and CoAtNet-0 at 224, each table measured in one run.

    python benchmarks/compare_backends.py [--out runs/compare_bench] [--skip-coatnet0] [--runs 100]

Accuracy: the built-in validation split (1,200 images; 240 for CoAtNet-0, which has random weights
here, so only its agreement with FP32 means anything). Latency: `coatnet-edge compare`'s method
(10 warm-up runs, then --runs timed runs per artifact and batch; p50/p90), batch 1 and 8, the
runtimes' default threading on this machine's cores. Prints the tables and the speed-up ratios and
writes them, with the machine and the plots, to docs/measurement.md (+ docs/compare_*.png).

Run time: about 20 minutes on 2 CPU cores, most of it CoAtNet-0 at 224 (PyTorch at batch 8);
`--skip-coatnet0` leaves it out and `--runs` sets the timed runs. The page records the command it
was written by, so a shrunken run says so.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from docpage import Machine, plot_link, write_page  # the script folder is on sys.path

from coatnet_edge.data.synth import SynthConfig, write_dataset
from coatnet_edge.environment import cpu_info
from coatnet_edge.measure.report import compare, markdown_table
from coatnet_edge.pipeline.export import export_model

METHOD = """
Each model is exported by `coatnet_edge.export_model` at its defaults to ONNX FP32, ONNX INT8 (NNCF PTQ
on the ONNX graph, TensorRT preset, {calib} calibration images from the train split; each candidate scheme
is scored against the baseline `cnn` and kept only where more faithful), OpenVINO IR FP32 and FP16, and
the OpenVINO INT8 target made from that INT8 ONNX (its candidates measured in OpenVINO; each INT8 row's
note says what was kept and why); then `coatnet_edge.compare`
measures the PyTorch FP32 reference and every artifact in one process. Accuracy: top-1 (labeled data
only), top-1 agreement, mean logit cosine and SQNR against the PyTorch FP32 logits on the same images.
Latency: per artifact and batch size (1 and 8), 10 untimed warm-up runs then {runs} timed
`runner.run(batch)` calls on a seeded N(0,1) batch, host to host with `time.perf_counter`; p50 and p90
in ms; the runtimes' default threading. speedup = PyTorch FP32 p50 / artifact p50 at the same batch,
measured in the same run (absolute times on a shared VM move between runs; ratios within a run are
what the table states). A `note` says when a runtime executed another precision than the artifact
holds (e.g. an FP16 IR run in bf16 on a CPU without FP16 math). Plots: accuracy (top-1, else
agreement) vs p50 at batch 1, log scale, Pareto front ringed.
"""


def artifacts_for(model: str, data: Path, out: Path, calib_size: int) -> list[Path]:
    quiet = {"log": lambda s: None}
    built = [export_model(model, out=out, backend="onnx", **quiet).artifact]
    int8 = export_model(model, out=out, backend="onnx", precision="int8", calib_dir=data / "train",
                        calib_size=calib_size, **quiet).artifact
    built.append(int8)
    built += [export_model(model, out=out, backend="openvino", precision=p, **quiet).artifact for p in ("fp32", "fp16")]
    built.append(export_model(str(int8), out=out, backend="openvino", precision="int8", **quiet).artifact)
    return built


TITLES = {"builtin:student": ("Built-in student (`coatnet_pico`, 64 px)", "compare_student.png",
                               "Labeled: the validation split of the built-in dataset."),
          "coatnet_0": ("CoAtNet-0 at 224 px", "compare_coatnet0.png",
                        "Random weights and 1,000 outputs (no downloads): the built-in images drawn at 256 px are "
                        "used unlabeled, so its rows have agreement with FP32 and no top-1; the agreement of a "
                        "random-weight model says little about a trained one.")}


def fastest(rows: list[dict], batch: int) -> str:
    timed = [r for r in rows if r["batch"] == batch and r.get("p50_ms") is not None]
    best = min(timed, key=lambda r: r["p50_ms"])
    return (f"fastest at batch {batch}: {best['backend']} {best['precision']} ({best['artifact']}), "
            f"p50 {best['p50_ms']:.3f} ms, {best['speedup']:.2f}x PyTorch FP32")


def section(model: str, result, speedups: list[str], plot: str) -> str:
    title, _, about = TITLES["builtin:student" if model == "builtin:student" else "coatnet_0"]
    images = json.loads(result.files["json"].read_text())["method"]["accuracy"]
    summary = "\n".join(f"- {fastest(result.rows, b)}" for b in sorted({r["batch"] for r in result.rows if r["batch"]}))
    return "\n".join([f"## {title}\n", f"{about} Accuracy on {images}.\n", markdown_table(result.rows),
                      "\n".join(speedups) + "\n", "Generated from the table above:\n", summary + "\n", plot + "\n"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/compare_bench"))
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--calib-size", type=int, default=300)
    parser.add_argument("--skip-coatnet0", action="store_true")
    parser.add_argument("--only-coatnet0", action="store_true")
    args = parser.parse_args()
    machine, started = Machine(), time.perf_counter()
    print(json.dumps({"cpu": cpu_info()}), flush=True)
    jobs = [("builtin:student", write_dataset(args.out / "data80", SynthConfig(seed=0), workers=2), None)]
    # CoAtNet-0 has random weights and 1,000 outputs: its rows use the images unlabeled (agreement only).
    if not args.skip_coatnet0:
        from export_artifacts import coatnet0_checkpoint  # the script folder is on sys.path

        large = write_dataset(args.out / "data256", SynthConfig(seed=0, image_size=256, train_per_class=25,
                                                                val_per_class=20), workers=2)
        jobs.append((str(coatnet0_checkpoint(args.out)), large, False))
    sections, plots = [], {}
    for model, data, labeled in jobs[1:] if args.only_coatnet0 else jobs:
        name = Path(model.replace("builtin:", "builtin_")).stem
        built = artifacts_for(model, data, args.out / name / "artifacts", args.calib_size)
        result = compare(model, built, data=data / "val", out=args.out / name / "report", batches=(1, 8),
                         runs=args.runs, labeled=labeled)
        print(f"\n## {model}\n")
        print(markdown_table(result.rows))
        speedups = []
        for batch in (1, 8):
            ratios = ", ".join(f"{r['backend']} {r['precision']} {r['speedup']:.2f}x" for r in result.rows
                               if r["batch"] == batch and r["backend"] != "pytorch")
            speedups.append(f"speed-up vs PyTorch FP32 (p50, batch {batch}): {ratios}")
            print(speedups[-1])
        print(f"files: {', '.join(str(p) for p in result.files.values())}", flush=True)
        png = TITLES["builtin:student" if model == "builtin:student" else "coatnet_0"][1]
        plots[png] = result.files["png"]
        sections.append(section(model, result, speedups, plot_link(png)))
    write_page("measurement.md", title="Backends compared: accuracy and latency on one CPU", machine=machine,
               method=METHOD.format(runs=args.runs, calib=args.calib_size), sections=sections, plots=plots,
               wall_s=time.perf_counter() - started)


if __name__ == "__main__":
    main()
