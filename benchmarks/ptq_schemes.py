"""Which INT8 treatment suits a hybrid CNN+transformer? Measure it on the built-in models.

    python benchmarks/ptq_schemes.py [--data runs/builtin/data] [--calib-size 300]

For the built-in teacher and student: export FP32 ONNX, calibrate on the train split, quantize
with NNCF's ONNX backend under each scheme (hybrid / uniform CNN / uniform transformer) with and
without SmoothQuant, and evaluate FP32 and INT8 on the whole validation split in ONNX Runtime and
OpenVINO (the Q/DQ ONNX read directly). Prints one JSON line per configuration.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from coatnet_edge.calibration.dataset import build_calibration_set
from coatnet_edge.calibration.ptq import SCHEMES, PtqSettings, quantize_onnx
from coatnet_edge.data.folders import scan_folder
from coatnet_edge.data.preprocess import preprocess_batch
from coatnet_edge.data.synth import SynthConfig, write_dataset
from coatnet_edge.environment import cpu_info
from coatnet_edge.export.onnx import export_onnx
from coatnet_edge.metrics import compare_logits
from coatnet_edge.models.checkpoint import load_checkpoint
from coatnet_edge.runtime import load_runner


def _logits(path: Path, backend: str, images: np.ndarray, precision: str) -> np.ndarray:
    runner = load_runner(path, backend=backend, precision=precision) if backend == "openvino" else \
        load_runner(path, backend=backend)
    return np.concatenate([runner.run(images[i:i + 100]) for i in range(0, len(images), 100)])


def main() -> None:
    import onnx

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("runs/builtin/data"))
    parser.add_argument("--calib-size", type=int, default=300)
    parser.add_argument("--models", default="builtin:student,builtin:teacher")
    parser.add_argument("--smooth-quant", default="off,on")
    args = parser.parse_args()
    data = write_dataset(args.data, SynthConfig(seed=0), workers=2)
    print(json.dumps({"cpu": cpu_info()}))
    work = Path(tempfile.mkdtemp())
    for source in args.models.split(","):
        model, info = load_checkpoint(source)
        val = scan_folder(data / "val", labeled=True, verify=False)
        images, labels = preprocess_batch(val.paths, info.preprocess), val.labels
        fp32 = export_onnx(model, work / "fp32.onnx", image_size=info.preprocess.image_size)
        calib = build_calibration_set(data / "train", info.preprocess, size=args.calib_size, seed=0)
        ref = {b: _logits(fp32, b, images, "fp32") for b in ("onnxruntime", "openvino")}
        print(json.dumps({"model": source, "config": "fp32", **{f"{b}_top1": float(np.mean(r.argmax(1) == labels))
                                                                  for b, r in ref.items()}}))
        for scheme in SCHEMES:
            for sq in args.smooth_quant.split(","):
                settings = PtqSettings(preset="tensorrt", scheme=scheme, smooth_quant=sq == "on")
                started = time.perf_counter()
                result = quantize_onnx(fp32, calib, settings)
                seconds = time.perf_counter() - started
                path = work / f"int8_{scheme}_{sq}.onnx"
                onnx.save(result.model, str(path))
                row = {"model": source, "config": f"int8 {scheme} smoothquant={sq}", "calib_s": round(seconds, 1),
                       "float_layers": len(result.float_layers), "ignored_nodes": len(result.ignored)}
                for backend in ("onnxruntime", "openvino"):
                    out = _logits(path, backend, images, "fp32")
                    agreement = compare_logits(ref[backend], out)
                    fp_top1 = float(np.mean(ref[backend].argmax(1) == labels))
                    top1 = float(np.mean(out.argmax(1) == labels))
                    row.update({f"{backend}_top1": top1, f"{backend}_drop_pts": round(100 * (fp_top1 - top1), 2),
                                f"{backend}_agreement": agreement.top1_agreement,
                                f"{backend}_cosine": round(agreement.cosine, 5)})
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
