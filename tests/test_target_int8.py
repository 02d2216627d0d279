"""Per-target INT8: the OpenVINO target (the Q/DQ graph converted, NNCF on the OpenVINO model) and the ONNX Runtime
target (the Q/DQ graph, ONNX Runtime's own u8 graph with GELU as one op), each measured in its runtime on held-out
images, one kept by the stated rule, float parts f32 or bf16 by measurement, all recorded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from coatnet_edge.calibration.openvino_int8 import (
    BF16_COSINE_SLACK,
    FASTER_BY,
    OPENVINO_CANDIDATES,
    openvino_int8_for,
)
from coatnet_edge.calibration.sensitivity import onnx_logits
from coatnet_edge.calibration.target_inputs import AGREEMENT_SLACK, COSINE_SLACK, selection_inputs
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.metrics import compare_logits
from coatnet_edge.runtime import load_runner
from tests.conftest import run_cli


def _manifest(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".manifest.json").read_text())


@pytest.fixture(scope="module")
def run_dir(default_run: tuple) -> Path:
    return default_run[0]


def test_the_run_keeps_the_most_faithful_openvino_candidate_and_its_scoreboard_is_true(run_dir: Path) -> None:
    """The kept IR, re-run here on the same held-out images, scores what the scoreboard says, and no candidate
    scored higher; the bf16 decision follows the stated rule; the compare table names the path."""
    xml = run_dir / "openvino-int8" / "student.int8.xml"
    record = _manifest(xml)["openvino_int8"]
    board = record["scoreboard"]
    assert [row["candidate"] for row in board] == list(OPENVINO_CANDIDATES)
    best = max(board, key=lambda row: (row["top1_agreement"], row["cosine"]))
    kept = next(row for row in board if row["chosen"])  # the most faithful, or a faster one as faithful (slack)
    assert kept["top1_agreement"] >= best["top1_agreement"] - AGREEMENT_SLACK
    assert kept["cosine"] >= best["cosine"] - COSINE_SLACK
    assert all(row["p50_ms_batch1"] >= kept["p50_ms_batch1"] for row in board if row is best) or kept is best
    assert sum(row["chosen"] for row in board) == 1 and record["chosen"] == kept["candidate"]
    assert all(row["float_math"] == "f32" and row["p50_ms_batch1"] > 0 for row in board)

    qdq = run_dir / "quantize" / "student.int8.onnx"
    fp32_onnx, _, holdout, _ = selection_inputs(qdq, _manifest(qdq))
    reference = onnx_logits(onnx.load(str(fp32_onnx)), holdout)
    runner = load_runner(xml, precision="fp32")  # float parts pinned to f32, as the candidates were scored
    measured = compare_logits(reference, runner.run(holdout))
    assert abs(measured.top1_agreement - kept["top1_agreement"]) <= 2 / len(holdout), (measured, kept)
    assert abs(measured.cosine - kept["cosine"]) < 1e-4

    bf16 = record["bf16_float_parts"]
    if bf16 is None:
        assert record["float_parts"] == "f32"
    else:
        keep_bf16 = (bf16["top1_agreement"] >= kept["top1_agreement"]
                     and bf16["cosine"] >= kept["cosine"] - BF16_COSINE_SLACK
                     and bf16["p50_ms_batch1"] <= FASTER_BY * kept["p50_ms_batch1"])
        assert record["float_parts"] == ("bf16" if keep_bf16 else "f32"), record
    assert _manifest(xml)["inference_precision_hint"] == record["float_parts"]
    row = next(line for line in (run_dir / "compare" / "compare.md").read_text().splitlines()
               if "student.int8.xml" in line)
    assert ("made by " + record["path"]) in row or "openvino built from that Q/DQ graph" in row, row


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
    """The run's onnxruntime-int8 stage measured the Q/DQ graph and ONNX Runtime's own u8 graph on the same held-out
    images; its artifact is the kept one, re-measured here to what the scoreboard says."""
    from coatnet_edge.calibration.onnxruntime_int8 import u8_graph

    artifact = run_dir / "onnxruntime-int8" / "student.int8.ort.onnx"
    record = _manifest(artifact)["onnxruntime_int8"]
    board = {row["candidate"]: row for row in record["scoreboard"]}
    assert set(board) == {"qdq", "u8"} and board[record["chosen"]]["chosen"]
    qdq = run_dir / "quantize" / "student.int8.onnx"
    fp32_onnx, calib, holdout, _ = selection_inputs(qdq, _manifest(qdq))
    reference = onnx_logits(onnx.load(str(fp32_onnx)), holdout)
    measured = compare_logits(reference, load_runner(artifact).run(holdout))
    assert abs(measured.top1_agreement - board[record["chosen"]]["top1_agreement"]) <= 2 / len(holdout)

    u8 = u8_graph(fp32_onnx, calib[:32])
    ops = [n.op_type for n in u8.graph.node]
    erf_gelus = sum(n.op_type == "Erf" for n in onnx.load(str(fp32_onnx)).graph.node)
    assert "Erf" not in ops and ops.count("Gelu") == erf_gelus > 0
    initializers = {i.name: i.data_type for i in u8.graph.initializer}
    activation_zero_points = [initializers.get(n.input[2]) for n in u8.graph.node
                              if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert activation_zero_points and set(activation_zero_points) == {onnx.TensorProto.UINT8}  # x86 integer kernels
    assert compare_logits(reference, onnx_logits(u8, holdout)).cosine > 0.99


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
