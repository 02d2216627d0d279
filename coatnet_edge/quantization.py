"""``coatnet-edge quantize`` / ``coatnet_edge.quantize``: checkpoint + calibration folder -> INT8 Q/DQ ONNX.

Orchestrates the stages (FP32 export, calibration set, NNCF PTQ on the ONNX graph) and writes the
artifacts atomically with a manifest; the stages themselves live in ``export/`` and ``calibration/``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coatnet_edge.calibration.dataset import DEFAULT_SIZE, build_calibration_set
from coatnet_edge.calibration.ptq import PtqSettings, quantize_onnx
from coatnet_edge.manifest import atomic_path, ensure_output_dir, sha256_file, write_manifest
from coatnet_edge.metrics import compare_logits

CHECK_IMAGES = 64


@dataclass
class QuantizeResult:
    fp32_onnx: Path
    int8_onnx: Path
    manifest: dict[str, Any] = field(default_factory=dict)


def quantize(model: str | Path, *, calib_dir: str | Path, out: str | Path, preset: str = "tensorrt",
             scheme: str = "hybrid", calib_size: int = DEFAULT_SIZE, seed: int = 0, smooth_quant: bool = False,
             ignored_patterns: tuple[str, ...] = ()) -> QuantizeResult:
    """PTQ a checkpoint to an INT8 Q/DQ ONNX file (``OUT/<name>.int8.onnx``) plus its FP32 ONNX."""
    import onnx

    from coatnet_edge.export.onnx import export_onnx
    from coatnet_edge.models.builtin import resolve_source
    from coatnet_edge.models.checkpoint import load_checkpoint
    from coatnet_edge.runtime import load_runner

    settings = PtqSettings(preset=preset, scheme=scheme, smooth_quant=smooth_quant,
                           ignored_patterns=tuple(ignored_patterns))
    net, info = load_checkpoint(model)
    source = resolve_source(model)
    calib = build_calibration_set(calib_dir, info.preprocess, size=calib_size, seed=seed)
    out = ensure_output_dir(out)  # only once the inputs are known good: bad input leaves nothing behind
    name = source.stem
    fp32_path = export_onnx(net, out / f"{name}.fp32.onnx", image_size=info.preprocess.image_size)
    started = time.perf_counter()
    result = quantize_onnx(fp32_path, calib, settings)
    seconds = time.perf_counter() - started
    int8_path = out / f"{name}.int8.onnx"
    with atomic_path(int8_path) as tmp:
        onnx.save(result.model, str(tmp))
        onnx.checker.check_model(str(tmp))

    check = calib.images[:CHECK_IMAGES]
    ref = load_runner(fp32_path).run(check)
    agreement = compare_logits(ref, load_runner(int8_path).run(check))
    record = {
        "kind": "onnx", "precision": "int8", "quantization": {"method": "ptq", "engine": "nncf-onnx",
                                                             **settings.to_dict()},
        "source": {"checkpoint": str(source), "sha256": sha256_file(source)}, "variant": net.cfg.name,
        "preprocess": info.preprocess.to_dict(), "class_names": info.class_names,
        "input_shape": ["batch", 3, info.preprocess.image_size, info.preprocess.image_size],
        "calibration": {**calib.describe(), "seconds": round(seconds, 2)},
        "float_layers": result.float_layers, "ignored_nodes": len(result.ignored),
        "check_vs_fp32": {"method": f"ONNX Runtime CPU, first {len(check)} calibration images",
                          **agreement.to_dict()},
    }
    write_manifest(fp32_path, {"kind": "onnx", "precision": "fp32", "source": record["source"],
                               "preprocess": record["preprocess"], "class_names": info.class_names})
    write_manifest(int8_path, record)
    return QuantizeResult(fp32_path, int8_path, record)
