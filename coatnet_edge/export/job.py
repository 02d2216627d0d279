"""What every export adapter takes and gives back, so the export verb drives them all the same way.

An adapter is ``export_artifact(job) -> ExportOutput``: it turns one ONNX graph (FP32, or the Q/DQ
INT8 graph ``quantize`` wrote) into one artifact for its runtime and measures parity where it can.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coatnet_edge.manifest import Manifest


@dataclass(frozen=True)
class ExportJob:
    onnx_path: Path  # the graph the artifact is built from
    record: dict[str, Any]  # its manifest record (carried into the artifact's manifest)
    out: Path
    precision: str
    device: str = "CPU"
    batch: int = 1
    dynamic_batch: bool = True
    max_batch: int = 32
    workspace_mib: int = 2048
    net: Any = None  # the torch module, for adapters that compile PyTorch (torch-tensorrt)
    calibration: Callable[[], np.ndarray] | None = None  # preprocessed calibration images, on demand
    prepared: Any = None  # OpenVINO INT8: the model chosen by measurement (calibration.openvino_int8.OpenVinoInt8)

    @property
    def source(self) -> Manifest:
        return Manifest.from_record(self.record)

    @property
    def image_size(self) -> int:
        return self.source.image_size

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.source.image_shape

    @property
    def stem(self) -> str:
        return model_stem(self.onnx_path)

    def artifact_path(self, suffix: str) -> Path:
        return self.out / f"{self.stem}.{file_tag(self.precision)}{suffix}"


PRECISION_TAGS = ("fp32", "fp16", "int8", "int8-fp16")  # as they stand in file names


def file_tag(precision: str) -> str:
    """How a precision stands in a file name (``int8+fp16`` -> ``int8-fp16``)."""
    return precision.replace("+", "-")


def model_stem(path: Path) -> str:
    """``student`` of ``student.int8-fp16.onnx``."""
    name = path.name.removesuffix(path.suffix)
    return next((name.removesuffix(f".{tag}") for tag in PRECISION_TAGS if name.endswith(f".{tag}")), name)


@dataclass
class ExportOutput:
    artifact: Path
    extra_files: list[Path] = field(default_factory=list)
    parity: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # adapter-specific manifest keys (engine batch range)


_NOT_CARRIED = ("schema", "artifact", "sha256", "size_bytes", "versions", "parity", "role", "fp32_onnx")


def carried(record: dict[str, Any]) -> dict[str, Any]:
    """What an artifact inherits from the manifest of the graph it was made from (source, preprocessing,
    classes, input shape, calibration, quantization); its own hash, size and parity are its own."""
    return {k: v for k, v in record.items() if k not in _NOT_CARRIED}
