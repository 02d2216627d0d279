"""The built-in teacher and student: trained by ``benchmarks/train_builtin.py`` on the built-in dataset
and shipped as package data, so the defaults run on real trained weights with no download.

Anywhere a checkpoint path is accepted, ``builtin:teacher`` and ``builtin:student`` name them.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from coatnet_edge.errors import CoatnetEdgeError

PREFIX = "builtin:"
ROLES = ("teacher", "student")


def is_builtin(source: str | Path) -> bool:
    return str(source).startswith(PREFIX)


def builtin_path(source: str | Path) -> Path:
    """``builtin:teacher`` -> the shipped .safetensors file."""
    role = str(source).removeprefix(PREFIX)
    if role not in ROLES:
        raise CoatnetEdgeError(f"unknown built-in model '{source}'",
                               fix=f"use one of: {', '.join(PREFIX + r for r in ROLES)}")
    path = Path(str(resources.files("coatnet_edge") / "assets" / f"builtin_{role}.safetensors"))
    if not path.is_file():
        raise CoatnetEdgeError("built-in weights are missing from this installation", path=path,
                               fix="reinstall coatnet-edge, or rebuild them: python benchmarks/train_builtin.py "
                                   "--install")
    return path


def resolve_source(source: str | Path) -> Path:
    """The file behind a checkpoint argument: ``builtin:<role>`` or a plain path."""
    return builtin_path(source) if is_builtin(source) else Path(source)


def builtin_manifest(role: str) -> dict[str, Any]:
    path = builtin_path(PREFIX + role)
    return json.loads(path.with_name(f"builtin_{role}.manifest.json").read_text())
