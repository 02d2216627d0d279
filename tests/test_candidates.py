"""INT8 candidates measured, the plain path kept unless beaten (issues 16, 31): ``--scheme auto`` quantizes with each
candidate, scores them per image against FP32 on images held apart from calibration, keeps NNCF's plain PTQ (the
baseline) unless a candidate is more faithful beyond its paired interval, and records the scoreboard."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from coatnet_edge.calibration.modelopt_ptq import modelopt_available
from coatnet_edge.calibration.options import QuantizeOptions
from coatnet_edge.calibration.selection import MIN_SCORE_IMAGES, score_images
from coatnet_edge.calibration.sensitivity import onnx_logits
from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.data.sampling import split_calibration_folder
from coatnet_edge.metrics import per_image_fidelity
from tests.conftest import assert_one_line_error, run_cli


def _quantize(tiny_dataset: Path, out: Path, *flags: str) -> dict:
    proc = run_cli("quantize", "--model", "builtin:student", "--calib-dir", str(tiny_dataset / "train"),
                   "--out", str(out), *flags)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "builtin_student.int8.onnx.manifest.json").read_text())


def _verdict_from_intervals(row: dict) -> str:
    """What the rule says from the row's own intervals: agreement worse beyond its interval is worse; else the KL
    difference decides, and an interval that holds zero is a tie."""
    if row["agreement_vs_baseline"][2] < 0:
        return "worse"
    _, low, high = row["kl_vs_baseline"]
    return "better" if high < 0 else "worse" if low > 0 else "tie"


def test_auto_keeps_the_baseline_unless_a_candidate_is_more_faithful_beyond_its_interval(tiny_dataset: Path,
                                                                                         tmp_path: Path) -> None:
    manifest = _quantize(tiny_dataset, tmp_path / "auto", "--calib-size", "64")
    record = manifest["quantization"]
    selection = record["selection"]
    board = selection["scoreboard"]
    assert [row["scheme"] for row in board] == list(QuantizeOptions().candidates) == [
        "cnn", "hybrid", "transformer", "transformer+smoothquant", "transformer+shift"]
    assert (selection["engine"], selection["baseline"], selection["measure"]) == ("tensorrt", "cnn", "kl")
    assert board[0]["verdict"] == "baseline" and all(row["candidate"] == row["scheme"] for row in board)
    for row in board[1:]:
        assert row["verdict"] == _verdict_from_intervals(row), row
    assert not any("speed_vs_baseline" in row or "p50_ms_batch1" in row for row in board)  # TensorRT: not timed
    chosen = [row for row in board if row["chosen"]]
    assert len(chosen) == 1 and selection["chosen"] == chosen[0]["scheme"]
    better = [row for row in board if row["verdict"] == "better"]
    assert chosen[0] is (min(better, key=lambda row: row["kl"]) if better else board[0]), board
    scheme, _, extra = chosen[0]["scheme"].partition("+")
    assert (record["scheme"], record["smooth_quant"], record["channel_shift"]) == (
        scheme, extra == "smoothquant", extra == "shift")
    assert "352 images (176 images of" in selection["method"]
    assert "the same images corrupted" in selection["method"] and "severities 2, 3, 4" in selection["method"]
    assert selection["score_set"]["images"] == 176 and selection["score_set"]["root"] == str(tiny_dataset / "train")

    # the file written is the kept graph: re-scored on the same held-out split it gives the kept row's numbers
    pre = PreprocessConfig.from_dict(manifest["preprocess"])
    calib, held_out = split_calibration_folder(tiny_dataset / "train", pre, calib_size=64,
                                               score_size=QuantizeOptions().score_size, seed=0,
                                               min_score_images=MIN_SCORE_IMAGES)
    assert calib.sha256 == manifest["calibration"]["sha256"] and held_out.sha256 == manifest["held_out"]["sha256"]
    assert len(held_out) == 176 and not set(held_out.paths) & set(calib.paths)
    fp32 = onnx.load(str(tmp_path / "auto" / "builtin_student.fp32.onnx"))
    int8 = onnx.load(str(tmp_path / "auto" / "builtin_student.int8.onnx"))
    images, _, _ = score_images(held_out)  # clean + corrupted copies
    again = per_image_fidelity(onnx_logits(fp32, images), onnx_logits(int8, images))
    assert round(float(again.agree.mean()), 4) == chosen[0]["top1_agreement"]
    assert float(again.kl.mean()) == pytest.approx(chosen[0]["kl"], abs=2e-6)
    assert float(again.cosine.mean()) == pytest.approx(chosen[0]["cosine"], abs=2e-6)

    # the report's note says which path made the row, the baseline, and each other candidate's verdict
    from coatnet_edge.runtime.artifact import artifact_origin

    note = artifact_origin(tmp_path / "auto" / "builtin_student.int8.onnx")
    head = ("baseline cnn kept" if chosen[0] is board[0] else f"{chosen[0]['scheme']} kept over the baseline cnn")
    others = ", ".join(f"{r['scheme']} {r['verdict']}" for r in board[1:])
    smooth = {"smoothquant": " with SmoothQuant", "shift": " with per-channel centring"}.get(extra, "")
    assert note == (f"made by NNCF PTQ, {scheme} scheme{smooth}, tensorrt preset ({head}; vs baseline on held-out "
                    f"images: {others})")


def test_one_candidate_or_an_explicit_scheme_measures_nothing(tiny_dataset: Path, tmp_path: Path) -> None:
    record = _quantize(tiny_dataset, tmp_path / "one", "--calib-size", "64", "--candidate", "transformer+shift")
    assert record["quantization"]["scheme"] == "transformer" and "selection" not in record["quantization"]
    assert record["quantization"]["channel_shift"] is True and record["quantization"]["centred_activations"] > 0
    from coatnet_edge.runtime.artifact import artifact_origin

    assert artifact_origin(tmp_path / "one" / "builtin_student.int8.onnx") == (
        "made by NNCF PTQ, transformer scheme with per-channel centring, tensorrt preset")
    record = _quantize(tiny_dataset, tmp_path / "hybrid", "--calib-size", "64", "--scheme", "hybrid")
    assert record["quantization"]["scheme"] == "hybrid" and "selection" not in record["quantization"]


def test_without_held_out_images_the_candidates_are_scored_on_the_calibration_images_and_the_record_says_so(
        tiny_dataset: Path, tmp_path: Path) -> None:
    """Every train image calibrates: nothing is held out, so the candidates are scored in-sample (a broken baseline is
    still caught, e.g. NNCF TRANSFORMER on a random-weight timm coatnet_0_rw_224), and the record says so."""
    manifest = _quantize(tiny_dataset, tmp_path / "all", "--calib-size", "240", "--candidate", "cnn",
                         "--candidate", "transformer")
    selection = manifest["quantization"]["selection"]
    assert selection["baseline"] == "cnn" and [r["candidate"] for r in selection["scoreboard"]] == ["cnn",
                                                                                                    "transformer"]
    assert selection["score_set"]["in_sample"] is True and selection["score_set"]["images"] == 240
    assert "the 240 calibration images themselves (in-sample)" in selection["method"]
    assert manifest["held_out"] is None
    assert manifest["quantization"]["scheme"] == selection["chosen"]


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
    assert [row["scheme"] for row in board] == ["hybrid", "modelopt"] and board[0]["verdict"] == "baseline"
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
