"""Post-training INT8 quantization of the FP32 ONNX graph with NNCF's ONNX backend.

Why the ONNX graph and not the torch model: NNCF 3.4's torch backend only supports fast bias
correction, and that step fails on CoAtNet (IndexError in FastBiasCorrection._get_bias_shift,
reproduced with and without the frozen relative-position bias). The ONNX backend quantizes the
same graph every backend consumes and writes only standard QuantizeLinear/DequantizeLinear
(int8, zero point 0 under the TensorRT preset, per-channel weights), so one quantized model feeds
ONNX Runtime, OpenVINO and TensorRT.

CoAtNet is half CNN, half transformer. ``scheme="hybrid"`` quantizes the conv stages S0-S2 like a
CNN (everything NNCF can fuse, residual adds included) and, in the attention stages S3-S4, keeps in
float what INT8 breaks in transformers: LayerNorm, Softmax, the residual and bias adds and the
scale multiplies; the attention and MLP MatMuls still get INT8 inputs. The head's global pooling
stays float too (see ``hybrid_float_nodes``). QAT applies the same scope to NNCF's torch graph: which layers
stay float is defined once (``hybrid_keeps_float``), for either graph's layer names.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from coatnet_edge.calibration.channel_shift import PAYBACK_TAG, SHIFT_TAG, center_activations
from coatnet_edge.calibration.options import PRESETS, SCHEMES
from coatnet_edge.calibration.sensitivity import quantized_consumers
from coatnet_edge.data.sampling import ImageSample
from coatnet_edge.errors import CoatnetEdgeError, MissingDependencyError
from coatnet_edge.export.graph_index import GraphIndex
from coatnet_edge.export.qdq_rules import float_layers
from coatnet_edge.models.stages import OURS_ATTENTION_STAGES, AttentionStages

# What the hybrid scheme keeps in float inside an attention stage, each kind with its op names in both graphs it
# quantizes: (ONNX op types, NNCF torch node types). The ONNX export writes GELU as Div, Erf, Add, Mul, Mul
# (opset 20: one Gelu); the two vocabularies share no name.
HYBRID_FLOAT_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "layer norm": (("LayerNormalization",), ("layer_norm",)),
    "softmax": (("Softmax",), ("softmax",)),
    "add": (("Add",), ("add", "__add__", "__iadd__")),
    "scale": (("Mul", "Div"), ("mul", "__mul__", "div", "__truediv__")),
    "GELU": (("Erf", "Gelu"), ("gelu",)),
}
# ... and, outside the stages, the head's global pooling
HEAD_POOL: tuple[tuple[str, ...], tuple[str, ...]] = (("ReduceMean", "GlobalAveragePool"), ("mean",))
_IN_ATTENTION = {op for onnx_ops, torch_ops in HYBRID_FLOAT_KINDS.values() for op in (*onnx_ops, *torch_ops)}
_POOL = {*HEAD_POOL[0], *HEAD_POOL[1]}


@dataclass(frozen=True)
class PtqSettings:
    preset: str = "tensorrt"  # tensorrt: symmetric INT8 everywhere; openvino: asymmetric activations
    scheme: str = "hybrid"
    smooth_quant: bool = False
    channel_shift: bool = False  # centre 1x1 / depthwise Conv and MatMul inputs first (calibration/channel_shift.py)
    fast_bias_correction: bool = True
    ignored_patterns: tuple[str, ...] = ()  # regexes over ONNX node names, kept in float
    input_name: str = "images"
    attention_stages: AttentionStages = OURS_ATTENTION_STAGES  # where the hybrid scheme keeps norms/softmax/adds float

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise CoatnetEdgeError(f"unknown preset '{self.preset}'", fix=f"use one of: {', '.join(PRESETS)}")
        if self.scheme not in SCHEMES:
            raise CoatnetEdgeError(f"unknown scheme '{self.scheme}'", fix=f"use one of: {', '.join(SCHEMES)}")
        if not isinstance(self.attention_stages, AttentionStages):
            raise CoatnetEdgeError(f"attention_stages {self.attention_stages!r} is not an AttentionStages",
                                   fix="pass coatnet_edge.models.stages.AttentionStages((3, 4)) or the loaded "
                                       "model's attention_stages")
        object.__setattr__(self, "ignored_patterns", tuple(self.ignored_patterns))

    def to_dict(self) -> dict[str, Any]:
        """The settings as recorded in manifests (the attention stages as their ONNX node-name regex)."""
        return {**asdict(self), "attention_stages": self.attention_stages.onnx_pattern}


@dataclass
class PtqResult:
    model: Any  # onnx.ModelProto with Q/DQ
    settings: PtqSettings
    ignored: list[str] = field(default_factory=list)
    float_layers: list[str] = field(default_factory=list)
    shifted: list[str] = field(default_factory=list)  # activations centred before quantization (channel_shift)


def hybrid_keeps_float(layer: str, op: str, stages: AttentionStages = OURS_ATTENTION_STAGES) -> bool:
    """Whether the hybrid scheme keeps a layer in float: ``HYBRID_FLOAT_KINDS`` inside the attention stages, and
    the head's global pooling. ``layer`` and ``op`` are an ONNX node's name and op type or an NNCF torch node's.

    The head pool's input is the network's last activation, the quantizer the per-layer sensitivity ranking
    (``coatnet-edge quantize --max-drop``) puts first on the built-in models, and the head costs almost nothing.
    """
    if op in _POOL:
        return stages.outside_all_stages(layer)
    return op in _IN_ATTENTION and stages.contains(layer)


def hybrid_float_nodes(model: Any, attention_stages: AttentionStages = OURS_ATTENTION_STAGES) -> list[str]:
    """Names of the ONNX nodes the hybrid scheme keeps in float (``hybrid_keeps_float``)."""
    return [n.name for n in model.graph.node if hybrid_keeps_float(n.name, n.op_type, attention_stages)]


def nncf_preset_args(settings: PtqSettings) -> dict[str, Any]:
    """``nncf.quantize`` arguments of a preset/scheme, shared by PTQ (ONNX) and QAT (torch)."""
    import nncf

    tensorrt = settings.preset == "tensorrt"
    return {"preset": nncf.QuantizationPreset.PERFORMANCE if tensorrt else nncf.QuantizationPreset.MIXED,
            "target_device": nncf.TargetDevice.ANY if tensorrt else nncf.TargetDevice.CPU,
            "model_type": nncf.ModelType.TRANSFORMER if settings.scheme == "transformer" else None}


def tensorrt_activation_args(settings: PtqSettings) -> dict[str, Any]:
    """Per-tensor activation scales under the TensorRT preset.

    NNCF otherwise gives depthwise-conv inputs per-channel activation scales (OpenVINO runs those);
    TensorRT's explicit quantization takes per-tensor activations only (the Q/DQ validator's rule).
    """
    if settings.preset != "tensorrt":
        return {}
    from nncf.quantization.advanced_parameters import QuantizationParameters

    return {"activations_quantization_params": QuantizationParameters(per_channel=False)}


def quantize_onnx(fp32_model: Any | str | Path, calib: ImageSample,
                  settings: PtqSettings | None = None) -> PtqResult:
    """INT8 Q/DQ version of an FP32 ONNX model, calibrated on ``calib``."""
    try:
        import nncf
        import onnx
    except ImportError:
        raise MissingDependencyError("nncf", hint="pip install nncf onnx") from None

    nncf.set_log_level(logging.WARNING)  # its per-node INFO lines drown the CLI's output
    settings = settings or PtqSettings()
    model = onnx.load(str(fp32_model)) if isinstance(fp32_model, str | Path) else fp32_model
    ignored = hybrid_float_nodes(model, settings.attention_stages) if settings.scheme == "hybrid" else []
    for pattern in settings.ignored_patterns:
        ignored += [n.name for n in model.graph.node if re.search(pattern, n.name) and n.name not in ignored]
    shifted: list[str] = []
    if settings.channel_shift:
        # where this scheme puts INT8 does not depend on the statistics: a few images and no bias correction find it
        placed = _nncf_quantize(model, calib.images[:8], settings, ignored, bias_correction=False)
        model, shifted = center_activations(model, calib.images, only=set(quantized_consumers(placed)))
        ignored += [n.name for n in model.graph.node if n.name.endswith((SHIFT_TAG, PAYBACK_TAG))]
    quantized = _nncf_quantize(model, calib.images, settings, ignored, settings.fast_bias_correction)
    if settings.preset == "tensorrt":
        to_signed_int8(quantized)
    return PtqResult(quantized, settings, ignored, float_layers(quantized), shifted)


def _nncf_quantize(model: Any, images: Any, settings: PtqSettings, ignored: list[str], bias_correction: bool) -> Any:
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    smooth = AdvancedSmoothQuantParameters() if settings.smooth_quant else AdvancedSmoothQuantParameters(
        convolution=-1, matmul=-1)
    advanced = AdvancedQuantizationParameters(smooth_quant_alphas=smooth, disable_bias_correction=not bias_correction,
                                              **tensorrt_activation_args(settings))
    dataset = nncf.Dataset([images[i:i + 1] for i in range(len(images))], lambda batch: {settings.input_name: batch})
    return nncf.quantize(
        model, dataset, subset_size=len(images),
        **nncf_preset_args(settings),
        fast_bias_correction=settings.fast_bias_correction,
        ignored_scope=nncf.IgnoredScope(names=ignored, validate=False) if ignored else None,
        advanced_parameters=advanced,
    )


def to_signed_int8(model: Any) -> int:
    """Rewrite uint8 Q/DQ pairs (zero point 0, e.g. after Sigmoid) as int8 with zero point 0.

    NNCF's symmetric preset still picks unsigned INT8 for non-negative activations, and forcing
    signedness is refused by its hardware configs; TensorRT's explicit quantization takes signed
    INT8 only. The range [0, 255 s] becomes [-127 s', 127 s'] with s' = 255 s / 127: one bit of
    resolution is lost on those tensors, nothing else changes.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    index = GraphIndex(model)
    renamed: dict[str, tuple[str, str]] = {}  # Q output -> (new scale, new zero point)
    for node in index.of_type("QuantizeLinear"):
        if len(node.input) < 3:
            continue
        zero_point = index.constant(node.input[2])
        if zero_point is None:
            raise CoatnetEdgeError(f"{node.name}: the zero point is not a constant",
                                   fix="quantize with NNCF or Model Optimizer, which write constant zero points")
        if zero_point.dtype != np.uint8:
            continue
        if zero_point.any():
            raise CoatnetEdgeError(f"{node.name}: asymmetric uint8 quantizer in a TensorRT graph",
                                   fix="use preset='tensorrt' (symmetric) when quantizing")
        # New tensors per quantizer: exporters share equal constants between quantizers.
        scale = index.constant(node.input[1]).astype(np.float32) * np.float32(255.0 / 127.0)
        names = (f"{node.output[0]}_s8_scale", f"{node.output[0]}_s8_zero_point")
        model.graph.initializer.extend([numpy_helper.from_array(scale, names[0]),
                                        numpy_helper.from_array(np.zeros_like(zero_point, np.int8), names[1])])
        node.input[1], node.input[2] = names
        renamed[node.output[0]] = names
    for node in index.of_type("DequantizeLinear"):
        if node.input[0] in renamed:
            node.input[1], node.input[2] = renamed[node.input[0]]
    for info in model.graph.value_info:  # shape inference recorded the old uint8 type
        if info.name in renamed:
            info.type.tensor_type.elem_type = onnx.TensorProto.INT8
    return len(renamed)
