"""Per-target INT8: the OpenVINO target (NNCF on the OpenVINO model in both graph forms, the Q/DQ graph converted) and
the ONNX Runtime target (ONNX Runtime's plain quantize_static, its tuned u8 graph, the Q/DQ graph), each scored in its
runtime on held-out images by the one engine (``selection.py``): the first candidate, the plain path, is kept unless
another is more faithful beyond its paired interval (or tied and faster beyond the margin); float parts f32 or bf16
by measurement; all recorded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from coatnet_edge.calibration.onnxruntime_int8 import ONNXRUNTIME_CANDIDATES, onnxruntime_int8_for
from coatnet_edge.calibration.openvino_int8 import (
    BF16_COSINE_SLACK,
    FASTER_BY,
    OPENVINO_CANDIDATES,
    openvino_int8_for,
)
from coatnet_edge.calibration.selection import MIN_SCORE_IMAGES, SPEED_MARGIN, score_images
from coatnet_edge.calibration.sensitivity import onnx_logits
from coatnet_edge.calibration.target_inputs import SelectionUnavailable, selection_inputs
from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.data.sampling import build_calibration_set, split_calibration_folder
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.metrics import compare_logits, per_image_fidelity
from coatnet_edge.runtime import load_runner
from coatnet_edge.runtime.base import run_batches
from tests.conftest import run_cli


def _manifest(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".manifest.json").read_text())


@pytest.fixture(scope="module")
def run_dir(default_run: tuple) -> Path:
    return default_run[0]


def _check_rule(record: dict) -> dict:
    """The record follows the engine's rule from its own rows; returns the kept row."""
    board = record["scoreboard"]
    assert board[0]["candidate"] == record["baseline"] and board[0]["verdict"] == "baseline"
    for row in board[1:]:
        _, low, high = row["kl_vs_baseline"]
        said = ("worse" if row["agreement_vs_baseline"][2] < 0 else
                "better" if high < 0 else "worse" if low > 0 else "tie")
        assert row["verdict"] == said, row
    kept = [row for row in board if row["chosen"]]
    assert len(kept) == 1 and record["chosen"] == kept[0]["candidate"]
    better = [row for row in board if row["verdict"] == "better"]
    fast = [row for row in board if row["verdict"] == "tie" and row["speed_vs_baseline"][2] < SPEED_MARGIN]
    expected = (min(better, key=lambda row: row["kl"]) if better else
                min(fast, key=lambda row: row["speed_vs_baseline"][0]) if fast else board[0])
    assert kept[0] is expected, board
    return kept[0]


def _verdict_note(record: dict) -> str:
    others = ", ".join(f"{row['candidate']} {row['verdict']}" for row in record["scoreboard"][1:])
    head = (f"baseline {record['chosen']} kept" if record["chosen"] == record["baseline"]
            else f"{record['chosen']} kept over the baseline {record['baseline']}")
    return f"{head}; vs baseline on held-out images: {others}"


