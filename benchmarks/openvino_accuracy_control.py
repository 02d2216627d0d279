"""Does `nncf.quantize_with_accuracy_control` beat the OpenVINO target's candidates? Measured on the built-in models.

    python benchmarks/openvino_accuracy_control.py [--data runs/builtin/data]
                                                   [--models builtin:student,builtin:teacher] [--max-drop 0.002]

Each model is exported to FP32 ONNX and converted to an OpenVINO model once. Every path quantizes that model
from the same 300 calibration images of the built-in train split (seed 0):
- `nncf-transformer`: `nncf.quantize(model_type=TRANSFORMER)`, the OpenVINO target's usual pick;
- `nncf`: `nncf.quantize` defaults;
- accuracy control, TRANSFORMER and defaults: `nncf.quantize_with_accuracy_control` with the validation
  function = top-1 agreement with the FP32 model on the 300 train images beyond the calibration sample (what
  the toolkit's candidates are scored on), `--max-drop` in agreement (0.002 = 0.2 points).
Each INT8 model is compiled for the CPU with f32 float parts and measured against the FP32 model, also
compiled with f32, on the validation split and its corrupted copy (never seen by calibration or validation).
Writes docs/openvino_accuracy_control.md.
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
from docpage import INTERVALS_NOTE, Machine, change_text, mean_text, share_text, table, write_page

from coatnet_edge.data.corrupt import CorruptConfig, write_corrupted
from coatnet_edge.data.folders import scan_folder
from coatnet_edge.data.preprocess import preprocess_batch
from coatnet_edge.data.sampling import build_calibration_set
from coatnet_edge.data.synth import SynthConfig, write_dataset
from coatnet_edge.export.onnx import export_fp32_onnx
from coatnet_edge.metrics import per_image_fidelity
from coatnet_edge.models.source import load_model
from coatnet_edge.runtime.base import run_batches
from coatnet_edge.runtime.openvino import CpuCompiled

METHOD = """Same FP32 ONNX, same 300 calibration images (built-in train split, seed 0), one process. Accuracy
control validates on the {held} train images beyond the calibration sample (top-1 agreement with FP32, the
metric the toolkit's candidates are scored with) with max_drop {drop}; every model is then measured against
FP32 (both compiled for the CPU with f32 float parts) on the 1,200-image validation split and its corrupted copy
(blur, noise, contrast, JPEG cycled, severity 3). Agreement = top-1 equal to FP32's; cosine = mean logit
cosine. "vs baseline" is the path's corrupted-split agreement minus that of the first path
(nncf-transformer, the OpenVINO target's baseline), paired on the same images. {intervals}"""


def paths_for(source: str, data: Path, corrupted: Path, max_drop: float) -> list[dict[str, Any]]:
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.WARNING)
    loaded = load_model(source)
    fp32, _ = export_fp32_onnx(loaded, Path(tempfile.mkdtemp()), log=lambda line: None)
    calib = build_calibration_set(data / "train", loaded.preprocess, size=300, seed=0)
    held = build_calibration_set(data / "train", loaded.preprocess, size=300, seed=0, min_images=32,
                                 warn_short=False, purpose="accuracy-control validation",
                                 exclude=frozenset(calib.paths))
    images = {name: preprocess_batch(scan_folder(path, verify=False).paths, loaded.preprocess)
              for name, path in {"clean": data / "val", "corrupted": corrupted}.items()}
    reference = CpuCompiled(ov.convert_model(str(fp32)), "f32")
    expected = {name: run_batches(reference, x, 100) for name, x in images.items()}
    held_top1 = run_batches(reference, held.images, 100).argmax(1)
    calibration = nncf.Dataset([calib.images[i:i + 1] for i in range(len(calib))])
    validation = nncf.Dataset([(i, held.images[i:i + 1]) for i in range(len(held))], lambda item: item[1])

    def agreement(compiled: Any, items: Any) -> float:
        """NNCF passes raw items (index, image), a subset or one at a time: each is compared with its own FP32 top-1."""
        return float(np.mean([np.argmax(np.array(compiled(x)[0])) == held_top1[i] for i, x in items]))

    transformer = {"model_type": nncf.ModelType.TRANSFORMER}
    makers = {
        "nncf-transformer (quantize, TRANSFORMER)": lambda m: nncf.quantize(m, calibration, subset_size=len(calib),
                                                                            **transformer),
        "nncf (quantize, defaults)": lambda m: nncf.quantize(m, calibration, subset_size=len(calib)),
        "accuracy control, TRANSFORMER": lambda m: nncf.quantize_with_accuracy_control(
            m, calibration, validation, validation_fn=agreement,
            max_drop=max_drop, subset_size=len(calib), **transformer),
        "accuracy control, defaults": lambda m: nncf.quantize_with_accuracy_control(
            m, calibration, validation, validation_fn=agreement,
            max_drop=max_drop, subset_size=len(calib)),
    }
    rows = []
    for name, make in makers.items():
        started = time.perf_counter()
        compiled = CpuCompiled(make(ov.convert_model(str(fp32))), "f32")
        row: dict[str, Any] = {"model": source, "path": name, "seconds": round(time.perf_counter() - started, 1)}
        for split, x in images.items():
            scores = per_image_fidelity(expected[split], run_batches(compiled, x, 100))
            row[f"{split}_agree"] = share_text(scores.agree)
            row[f"{split}_cos"] = f"{scores.cosine.mean():.5f}"
            row[f"{split}_cos_text"] = mean_text(scores.cosine)
            row[f"{split}_hits"] = scores.agree
        row["vs_baseline"] = (change_text(row["corrupted_hits"], rows[0]["corrupted_hits"]) if rows
                             else "(the baseline)")
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if not k.endswith("_hits")}), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("runs/builtin/data"))
    parser.add_argument("--models", default="builtin:student,builtin:teacher")
    parser.add_argument("--max-drop", type=float, default=0.002)
    args = parser.parse_args()
    machine, started = Machine(timed=False), time.perf_counter()
    data = write_dataset(args.data, SynthConfig(seed=0), workers=2)
    corrupted = data.parent / f"{data.name}_val_corrupted"
    if not corrupted.is_dir():
        write_corrupted(data / "val", corrupted, CorruptConfig(severity=3))
    rows = [row for source in args.models.split(",") for row in paths_for(source, data, corrupted, args.max_drop)]
    write_page("openvino_accuracy_control.md", title="OpenVINO INT8: NNCF accuracy control vs the target's candidates",
               method=METHOD.format(held=300, drop=args.max_drop, intervals=INTERVALS_NOTE), machine=machine,
               wall_s=time.perf_counter() - started,
               sections=["## Results\n\n" + table(
                   ["model", "path", "clean agree %", "clean cosine", "corrupted agree %", "corrupted cosine",
                    "corrupted agree vs baseline (points)", "seconds"],
                   [[r["model"], r["path"], r["clean_agree"], r["clean_cos_text"], r["corrupted_agree"],
                     r["corrupted_cos_text"], r["vs_baseline"], r["seconds"]] for r in rows])])


if __name__ == "__main__":
    main()
