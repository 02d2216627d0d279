"""The Q/DQ validator: accepts the toolkit's INT8 ONNX, rejects hand-made graphs that break TensorRT's rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from coatnet_edge.calibration.ptq import PtqSettings, quantize_onnx
from coatnet_edge.data.sampling import build_calibration_set
from coatnet_edge.export.onnx import export_onnx
from coatnet_edge.export.qdq_rules import check_qdq
from coatnet_edge.models.checkpoint import load_checkpoint


def _conv_graph(*, zero_point: int = 0, zp_dtype=np.int8, weight_scales: int = 4, act_scales: int = 1,
                custom_domain: bool = False) -> onnx.ModelProto:
    """x -> Q/DQ -> Conv(W -> Q/DQ) -> y: a correctly quantized conv by default."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.full(weight_scales, 0.02, np.float32).reshape(-1) if weight_scales > 1
                                else np.array(0.02, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(weight_scales, np.int8) if weight_scales > 1 else np.array(0, np.int8),
                                "w_zp"),
        numpy_helper.from_array(np.full(act_scales, 0.05, np.float32) if act_scales > 1
                                else np.array(0.05, np.float32), "x_scale"),
        numpy_helper.from_array(np.full(act_scales, zero_point, zp_dtype) if act_scales > 1
                                else np.array(zero_point, zp_dtype), "x_zp"),
    ]
    axis = [helper.make_attribute("axis", 1)] if act_scales > 1 else []
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="x_q"),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xdq"], name="x_dq"),
        helper.make_node("QuantizeLinear", ["w", "w_scale", "w_zp"], ["wq"], name="w_q", axis=0),
        helper.make_node("DequantizeLinear", ["wq", "w_scale", "w_zp"], ["wdq"], name="w_dq", axis=0),
        helper.make_node("Conv", ["xdq", "wdq"], ["y"], name="conv", pads=[1, 1, 1, 1]),
    ]
    nodes[0].attribute.extend(axis)
    nodes[1].attribute.extend(axis)
    if custom_domain:
        nodes.append(helper.make_node("FakeQuantize", ["y"], ["z"], name="fq", domain="org.openvinotoolkit"))
    out = "z" if custom_domain else "y"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_correct_conv_passes() -> None:
    report = check_qdq(_conv_graph())
    assert report.ok, report.to_dict()
    assert report.quantized_layers == 1 and report.float_layers == []


@pytest.mark.parametrize(("kwargs", "rule"), [
    ({"zero_point": 3}, "signed-symmetric"),
    ({"zp_dtype": np.uint8}, "signed-symmetric"),
    ({"weight_scales": 1}, "per-channel-weights"),
    ({"act_scales": 3}, "per-tensor-activations"),
    ({"custom_domain": True}, "standard-ops"),
])
def test_bad_graphs_are_rejected_with_the_rule_named(kwargs: dict, rule: str) -> None:
    report = check_qdq(_conv_graph(**kwargs))
    assert not report.ok
    assert rule in {f.rule for f in report.errors}, report.to_dict()


def test_weight_scales_on_the_wrong_axis_are_rejected() -> None:
    model = _conv_graph()
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.ones((4, 4, 3, 3), np.float32), "w"))
    for node in model.graph.node:
        if node.name in ("w_q", "w_dq"):
            node.attribute[0].i = 1  # input channels, not output channels
    report = check_qdq(model)
    assert [f.rule for f in report.errors] == ["per-channel-weights"]


def test_the_toolkits_int8_onnx_passes(tiny_dataset: Path, tmp_path: Path) -> None:
    model, info = load_checkpoint("builtin:student")
    fp32 = export_onnx(model, tmp_path / "fp32.onnx", image_size=info.preprocess.image_size)
    calib = build_calibration_set(tiny_dataset / "train", info.preprocess, size=24, seed=0)
    report = check_qdq(quantize_onnx(fp32, calib, PtqSettings(preset="tensorrt")).model)
    assert report.ok, report.errors
    assert report.quantized_layers >= 20
    assert not [f for f in report.advisories if f.rule in ("layernorm-float", "attention-qdq")]
    # the FP32 graph has nothing quantized and nothing wrong
    plain = check_qdq(fp32)
    assert plain.ok and plain.quantized_layers == 0
