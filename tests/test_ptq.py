"""NNCF PTQ on the ONNX graph: only standard Q/DQ, TensorRT-style symmetric INT8, runs in ORT and OpenVINO."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from coatnet_edge.calibration.ptq import PtqSettings, hybrid_float_nodes, quantize_onnx
from coatnet_edge.data.sampling import build_calibration_set
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.export.onnx import export_onnx
from coatnet_edge.metrics import compare_logits
from coatnet_edge.models.checkpoint import load_checkpoint
from coatnet_edge.runtime import load_runner


@pytest.fixture(scope="module")
def quantized(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    out = tmp_path_factory.mktemp("ptq")
    model, info = load_checkpoint("builtin:student")
    fp32 = export_onnx(model, out / "fp32.onnx", image_size=info.preprocess.image_size)
    calib = build_calibration_set(tiny_dataset / "train", info.preprocess, size=48, seed=0)
    result = quantize_onnx(fp32, calib, PtqSettings(preset="tensorrt", scheme="hybrid"))
    int8 = out / "int8.onnx"
    onnx.save(result.model, str(int8))
    return fp32, int8, result


def test_only_standard_qdq_with_zero_points_0_and_per_channel_weights(quantized: tuple) -> None:
    _, int8, result = quantized
    graph = onnx.load(str(int8)).graph
    assert {n.domain for n in graph.node} <= {"", "ai.onnx"}
    assert not any("FakeQuantize" in n.op_type for n in graph.node)
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    values.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node if n.op_type == "Constant"})
    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for node in qdq:
        zero_point = values[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any(), node.name
    weight_dq = [n for n in qdq if n.op_type == "DequantizeLinear" and values.get(n.input[0]) is not None
                 and values[n.input[0]].ndim > 1]
    assert weight_dq and all(values[n.input[1]].size > 1 for n in weight_dq)  # per output channel
    # hybrid: LayerNorm/Softmax/residual adds of S3-S4 and the head pool stay float
    assert result.ignored == hybrid_float_nodes(onnx.load(str(quantized[0])))
    assert "/ReduceMean" in result.ignored and any("/stages/stages.4/" in n for n in result.ignored)


def test_int8_agrees_with_fp32_in_both_runtimes(quantized: tuple, tiny_dataset: Path) -> None:
    fp32, int8, _ = quantized
    _, info = load_checkpoint("builtin:student")
    images = build_calibration_set(tiny_dataset / "val", info.preprocess, size=48, seed=1).images
    for backend in ("onnxruntime", "openvino"):
        ref = load_runner(fp32, backend=backend).run(images)
        agreement = compare_logits(ref, load_runner(int8, backend=backend).run(images))
        assert agreement.top1_agreement >= 0.9 and agreement.cosine > 0.99, (backend, agreement)


def test_unknown_preset_and_scheme() -> None:
    with pytest.raises(CoatnetEdgeError, match="unknown preset 'trt'"):
        PtqSettings(preset="trt")
    with pytest.raises(CoatnetEdgeError, match="unknown scheme"):
        PtqSettings(scheme="mixed")


def test_quantize_cli_writes_int8_onnx_with_manifest(tiny_dataset: Path, tmp_path: Path) -> None:
    import json

    from tests.conftest import run_cli

    out = tmp_path / "q"
    proc = run_cli("quantize", "--model", "builtin:student", "--calib-dir", str(tiny_dataset / "train"),
                   "--calib-size", "24", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "top-1 agreement" in proc.stdout and "INFO:nncf" not in proc.stdout + proc.stderr
    manifest = json.loads((out / "builtin_student.int8.onnx.manifest.json").read_text())
    assert manifest["precision"] == "int8" and manifest["calibration"]["size"] == 24
    assert len(manifest["calibration"]["sha256"]) == 64 and manifest["quantization"]["preset"] == "tensorrt"
    assert manifest["check_vs_fp32"]["cosine"] > 0.98


def test_quantize_bad_calibration_folders(tmp_path: Path) -> None:
    from tests.conftest import assert_one_line_error, run_cli

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for i in range(12):
        (corrupt / f"{i}.jpg").write_bytes(b"\xff\xd8\xff truncated")
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder in (tmp_path / "missing", empty, corrupt):
        out = tmp_path / f"out_{folder.name}"
        assert_one_line_error(run_cli("quantize", "--model", "builtin:student", "--calib-dir", str(folder),
                                      "--out", str(out)), str(folder))
        assert not out.exists()


def test_same_seed_and_images_give_the_same_scales(quantized: tuple, tiny_dataset: Path) -> None:
    fp32, int8, _ = quantized
    _, info = load_checkpoint("builtin:student")
    calib = build_calibration_set(tiny_dataset / "train", info.preprocess, size=48, seed=0)
    again = quantize_onnx(fp32, calib, PtqSettings(preset="tensorrt", scheme="hybrid")).model

    def scales(model: onnx.ModelProto) -> dict[str, np.ndarray]:
        found = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if "scale" in i.name}
        found.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node
                      if n.op_type == "Constant" and "scale" in n.output[0]})
        return found

    first, second = scales(onnx.load(str(int8))), scales(again)
    assert first and first.keys() == second.keys()
    assert all(np.array_equal(first[k], second[k]) for k in first)
