"""Provenance: ``<artifact>.manifest.json`` next to every artifact, written and read here only.

Writers pass the record of what they did (source hash, options, calibration set, parity); this
module adds the schema, the artifact's hash and size and the library versions. Readers get a
``Manifest``: the fields other layers act on, typed, plus the whole record for display.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coatnet_edge.atomic import write_json_atomic
from coatnet_edge.environment import library_versions
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.hashing import sha256_file

MANIFEST_SCHEMA = "coatnet-edge/manifest/v1"


@dataclass(frozen=True)
class Manifest:
    kind: str | None = None  # onnx, openvino, tensorrt, torch-tensorrt
    precision: str = "fp32"
    preprocess: dict[str, Any] | None = None  # data.preprocess.PreprocessConfig.to_dict()
    class_names: list[str] = field(default_factory=list)
    input_shape: list[Any] | None = None  # ["batch" | N, C, H, W]
    calibration_root: Path | None = None
    record: dict[str, Any] = field(default_factory=dict)  # the whole JSON document

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Manifest:
        root = (record.get("calibration") or {}).get("root")
        return cls(record.get("kind"), str(record.get("precision", "fp32")), record.get("preprocess"),
                   list(record.get("class_names") or []), record.get("input_shape"),
                   Path(root) if root else None, record)

    @classmethod
    def read(cls, artifact: str | Path) -> Manifest | None:
        record = read_manifest(artifact)
        return None if record is None else cls.from_record(record)

    @property
    def image_size(self) -> int:
        if not self.input_shape:
            raise CoatnetEdgeError("the manifest records no input shape", fix="re-export the artifact")
        return int(self.input_shape[-1])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one input image (1 channel for grayscale models)."""
        if not self.input_shape:
            raise CoatnetEdgeError("the manifest records no input shape", fix="re-export the artifact")
        return tuple(int(v) for v in self.input_shape[-3:])  # type: ignore[return-value]


def manifest_path_for(artifact: str | Path) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".manifest.json")


def write_manifest(artifact: str | Path, record: dict[str, Any]) -> Path:
    """Write ``<artifact>.manifest.json`` next to a finished artifact, with its hash and sizes."""
    artifact = Path(artifact)
    payload = {
        "schema": MANIFEST_SCHEMA,
        "artifact": artifact.name,
        "sha256": sha256_file(artifact) if artifact.is_file() else None,
        "size_bytes": artifact.stat().st_size if artifact.is_file() else None,
        "versions": library_versions(),
        **record,
    }
    return write_json_atomic(manifest_path_for(artifact), payload)


def read_manifest(artifact: str | Path) -> dict[str, Any] | None:
    path = manifest_path_for(artifact)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CoatnetEdgeError(f"manifest is not valid JSON ({err.msg})", path=path,
                               fix="re-export the artifact to rewrite its manifest") from None

