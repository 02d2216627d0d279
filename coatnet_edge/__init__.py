"""coatnet-edge: take a PyTorch CoAtNet to edge devices, with measured accuracy and latency.

The public API mirrors the CLI verbs. Attributes are imported on first use, so ``import
coatnet_edge`` stays light: no torch, ONNX Runtime, OpenVINO, NNCF or TensorRT until needed.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    # verb / object          -> module that defines it
    "run": "coatnet_edge.pipeline.run",
    "train": "coatnet_edge.training.verbs",
    "distill": "coatnet_edge.training.verbs",
    "TrainConfig": "coatnet_edge.training.verbs",
    "quantize": "coatnet_edge.calibration.quantize",
    "export_model": "coatnet_edge.pipeline.export",  # the `export` verb (`coatnet_edge.export`: the adapters)
    "evaluate": "coatnet_edge.measure.evaluate",
    "benchmark": "coatnet_edge.measure.benchmark",
    "compare": "coatnet_edge.measure.report",
    "report": "coatnet_edge.measure.report",
    "predict": "coatnet_edge.measure.predict",
    "create_model": "coatnet_edge.models.registry",
    "list_variants": "coatnet_edge.models.registry",
    "get_variant": "coatnet_edge.models.registry",
    "CoAtNetConfig": "coatnet_edge.models.config",
    "profile_model": "coatnet_edge.models.profile",
    "save_checkpoint": "coatnet_edge.models.checkpoint",
    "load_checkpoint": "coatnet_edge.models.checkpoint",
    "load_model": "coatnet_edge.models.source",
    "SourceOptions": "coatnet_edge.models.source_options",
    "PreprocessConfig": "coatnet_edge.data.preprocess",
    "preprocess_file": "coatnet_edge.data.preprocess",
    "scan_folder": "coatnet_edge.data.folders",
    "SynthConfig": "coatnet_edge.data.synth",
    "write_dataset": "coatnet_edge.data.synth",
    "CorruptConfig": "coatnet_edge.data.corrupt",
    "write_corrupted": "coatnet_edge.data.corrupt",
    "export_onnx": "coatnet_edge.export.onnx",
    "load_runner": "coatnet_edge.runtime",
    "compare_logits": "coatnet_edge.metrics",
    "CoatnetEdgeError": "coatnet_edge.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'coatnet_edge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
