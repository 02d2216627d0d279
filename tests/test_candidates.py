"""INT8 candidates measured, the best kept (issue 16): ``--scheme auto`` quantizes with each candidate scheme,
scores them against FP32 on images held apart from calibration, writes the winner, and records the scoreboard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from coatnet_edge.calibration.modelopt_ptq import modelopt_available
from coatnet_edge.calibration.sensitivity import onnx_logits
from coatnet_edge.data.corrupt import corrupted_batch
from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.data.sampling import build_calibration_set
from coatnet_edge.metrics import compare_logits
from tests.conftest import assert_one_line_error, run_cli


def _quantize(tiny_dataset: Path, out: Path, *flags: str) -> dict:
    proc = run_cli("quantize", "--model", "builtin:student", "--calib-dir", str(tiny_dataset / "train"),
                   "--out", str(out), *flags)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "builtin_student.int8.onnx.manifest.json").read_text())


def test_auto_keeps_the_candidate_most_faithful_on_held_out_images(tiny_dataset: Path, tmp_path: Path) -> None:
    manifest = _quantize(tiny_dataset, tmp_path / "auto", "--calib-size", "64")
    record = manifest["quantization"]
    board = record["selection"]["scoreboard"]
    assert [row["scheme"] for row in board] == ["hybrid", "transformer", "transformer+smoothquant", "transformer+shift"]
    chosen = [row for row in board if row["chosen"]]
    assert len(chosen) == 1 and record["selection"]["chosen"] == chosen[0]["scheme"]
    scheme, _, extra = chosen[0]["scheme"].partition("+")
    assert (record["scheme"], record["smooth_quant"], record["channel_shift"]) == (
        scheme, extra == "smoothquant", extra == "shift")
    assert (chosen[0]["top1_agreement"], chosen[0]["cosine"]) == max((r["top1_agreement"], r["cosine"]) for r in board)
    assert "352 images held apart from calibration (176 images of" in record["selection"]["method"]
    assert "the same images corrupted" in record["selection"]["method"]

    # the file written is the winner: re-scored on the same held-out images it gives the winner's numbers
    pre = PreprocessConfig.from_dict(manifest["preprocess"])
    calib = build_calibration_set(tiny_dataset / "train", pre, size=64, seed=0)
    held_out = build_calibration_set(tiny_dataset / "train", pre, size=300, seed=0, min_images=32, warn_short=False,
                                     exclude=frozenset(calib.paths))
    assert len(held_out) == 176 and not set(held_out.paths) & set(calib.paths)
    fp32 = onnx.load(str(tmp_path / "auto" / "builtin_student.fp32.onnx"))
    int8 = onnx.load(str(tmp_path / "auto" / "builtin_student.int8.onnx"))
    images = np.concatenate([held_out.images, corrupted_batch(held_out.paths, pre)])  # clean + corrupted copies
    again = compare_logits(onnx_logits(fp32, images), onnx_logits(int8, images))
    assert round(again.top1_agreement, 4) == chosen[0]["top1_agreement"]
    assert abs(again.cosine - chosen[0]["cosine"]) < 1e-5

    # the report's note says which path made the row, and what it was chosen over
    from coatnet_edge.runtime.artifact import artifact_origin

    note = artifact_origin(tmp_path / "auto" / "builtin_student.int8.onnx")
    scores = ", ".join(f"{r['scheme']} {100 * r['top1_agreement']:.1f} %" for r in board)
    smooth = {"smoothquant": " with SmoothQuant", "shift": " with per-channel centring"}.get(extra, "")
    assert note == (f"made by NNCF PTQ, {scheme} scheme{smooth}, tensorrt preset (kept of {scores} agreement "
                    "on held-out images)")


def test_one_candidate_or_an_explicit_scheme_measures_nothing(tiny_dataset: Path, tmp_path: Path) -> None:
    record = _quantize(tiny_dataset, tmp_path / "one", "--calib-size", "64", "--candidate", "transformer+shift")
    assert record["quantization"]["scheme"] == "transformer" and "selection" not in record["quantization"]
    assert record["quantization"]["channel_shift"] is True and record["quantization"]["centred_activations"] > 0
    from coatnet_edge.runtime.artifact import artifact_origin

    assert artifact_origin(tmp_path / "one" / "builtin_student.int8.onnx") == (
        "made by NNCF PTQ, transformer scheme with per-channel centring, tensorrt preset")
    record = _quantize(tiny_dataset, tmp_path / "hybrid", "--calib-size", "64", "--scheme", "hybrid")
    assert record["quantization"]["scheme"] == "hybrid" and "selection" not in record["quantization"]


def test_without_held_out_images_the_first_candidate_is_kept_and_the_record_says_why(tiny_dataset: Path,
                                                                                     tmp_path: Path) -> None:
    record = _quantize(tiny_dataset, tmp_path / "all", "--calib-size", "240")["quantization"]
    assert record["scheme"] == "hybrid" and record["selection"]["scoreboard"] == []
    assert record["selection"]["method"].startswith("not measured: 0 held-out images")


def test_unknown_candidate_is_one_line(tiny_dataset: Path, tmp_path: Path) -> None:
    proc = run_cli("quantize", "--model", "builtin:student", "--calib-dir", str(tiny_dataset / "train"),
                   "--candidate", "mixed", "--out", str(tmp_path / "x"))
    assert_one_line_error(proc, "--candidate", "mixed")
    assert not (tmp_path / "x").exists()


needs_modelopt = pytest.mark.skipif(not modelopt_available(), reason="nvidia-modelopt is not installed "
                                    "(optional: pip install -c constraints.txt -e '.[modelopt]')")


@pytest.mark.skipif(modelopt_available(), reason="nvidia-modelopt is installed here: nothing is missing")
def test_modelopt_candidate_without_the_package_is_one_line_and_writes_nothing(tiny_dataset: Path,
                                                                              tmp_path: Path) -> None:
    proc = run_cli("quantize", "--model", "builtin:student", "--calib-dir", str(tiny_dataset / "train"),
                   "--candidate", "hybrid", "--candidate", "modelopt", "--out", str(tmp_path / "x"))
    assert_one_line_error(proc, "nvidia-modelopt", ".[modelopt]")
    assert not (tmp_path / "x").exists()


@needs_modelopt
def test_modelopt_candidate_is_scored_beside_nncf_and_its_graph_is_tensorrt_clean(tiny_dataset: Path,
                                                                                 tmp_path: Path) -> None:
    from coatnet_edge.export.qdq_rules import check_qdq
    from coatnet_edge.runtime.artifact import artifact_origin

    board = _quantize(tiny_dataset, tmp_path / "both", "--calib-size", "64", "--candidate", "hybrid",
                      "--candidate", "modelopt")["quantization"]["selection"]["scoreboard"]
    assert [row["scheme"] for row in board] == ["hybrid", "modelopt"]
    assert all(0.5 < row["top1_agreement"] <= 1 and row["cosine"] > 0.9 for row in board)

    manifest = _quantize(tiny_dataset, tmp_path / "mo", "--calib-size", "64", "--candidate", "modelopt")
    record = manifest["quantization"]
    assert record["engine"] == "modelopt-onnx" and record["scheme"] == "modelopt"
    assert record["calibration_method"] == "entropy" and record["high_precision_dtype"] == "fp32"
    path = tmp_path / "mo" / "builtin_student.int8.onnx"
    report = check_qdq(path)
    assert report.ok, [str(f) for f in report.errors]  # signed, symmetric, per-channel weights: TensorRT takes it
    graph = onnx.load(str(path))
    assert all(n.op_type != "Cast" for n in graph.graph.node)  # float parts stayed FP32, as for every candidate
    assert report.quantized_layers > 0 and manifest["check_vs_fp32"]["cosine"] > 0.99
    assert artifact_origin(path) == "made by Model Optimizer's ONNX PTQ (entropy calibration)"
