"""One A-vs-B check for every export: the same inputs through the source and the artifact, compared
with ``metrics.compare_logits`` and its intervals; the result (and how it was measured) goes into the manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coatnet_edge.data.folders import scan_folder
from coatnet_edge.data.preprocess import PreprocessConfig, preprocess_batch
from coatnet_edge.manifest import Manifest
from coatnet_edge.metrics import compare_logits, fidelity_intervals
from coatnet_edge.runtime import load_runner

PARITY_IMAGES = 8


def parity_images(source: Manifest | None, shape: tuple[int, int, int]) -> tuple[np.ndarray, str]:
    """Real images for INT8 parity (the first files of the calibration folder, when it is still there);
    seeded N(0,1) inputs otherwise (fine for float parity, off-distribution for INT8 ranges)."""
    root = source.calibration_root if source else None
    if source and source.precision == "int8" and root and root.is_dir() and source.preprocess:
        paths = sorted(scan_folder(root, verify=False).paths)[:PARITY_IMAGES]
        pre = PreprocessConfig.from_dict(source.preprocess)
        return preprocess_batch(paths, pre), f"the first {len(paths)} images of {root}"
    images = np.random.default_rng(0).standard_normal((PARITY_IMAGES, *shape)).astype(np.float32)
    return images, f"{PARITY_IMAGES} seeded N(0,1) inputs"


def torch_parity(net: Any, onnx_path: Path, shape: tuple[int, int, int]) -> dict[str, Any]:
    """The ONNX file in ONNX Runtime vs the PyTorch module it was exported from."""
    import torch  # NOTE: lazy; the rest of this module is what a torch-free export of an ONNX needs

    images, what = parity_images(None, shape)
    with torch.no_grad():
        ref = net.eval()(torch.from_numpy(images)).numpy()
    out = load_runner(onnx_path).run(images)
    return {"method": f"ONNX Runtime CPU vs PyTorch eager FP32, {what}", **compare_logits(ref, out).to_dict(),
            **fidelity_intervals(ref, out)}


def artifact_parity(onnx_path: Path, artifact: Path, images: tuple[np.ndarray, str], precision: str, *,
                    backend: str, device: str) -> dict[str, Any]:
    """An artifact on its runtime vs its source ONNX in ONNX Runtime CPU: the one A-vs-B check of two files."""
    batch, what = images
    ref = load_runner(onnx_path).run(batch)
    out = load_runner(artifact, backend=backend, device=device,
                      precision="fp32" if precision == "int8" else precision).run(batch)
    method = ("ONNX Runtime CPU, the artifact vs its source ONNX" if backend == "onnxruntime"
              else f"{backend} {device} vs ONNX Runtime CPU on the source ONNX")
    return {"method": f"{method}, {what}", **compare_logits(ref, out).to_dict(), **fidelity_intervals(ref, out)}
