"""The full comparison on this machine: PyTorch FP32, ONNX Runtime FP32/INT8, OpenVINO FP32/FP16/INT8,
for the built-in student (64 px) and CoAtNet-0 at 224, each table measured in one run.

    python benchmarks/compare_backends.py [--out runs/compare_bench] [--skip-coatnet0] [--runs 100]

Accuracy: the built-in validation split (1,200 images; 240 for CoAtNet-0, which has random weights
here, so only its agreement with FP32 means anything). Latency: `coatnet-edge compare`'s method
(10 warm-up runs, then --runs timed runs per artifact and batch; p50/p90), batch 1 and 8, the
runtimes' default threading on this machine's cores. Prints the tables and the speed-up ratios.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from coatnet_edge.data.synth import SynthConfig, write_dataset
from coatnet_edge.environment import cpu_info
from coatnet_edge.measure.report import compare, markdown_table
from coatnet_edge.pipeline.export import export


def artifacts_for(model: str, data: Path, out: Path, calib_size: int) -> list[Path]:
    quiet = {"log": lambda s: None}
    built = [export(model, out=out, backend="onnx", **quiet).artifact]
    int8 = export(model, out=out, backend="onnx", precision="int8", calib_dir=data / "train", calib_size=calib_size,
                  **quiet).artifact
    built.append(int8)
    built += [export(model, out=out, backend="openvino", precision=p, **quiet).artifact for p in ("fp32", "fp16")]
    built.append(export(str(int8), out=out, backend="openvino", precision="int8", **quiet).artifact)
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/compare_bench"))
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--calib-size", type=int, default=300)
    parser.add_argument("--skip-coatnet0", action="store_true")
    parser.add_argument("--only-coatnet0", action="store_true")
    args = parser.parse_args()
    print(json.dumps({"cpu": cpu_info()}), flush=True)
    jobs = [("builtin:student", write_dataset(args.out / "data80", SynthConfig(seed=0), workers=2), None)]
    # CoAtNet-0 has random weights and 1,000 outputs: its rows use the images unlabeled (agreement only).
    if not args.skip_coatnet0:
        from export_artifacts import coatnet0_checkpoint  # the script folder is on sys.path

        large = write_dataset(args.out / "data256", SynthConfig(seed=0, image_size=256, train_per_class=25,
                                                                val_per_class=20), workers=2)
        jobs.append((str(coatnet0_checkpoint(args.out)), large, False))
    for model, data, labeled in jobs[1:] if args.only_coatnet0 else jobs:
        name = Path(model.replace("builtin:", "builtin_")).stem
        built = artifacts_for(model, data, args.out / name / "artifacts", args.calib_size)
        result = compare(model, built, data=data / "val", out=args.out / name / "report", batches=(1, 8),
                         runs=args.runs, labeled=labeled)
        print(f"\n## {model}\n")
        print(markdown_table(result.rows))
        for batch in (1, 8):
            ratios = ", ".join(f"{r['backend']} {r['precision']} {r['speedup']:.2f}x" for r in result.rows
                               if r["batch"] == batch and r["backend"] != "pytorch")
            print(f"speed-up vs PyTorch FP32 (p50, batch {batch}): {ratios}")
        print(f"files: {', '.join(str(p) for p in result.files.values())}", flush=True)


if __name__ == "__main__":
    main()
