"""Where a number was measured: CPU model, ISA flags, threads, library versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any

# ISA features that decide which INT8/FP16/BF16 kernels a CPU runtime can use.
_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
              "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "sve")
_LIBRARIES = ("coatnet-edge", "torch", "numpy", "pillow", "onnx", "onnxruntime", "openvino", "nncf",
              "safetensors", "timm", "tensorrt")


def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {
        "model": model,
        "arch": platform.machine(),
        "isa": sorted(f for f in _ISA_FLAGS if f in flags),
        "logical_cores": os.cpu_count(),
    }


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def describe_environment() -> dict[str, Any]:
    return {"cpu": cpu_info(), "os": platform.platform(), "versions": library_versions()}