def test_the_run_keeps_the_openvino_candidate_the_rule_says_and_its_scoreboard_is_true(run_dir: Path) -> None:
    """The kept IR, re-run here on the same score set, scores what the scoreboard says; the kept candidate is the
    one the rule picks from the rows' intervals; the bf16 decision follows its stated rule; the compare table
    names the path and the verdicts."""
    xml = run_dir / "openvino-int8" / "student.int8.xml"
    record = _manifest(xml)["openvino_int8"]
    board = record["scoreboard"]
    assert [row["candidate"] for row in board] == list(OPENVINO_CANDIDATES)
    assert (record["engine"], record["baseline"], record["measure"]) == ("openvino", OPENVINO_CANDIDATES[0], "kl")
    kept = _check_rule(record)
    assert all(row["p50_ms_batch1"] > 0 for row in board)  # timed, in interleaved rounds
    assert all(len(row["speed_vs_baseline"]) == 3 for row in board[1:])

    qdq = run_dir / "quantize" / "student.int8.onnx"
    score_set = selection_inputs(qdq, _manifest(qdq)).score_set
    assert score_set is not None and record["score_set"]["sha256"] == score_set.record["sha256"]
    runner = load_runner(xml, precision="fp32")  # float parts pinned to f32, as the candidates were scored
    measured = per_image_fidelity(score_set.reference, run_batches(runner, score_set.images))
    assert abs(measured.agree.mean() - kept["top1_agreement"]) <= 2 / len(score_set), kept
    assert abs(measured.cosine.mean() - kept["cosine"]) < 1e-4

    bf16 = record["bf16_float_parts"]
    if bf16 is None:
        assert record["float_parts"] == "f32"
    else:
        keep_bf16 = (bf16["agreement_vs_f32"][2] >= 0 and bf16["cosine_drop_vs_f32"] <= BF16_COSINE_SLACK
                     and bf16["speed_vs_f32"] is not None and bf16["speed_vs_f32"][2] < FASTER_BY)
        assert bf16["kept"] is keep_bf16 and record["float_parts"] == ("bf16" if keep_bf16 else "f32"), record
    assert _manifest(xml)["inference_precision_hint"] == record["float_parts"]
    row = next(line for line in (run_dir / "compare" / "compare.md").read_text().splitlines()
               if "student.int8.xml" in line)
    assert ("made by " + record["path"]) in row or "openvino built from that Q/DQ graph" in row, row
    assert _verdict_note(record) in row, row


