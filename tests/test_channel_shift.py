"""Per-channel activation centring (``+shift``): exact in float, only where INT8 goes, undone on fall-back."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import pytest

from coatnet_edge.calibration.candidates import candidate_settings
from coatnet_edge.calibration.channel_shift import PAYBACK_TAG, SHIFT_TAG, center_activations, channel_ranges
from coatnet_edge.calibration.ptq import PtqSettings, quantize_onnx
from coatnet_edge.calibration.sensitivity import onnx_logits, quantized_consumers, with_float_nodes
from coatnet_edge.data.sampling import build_calibration_set
from coatnet_edge.export.onnx import export_onnx
from coatnet_edge.export.qdq_rules import check_qdq, float_layers
from coatnet_edge.models.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def student(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    model, info = load_checkpoint("builtin:student")
    path = export_onnx(model, tmp_path_factory.mktemp("shift") / "fp32.onnx", image_size=info.preprocess.image_size)
    calib = build_calibration_set(tiny_dataset / "train", info.preprocess, size=36, seed=0)
    images = build_calibration_set(tiny_dataset / "val", info.preprocess, size=32, seed=1).images
    fp32 = onnx.load(str(path))
    return {"fp32": fp32, "calib": calib, "images": images, "reference": onnx_logits(fp32, images),
            "shifted": quantize_onnx(fp32, calib, candidate_settings(PtqSettings(), "transformer+shift"))}


def _readers(model: onnx.ModelProto, tensor: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if tensor in n.input]


def test_centred_graph_computes_the_fp32_function_and_each_centred_tensor_is_symmetric(student: dict) -> None:
    centred, shifted = center_activations(student["fp32"], student["calib"].images, strength=1.0)
    onnx.checker.check_model(centred)
    subs = [n for n in centred.graph.node if n.name.endswith(SHIFT_TAG)]
    assert shifted and len(subs) == len(shifted)
    np.testing.assert_allclose(onnx_logits(centred, student["images"]), student["reference"], atol=2e-4)
    weights = {t.name: t for t in centred.graph.initializer}
    paid_by_map = {n.input[0] for n in centred.graph.node if n.name.endswith(PAYBACK_TAG)}
    for sub in subs:
        for reader in _readers(centred, sub.output[0]):  # only layers that can pay the shift back exactly
            dims = list(weights[reader.input[1]].dims)
            depthwise = reader.op_type == "Conv" and dims[1] == 1 and dims[2:] != [1, 1]
            assert (reader.op_type == "MatMul" and len(dims) == 2) or (reader.op_type == "Conv" and dims[2:] == [1, 1]
                                                                       and dims[1] > 1) or depthwise, reader.name
            assert (reader.output[0] in paid_by_map) == depthwise, reader.name  # a depthwise conv: by a map
    axes = {sub.output[0]: 1 if len(weights[sub.input[1]].dims) == 4 else -1 for sub in subs}
    for low, high in channel_ranges(centred, axes, student["calib"].images).values():
        # on the images the midpoints came from, every centred channel spans [-m, m]
        np.testing.assert_allclose(low + high, 0, atol=1e-4 * max(1.0, float(np.abs(high).max())))


def test_only_the_named_layers_are_shifted(student: dict) -> None:
    target = "/stages/stages.1/stages.1.0/conv_project/Conv"
    centred, shifted = center_activations(student["fp32"], student["calib"].images, only={target})
    subs = [n for n in centred.graph.node if n.name.endswith(SHIFT_TAG)]
    assert len(shifted) == len(subs) == 1
    assert [n.name for n in _readers(centred, subs[0].output[0])] == [target]


def test_shift_candidate_quantizes_the_centred_inputs_where_the_scheme_put_int8(student: dict) -> None:
    plain = quantize_onnx(student["fp32"], student["calib"], candidate_settings(PtqSettings(), "transformer"))
    result = student["shifted"]
    assert result.shifted and not plain.shifted
    # centring never leaves a layer in float that the scheme quantized (its quantized input can make one whole INT8)
    assert set(float_layers(result.model)) <= set(float_layers(plain.model))
    assert not check_qdq(result.model).errors  # still a graph TensorRT builds
    produced_by = {out: n for n in result.model.graph.node for out in n.output}
    for sub in (n for n in result.model.graph.node if n.name.endswith(SHIFT_TAG)):
        # what the layer reads is the centred tensor, quantized: Sub -> QuantizeLinear -> DequantizeLinear
        assert {n.op_type for n in _readers(result.model, sub.output[0])} == {"QuantizeLinear"}, sub.name
    assert all(produced_by[n.input[0]].op_type == "DequantizeLinear"
               for n in result.model.graph.node if n.name in {"/stages/stages.1/stages.1.0/conv_project/Conv"})


def test_layers_returned_to_float_read_the_uncentred_activation(student: dict) -> None:
    """A layer given back its FP32 weight and bias must read the activation from before the centring Sub (its FP32
    bias does not carry the payback): every layer in float is the FP32 graph again."""
    shifted = student["shifted"]
    floated = with_float_nodes(shifted.model, quantized_consumers(shifted.model), student["fp32"])
    np.testing.assert_allclose(onnx_logits(floated, student["images"]), student["reference"], atol=1e-4)


def test_a_bias_less_conv_returned_to_float_gets_no_bias(student: dict) -> None:
    """Centring pays the shift back in the bias, so a Conv without one gets one; returned to float it must be the FP32
    Conv again, bias-less, not the FP32 weight with the payback bias left on."""
    fp32 = copy.deepcopy(student["fp32"])
    for node in fp32.graph.node:
        if node.op_type == "Conv":
            del node.input[2:]
    shifted = quantize_onnx(fp32, student["calib"], candidate_settings(PtqSettings(), "transformer+shift")).model
    given = [n.name for n in shifted.graph.node if n.op_type == "Conv" and len(n.input) == 3]
    assert given and all(n.endswith("/Conv") for n in given)  # the centring (or bias correction) added a bias
    floated = with_float_nodes(shifted, quantized_consumers(shifted), fp32)
    assert not [n.name for n in floated.graph.node if n.op_type == "Conv" and len(n.input) == 3]
    np.testing.assert_allclose(onnx_logits(floated, student["images"]), onnx_logits(fp32, student["images"]),
                               atol=1e-4)


def test_depthwise_payback_map_carries_the_zero_padding_border(student: dict) -> None:
    """A depthwise 3x3 conv pads with zeros, so ``W z`` alone would be wrong at the border: the payback map
    differs there from its interior, and with it the centred conv's output equals the FP32 conv's exactly."""
    target = "/stages/stages.1/stages.1.0/conv_dw/Conv"
    centred, shifted = center_activations(student["fp32"], student["calib"].images, only={target}, strength=1.0)
    add = next(n for n in centred.graph.node if n.name == f"{target}{PAYBACK_TAG}")
    payback = onnx.numpy_helper.to_array(next(t for t in centred.graph.initializer if t.name == add.input[1]))
    interior = payback[:, :, 1:-1, 1:-1]
    assert np.ptp(interior, axis=(2, 3)).max() < 1e-5  # W z inside ...
    assert np.abs(payback[:, :, 0, :] - interior[:, :, :1, :1]).max() > 1e-3  # ... not on the border
    np.testing.assert_allclose(onnx_logits(centred, student["images"]), student["reference"], atol=2e-4)
    sub = next(n for n in centred.graph.node if n.name.endswith(SHIFT_TAG))
    assert len(shifted) == 1 and [n.name for n in _readers(centred, sub.output[0])] == [target]
