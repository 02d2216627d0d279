"""Reproduce the built-in teacher and student shipped in ``coatnet_edge/assets/``.

    python benchmarks/train_builtin.py --out runs/builtin [--install]
    python benchmarks/train_builtin.py --family glyphs --out runs/glyphs --teacher-epochs 12 --student-epochs 15

``--family glyphs`` trains the same pair on the second built-in dataset family (letters and digits from
matplotlib's fonts), so INT8 defaults are measured on two kinds of image (benchmarks/int8_peers.py); those
models stay in OUT (the package ships the shapes pair only).

1. generate the built-in dataset (seed 0: 12 classes x 300 train / 100 val, 80 px);
2. train the teacher (``coatnet_micro``, C-C-T-T) on the train split;
3. distill the student (``coatnet_pico``, 2.2x fewer MACs) from the teacher (KD + CE);
4. write each model's manifest (recipe, data hash, accuracy, params, MACs, hashes, time);
   ``--install`` copies both into the package assets.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

from coatnet_edge.atomic import write_json_atomic
from coatnet_edge.data.synth import FAMILIES, SynthConfig, load_dataset_info, write_dataset
from coatnet_edge.environment import describe_environment
from coatnet_edge.hashing import sha256_file
from coatnet_edge.training.verbs import TrainConfig, distill, report_pair, train

# The label is the main object's shape: crops below ~60% of the image can cut it out, so the
# random-resized-crop range is narrower than ImageNet's (0.08-1).
TEACHER = {"variant": "coatnet_micro",
           "config": TrainConfig(epochs=40, batch_size=64, lr=2e-3, warmup_epochs=2, min_crop_scale=0.6)}
STUDENT = {"variant": "coatnet_pico",
           "config": TrainConfig(epochs=60, batch_size=64, lr=3e-3, warmup_epochs=2, min_crop_scale=0.6,
                                 kd_alpha=0.7, kd_temperature=4.0)}
ASSETS = Path(__file__).resolve().parents[1] / "coatnet_edge" / "assets"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/builtin"))
    parser.add_argument("--install", action="store_true", help="copy the results into coatnet_edge/assets/")
    parser.add_argument("--skip-teacher", action="store_true", help="reuse OUT/teacher")
    parser.add_argument("--family", choices=FAMILIES, default="shapes", help="built-in dataset family")
    parser.add_argument("--teacher-epochs", type=int, default=TEACHER["config"].epochs)
    parser.add_argument("--student-epochs", type=int, default=STUDENT["config"].epochs)
    parser.add_argument("--data-seed", type=int, default=0,
                        help="dataset seed: another seed gives another instance of the family (fresh models)")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and data order of both models")
    args = parser.parse_args()
    if args.install and args.family != "shapes":
        parser.error("--install ships the shapes pair only")
    if args.install and (args.data_seed or args.seed):
        parser.error("--install ships the seed-0 pair only")
    TEACHER["config"] = dataclasses.replace(TEACHER["config"], epochs=args.teacher_epochs, seed=args.seed)
    STUDENT["config"] = dataclasses.replace(STUDENT["config"], epochs=args.student_epochs, seed=args.seed)

    data = write_dataset(args.out / "data", SynthConfig(seed=args.data_seed, family=args.family), workers=2)
    info = load_dataset_info(data)
    data_hash = {"sha256": info["sha256"], "pixels_sha256": info["pixels_sha256"]}
    timings = {}
    if not args.skip_teacher:
        started = time.perf_counter()
        train(data, out=args.out / "teacher", model=TEACHER["variant"], config=TEACHER["config"])
        timings["teacher_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    result = distill(data, teacher=args.out / "teacher" / "best.safetensors", out=args.out / "student",
                     student=STUDENT["variant"], config=STUDENT["config"])
    timings["student_s"] = round(time.perf_counter() - started, 1)

    rows = report_pair(args.out / "teacher" / "best.safetensors", result.best_checkpoint, data / "val")
    for (role, variant, params_m, gmacs, top1), spec in zip(rows, (TEACHER, STUDENT), strict=True):
        ckpt = args.out / role / "best.safetensors"
        manifest = {
            "role": role, "variant": variant, "params_m": float(params_m), "gmacs": float(gmacs),
            "val_top1": float(top1),
            "dataset": {"name": "coatnet-edge-synth", "family": args.family, "seed": args.data_seed, **data_hash},
            "recipe": {"script": "benchmarks/train_builtin.py", **spec["config"].to_dict()},
            "sha256": sha256_file(ckpt), "train_seconds": timings.get(f"{role}_s"),
            "environment": describe_environment(),
        }
        write_json_atomic(ckpt.with_suffix(".manifest.json"), manifest)
        print(json.dumps({k: manifest[k] for k in ("role", "variant", "params_m", "gmacs", "val_top1")}))
        if args.install:
            ASSETS.mkdir(exist_ok=True)
            shutil.copy(ckpt, ASSETS / f"builtin_{role}.safetensors")
            shutil.copy(ckpt.with_suffix(".manifest.json"), ASSETS / f"builtin_{role}.manifest.json")


if __name__ == "__main__":
    main()
