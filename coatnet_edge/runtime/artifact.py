"""What an artifact is, read from the artifact itself: its preprocessing, class names and size on disk.

Checkpoints answer from their header (the runner loads the weights once); exported files from the
manifest the export wrote next to them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.manifest import Manifest
from coatnet_edge.models.builtin import resolve_source
from coatnet_edge.runtime import backend_for, load_runner


def artifact_profile(path: str | Path, weights: str | Path | None = None,
                     source_options: Any = None) -> tuple[PreprocessConfig, list[str]]:
    """Preprocessing and class names of a model source or an exported artifact (from its manifest).

    ``source_options`` (a ``SourceOptions``) go with a model source, as ``load_model`` takes them."""
    if backend_for(path) is None:
        load_runner(path)  # raises the one-line "unknown artifact type" error
    if backend_for(path) == "pytorch":
        # NOTE: imported here so an exported artifact's profile never imports torch (the edge predictor)
        from coatnet_edge.models.checkpoint import read_checkpoint_info
        from coatnet_edge.models.source import load_model

        if weights is not None or source_options is not None or resolve_source(path).suffix != ".safetensors":
            loaded = load_model(path, source_options, weights=weights)  # timm sources: their facts need the weights
            return loaded.preprocess, loaded.class_names
        info = read_checkpoint_info(path)  # header only: the runner loads the weights once
        return info.preprocess, list(info.class_names)
    manifest = Manifest.read(path)
    if manifest is None or manifest.preprocess is None:
        raise CoatnetEdgeError("no coatnet-edge manifest next to this artifact (preprocessing unknown)", path=path,
                               fix="export it with `coatnet-edge export`, which writes <artifact>.manifest.json")
    return PreprocessConfig.from_dict(manifest.preprocess, source=path), manifest.class_names


def artifact_role(item: str | Path) -> str | None:
    """What the artifact is for, when its manifest says (e.g. the graph TensorRT builds, run in ONNX Runtime)."""
    manifest = Manifest.read(item) if backend_for(item) not in (None, "pytorch") else None
    return manifest.record.get("role") if manifest else None


def artifact_origin(item: str | Path) -> str | None:
    """Which INT8 path made the artifact, from its manifest's quantization record (and, where the scheme was
    measured against other candidates, their scores): the report says it beside the row."""
    manifest = Manifest.read(item) if backend_for(item) not in (None, "pytorch") else None
    quantization = manifest.record.get("quantization") if manifest else None
    if not quantization:
        return None
    method = "QAT" if quantization.get("method") == "qat" else "PTQ"
    smooth = " with SmoothQuant" if quantization.get("smooth_quant") else ""
    smooth += " with per-channel centring" if quantization.get("channel_shift") else ""
    text = f"made by NNCF {method}, {quantization.get('scheme')} scheme{smooth}, {quantization.get('preset')} preset"
    if quantization.get("engine") == "modelopt-onnx":
        text = f"made by Model Optimizer's ONNX PTQ ({quantization.get('calibration_method')} calibration)"
    selection = quantization.get("selection") or {}
    if selection.get("scoreboard"):
        text += f" ({_verdicts(selection)})"
    chosen = manifest.record.get("openvino_int8") or manifest.record.get("onnxruntime_int8")
    if chosen and chosen.get("chosen") != "qdq":
        parts = f"; float parts {chosen['float_parts']}" if "float_parts" in chosen else ""
        return f"made by {chosen['path']}{_kept_of(chosen)}{parts}"
    if manifest.kind not in (None, "onnx"):
        text += f", {manifest.kind} {'took' if manifest.kind == 'onnxruntime' else 'built from'} that Q/DQ graph" \
                f"{_kept_of(chosen) if chosen else ''}"
    return text


def _kept_of(selection: dict) -> str:
    """' (kept over the baseline nncf-transformer-unfused: more faithful ...; nncf tie, qdq worse ...)', or why
    nothing was measured."""
    if not selection.get("scoreboard"):
        return f" ({selection.get('method', 'not measured')})"
    return f" ({_verdicts(selection)})"


def _verdicts(selection: dict) -> str:
    """One line of a selection: the baseline, what was kept and why, and each other candidate's verdict."""
    board = selection["scoreboard"]
    others = ", ".join(f"{row.get('candidate', row.get('scheme'))} {row['verdict']}" for row in board
                       if row["verdict"] != "baseline")
    kept = selection.get("chosen")
    head = (f"baseline {kept} kept" if kept == selection.get("baseline")
            else f"{kept} kept over the baseline {selection.get('baseline')}")
    scored_on = "the calibration images (in-sample)" if (selection.get("score_set") or {}).get("in_sample") \
        else "held-out images"
    return f"{head}; vs baseline on {scored_on}: {others}" if others else head


def artifact_size(item: str | Path) -> int | None:
    """Bytes on disk of the artifact and its weight file (.bin next to an OpenVINO .xml)."""
    path = resolve_source(item) if str(item).startswith("builtin:") else Path(item)
    if not path.is_file():
        return None
    extra = path.with_suffix(".bin")
    return path.stat().st_size + (extra.stat().st_size if path.suffix == ".xml" and extra.is_file() else 0)