def test_without_its_fp32_onnx_the_qdq_graph_is_converted_and_the_manifest_says_why(run_dir: Path,
                                                                                     tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("student.int8.onnx", "student.int8.onnx.manifest.json"):
        shutil.copy2(run_dir / "quantize" / name, source / name)
    proc = run_cli("export", "--model", str(source / "student.int8.onnx"), "--backend", "openvino", "--int8",
                   "--out", str(tmp_path / "ov"))
    assert proc.returncode == 0, proc.stderr
    record = _manifest(tmp_path / "ov" / "student.int8.xml")["openvino_int8"]
    assert record["chosen"] == "qdq" and not record["scoreboard"]
    assert record["method"].startswith("not measured: the FP32 ONNX quantize started from is not beside")
    assert "converted as is" in proc.stdout


def test_unknown_openvino_candidates_are_refused(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CoatnetEdgeError, match="unknown OpenVINO INT8 candidate 'nncf-mixed'"):
        openvino_int8_for(run_dir / "quantize" / "student.int8.onnx", {}, ("qdq", "nncf-mixed"))
    proc = run_cli("export", "--model", str(run_dir / "quantize" / "student.int8.onnx"), "--backend", "openvino",
                   "--int8", "--openvino-candidate", "nncf-mixed", "--out", str(tmp_path / "ov"))
    assert proc.returncode == 2 and "nncf-mixed" in proc.stderr and not (tmp_path / "ov").exists()


@pytest.mark.parametrize("hint", ["f32", "bf16"])
def test_the_runner_runs_an_int8_ir_with_the_float_parts_its_export_chose(run_dir: Path, tmp_path: Path,
                                                                         hint: str) -> None:
    import openvino as ov

    for path in (run_dir / "openvino-int8").glob("student.int8.*"):
        shutil.copy2(path, tmp_path / path.name)
    manifest_path = tmp_path / "student.int8.xml.manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["inference_precision_hint"] = hint
    manifest_path.write_text(json.dumps(manifest))
    has_bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    ran = load_runner(tmp_path / "student.int8.xml").info.precision
    assert ran == ("int8+bf16" if hint == "bf16" and has_bf16 else "int8")


def test_the_onnxruntime_target_scores_its_graphs_and_the_u8_graph_has_gelu_as_one_op(run_dir: Path) -> None:
    """The run's onnxruntime-int8 stage scored ONNX Runtime's plain quantize_static graph (the baseline), its tuned u8
    graph and the Q/DQ graph on the same score set; its artifact is the kept one, re-measured here to what the
    scoreboard says."""
    from coatnet_edge.calibration.onnxruntime_int8 import plain_graph, u8_graph

    artifact = run_dir / "onnxruntime-int8" / "student.int8.ort.onnx"
    record = _manifest(artifact)["onnxruntime_int8"]
    assert [row["candidate"] for row in record["scoreboard"]] == list(ONNXRUNTIME_CANDIDATES) == ["plain", "u8", "qdq"]
    assert (record["engine"], record["baseline"]) == ("onnxruntime", "plain")
    kept = _check_rule(record)
    qdq = run_dir / "quantize" / "student.int8.onnx"
    inputs = selection_inputs(qdq, _manifest(qdq))
    reference, images = inputs.score_set.reference, inputs.score_set.images
    measured = compare_logits(reference, run_batches(load_runner(artifact), images))
    assert abs(measured.top1_agreement - kept["top1_agreement"]) <= 2 / len(images)

    u8 = u8_graph(inputs.fp32_onnx, inputs.calib_images[:32])
    ops = [n.op_type for n in u8.graph.node]
    erf_gelus = sum(n.op_type == "Erf" for n in onnx.load(str(inputs.fp32_onnx)).graph.node)
    assert "Erf" not in ops and ops.count("Gelu") == erf_gelus > 0
    initializers = {i.name: i.data_type for i in u8.graph.initializer}
    activation_zero_points = [initializers.get(n.input[2]) for n in u8.graph.node
                              if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert activation_zero_points and set(activation_zero_points) == {onnx.TensorProto.UINT8}  # x86 integer kernels
    assert compare_logits(reference, onnx_logits(u8, images)).cosine > 0.99

    # the baseline is what a user writes: the graph as exported (GELU not fused), every op quantize_static takes
    plain = plain_graph(inputs.fp32_onnx, inputs.calib_images[:32])
    plain_ops = [n.op_type for n in plain.graph.node]
    assert plain_ops.count("Erf") == erf_gelus and "Gelu" not in plain_ops
    assert plain_ops.count("QuantizeLinear") > ops.count("QuantizeLinear")


@pytest.fixture(scope="module")
def small_qdq(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Q/DQ graph of the built-in student from 24 calibration images: 216 held-out images remain (432 scored)."""
    out = tmp_path_factory.mktemp("small_qdq")
    proc = run_cli("quantize", "--model", "builtin:student", "--calib-dir", str(tiny_dataset / "train"),
                   "--calib-size", "24", "--candidate", "hybrid", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out / "builtin_student.int8.onnx"


def test_the_onnxruntime_selection_run_twice_keeps_the_same_choice_and_verdicts(small_qdq: Path) -> None:
    """Real graphs, real timing: the same inputs give the same choice. Fidelity is seeded, so its intervals are
    equal to the digit; timing is measured anew each time, and the margin keeps a near-equal speed from moving the
    choice."""
    manifest = _manifest(small_qdq)
    first = onnxruntime_int8_for(small_qdq, manifest, log=lambda line: None)
    second = onnxruntime_int8_for(small_qdq, manifest, log=lambda line: None)
    assert first.candidate == second.candidate and first.record["chosen"] == second.record["chosen"]
    if not first.record["reason"].startswith("tied"):  # a speed reason quotes this run's timing
        assert first.record["reason"] == second.record["reason"]
    assert first.record["score_set"]["images"] == 216 and "432 images (216 images of" in first.record["method"]
    _check_rule(first.record)
    _check_rule(second.record)
    for a, b in zip(first.record["scoreboard"], second.record["scoreboard"], strict=True):
        assert a["candidate"] == b["candidate"] and a["verdict"] == b["verdict"] and a["chosen"] == b["chosen"]
        for key in ("top1_agreement", "agreement_ci", "kl", "cosine", "kl_vs_baseline", "agreement_vs_baseline"):
            assert a.get(key) == b.get(key), (key, a, b)


def test_selection_inputs_are_quantize_s_split_or_the_reason_they_are_not(small_qdq: Path, tmp_path: Path) -> None:
    manifest = _manifest(small_qdq)
    calibration = manifest["calibration"]
    inputs = selection_inputs(small_qdq, manifest)
    pre = PreprocessConfig.from_dict(calibration["preprocess"])
    calib = build_calibration_set(calibration["root"], pre, size=24, seed=0)
    assert np.array_equal(inputs.calib_images, calib.images)  # what quantize calibrated on
    _, held_out = split_calibration_folder(calibration["root"], pre, calib_size=24, score_size=1000, seed=0)
    images, _, _ = score_images(held_out)
    assert len(held_out) == 216 and np.array_equal(inputs.score_set.images, images)
    np.testing.assert_allclose(inputs.score_set.reference, onnx_logits(onnx.load(str(inputs.fp32_onnx)), images),
                               atol=1e-5)

    def reason(**changes: dict) -> str:
        record = json.loads(json.dumps(manifest))
        for section, values in changes.items():
            record[section].update(values)
        with pytest.raises(SelectionUnavailable) as err:
            selection_inputs(small_qdq, record)
        return err.value.reason

    assert reason(quantization={"method": "qat"}) == "the INT8 graph comes from qat, not PTQ"
    assert reason(fp32_onnx={"sha256": "0" * 64}).startswith("the FP32 ONNX quantize started from is not beside")
    assert reason(calibration={"sha256": "0" * 64}).startswith("the calibration images of ")
    assert reason(calibration={"root": str(tmp_path / "gone")}).endswith("is not there any more")


def test_with_too_few_images_to_score_on_the_onnxruntime_baseline_is_made_unscored(small_qdq: Path,
                                                                                   tmp_path: Path) -> None:
    manifest = _manifest(small_qdq)
    manifest["calibration"]["score_size"] = MIN_SCORE_IMAGES - 1  # no held-out images, and 24 calibration images
    chosen = onnxruntime_int8_for(small_qdq, manifest, log=lambda line: None)
    assert chosen.candidate == "plain" and chosen.model is not None
    assert chosen.reference_onnx == small_qdq.with_name("builtin_student.fp32.onnx")
    assert chosen.record["scoreboard"] == [] and chosen.record["method"] == (
        f"not measured: fewer than {MIN_SCORE_IMAGES} images to score on")
    only_qdq = onnxruntime_int8_for(small_qdq, _manifest(small_qdq), ("qdq",), log=lambda line: None)
    assert only_qdq.candidate == "qdq" and only_qdq.model is None and only_qdq.reference_onnx == small_qdq
    assert only_qdq.record["method"] == "not measured: only the qdq candidate asked"


def test_gelu_fusion_keeps_the_function_and_leaves_no_erf(tmp_path: Path) -> None:
    from coatnet_edge.export.gelu_fusion import GELU_OPSET, fuse_gelu
    from coatnet_edge.export.onnx import export_fp32_onnx
    from coatnet_edge.models.source import load_model

    path, _ = export_fp32_onnx(load_model("builtin:student"), tmp_path, log=lambda line: None)
    original = onnx.load(str(path))
    fused, count = fuse_gelu(original)
    erfs = sum(n.op_type == "Erf" for n in original.graph.node)
    assert count == erfs > 0 and not [n for n in fused.graph.node if n.op_type in ("Erf", "Div")]
    assert next(o.version for o in fused.opset_import if o.domain in ("", "ai.onnx")) == GELU_OPSET
    onnx.checker.check_model(fused)
    images = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    assert compare_logits(onnx_logits(original, images), onnx_logits(fused, images)).max_abs < 1e-4
