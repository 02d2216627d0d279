"""QAT through NNCF's torch backend: standard Q/DQ out, signed INT8 for TensorRT, runs in ORT and OpenVINO."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from coatnet_edge.calibration.ptq import to_signed_int8
from coatnet_edge.calibration.sensitivity import onnx_logits
from coatnet_edge.data.sampling import build_calibration_set
from coatnet_edge.metrics import compare_logits
from coatnet_edge.models.checkpoint import load_checkpoint
from coatnet_edge.runtime import load_runner
from tests.conftest import run_cli


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    values.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node if n.op_type == "Constant"})
    return values


def test_signed_rewrite_handles_constants_shared_between_quantizers() -> None:
    """torch.onnx.export shares equal scale/zero-point constants between quantizers; rewriting one
    uint8 pair must not change the others (this broke QAT exports once: 0.80 agreement)."""
    scale = numpy_helper.from_array(np.array(0.01, np.float32), "scale")
    zp_u8 = numpy_helper.from_array(np.array(0, np.uint8), "zp_u8")
    zp_i8 = numpy_helper.from_array(np.array(0, np.int8), "zp_i8")
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["s"]),
        helper.make_node("QuantizeLinear", ["s", "scale", "zp_u8"], ["s_q"]),
        helper.make_node("DequantizeLinear", ["s_q", "scale", "zp_u8"], ["s_dq"]),
        helper.make_node("Sigmoid", ["x"], ["t"]),
        helper.make_node("QuantizeLinear", ["t", "scale", "zp_u8"], ["t_q"]),
        helper.make_node("DequantizeLinear", ["t_q", "scale", "zp_u8"], ["t_dq"]),
        helper.make_node("QuantizeLinear", ["x", "scale", "zp_i8"], ["x_q"]),  # signed, shares the scale
        helper.make_node("DequantizeLinear", ["x_q", "scale", "zp_i8"], ["x_dq"]),
        helper.make_node("Sum", ["s_dq", "t_dq", "x_dq"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
                              initializer=[scale, zp_u8, zp_i8])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = np.array([-1.0, -0.3, 0.2, 1.0], np.float32)
    before = onnx_logits(model, x)
    assert to_signed_int8(model) == 2
    onnx.checker.check_model(model)
    values = _constants(model.graph)
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            assert values[node.input[2]].dtype == np.int8
    assert values["scale"] == np.float32(0.01)  # the signed quantizer's scale is untouched
    np.testing.assert_allclose(onnx_logits(model, x), before, atol=2 * 0.01 * 255 / 127)


@pytest.fixture(scope="module")
def qat_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("qat")
    proc = run_cli("quantize", "--model", "builtin:student", "--calib-dir", str(tiny_dataset / "train"),
                   "--calib-size", "32", "--method", "qat", "--qat-epochs", "1", "--out", str(out))
    return out, proc


def test_qat_cli_writes_standard_signed_qdq_with_checkpoint(qat_run: tuple) -> None:
    out, proc = qat_run
    assert proc.returncode == 0, proc.stderr
    assert "QAT epoch 1/1" in proc.stdout and "QAT," in proc.stdout
    graph = onnx.load(str(out / "builtin_student.int8.onnx")).graph
    assert {n.domain for n in graph.node} <= {"", "ai.onnx"}
    values = _constants(graph)
    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) > 50
    assert all(values[n.input[2]].dtype == np.int8 and not values[n.input[2]].any() for n in qdq)
    manifest = json.loads((out / "builtin_student.int8.onnx.manifest.json").read_text())
    quant = manifest["quantization"]
    assert quant["method"] == "qat" and quant["engine"] == "nncf-torch" and len(quant["history"]) == 2
    assert Path(quant["checkpoint"]).is_file()


def test_qat_model_agrees_with_fp32_in_both_runtimes(qat_run: tuple, tiny_dataset: Path) -> None:
    out, proc = qat_run
    assert proc.returncode == 0, proc.stderr
    _, info = load_checkpoint("builtin:student")
    images = build_calibration_set(tiny_dataset / "val", info.preprocess, size=48, seed=1).images
    for backend in ("onnxruntime", "openvino"):
        ref = load_runner(out / "builtin_student.fp32.onnx", backend=backend).run(images)
        agreement = compare_logits(ref, load_runner(out / "builtin_student.int8.onnx", backend=backend).run(images))
        assert agreement.top1_agreement >= 0.9 and agreement.cosine > 0.99, (backend, agreement)
