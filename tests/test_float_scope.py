"""The hybrid scheme's float scope is one definition: PTQ (ONNX node names) and QAT (NNCF torch node names) keep
the same layers of the built-in student in float."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from coatnet_edge.calibration.ptq import HEAD_POOL, HYBRID_FLOAT_KINDS, PtqSettings, hybrid_float_nodes
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.models.stages import OURS_ATTENTION_STAGES, AttentionStages
from coatnet_edge.models.timm_source import TIMM_ATTENTION_STAGES


def _onnx_module(node_name: str) -> str:
    """``/stages/stages.3/blocks/blocks.0/attn/MatMul`` -> ``stages.3.blocks.0.attn``: the exporter writes a
    container's child as ``<container>.<i>`` after the container's own scope."""
    path: list[str] = []
    for part in node_name.split("/")[1:-1]:
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        else:
            path.append(part)
    return ".".join(path)


def _torch_module(node_name: str) -> str:
    """``stages/3/blocks/0/attn/linear/0`` -> ``stages.3.blocks.0.attn`` (NNCF: module path / op / call index)."""
    return ".".join(node_name.split("/")[:-2])


def _kind(op: str, form: int) -> str:
    """The kind of float layer an op is, from the one table; ``form`` 0: ONNX op type, 1: NNCF torch node type."""
    if op in HEAD_POOL[form]:
        return "head pool"
    return next(kind for kind, ops in HYBRID_FLOAT_KINDS.items() if op in ops[form])


def test_onnx_and_torch_keep_the_same_layers_of_the_builtin_student_float(tmp_path: Path) -> None:
    """Both graphs are read as (module, kind of op) pairs. Two differences are how each graph writes one module,
    not the scope: the ONNX export writes GELU as five nodes (fused back to one ``Gelu`` here) and a Linear as
    MatMul + Add (NNCF: one ``linear`` node, so the Linear's bias Add is not compared)."""
    pytest.importorskip("nncf")
    import onnx

    from coatnet_edge.calibration.qat import torch_hybrid_float_nodes
    from coatnet_edge.export.gelu_fusion import fuse_gelu
    from coatnet_edge.export.onnx import export_onnx
    from coatnet_edge.models.checkpoint import load_checkpoint

    model, info = load_checkpoint("builtin:student")
    size = info.preprocess.image_size
    linear = {name for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    graph, _ = fuse_gelu(onnx.load(str(export_onnx(model, tmp_path / "student.onnx", image_size=size))))
    ops = {n.name: n.op_type for n in graph.graph.node}
    from_onnx = {(_onnx_module(name), _kind(ops[name], 0)) for name in hybrid_float_nodes(graph, OURS_ATTENTION_STAGES)
                 if _onnx_module(name) not in linear}
    kinds = {n.node_name: n.node_type for n in _nncf_nodes(model, size)}
    from_torch = {(_torch_module(name), _kind(kinds[name], 1))
                  for name in torch_hybrid_float_nodes(model, size, OURS_ATTENTION_STAGES)}
    assert from_onnx == from_torch
    assert ("", "head pool") in from_torch
    for stage in ("stages.3", "stages.4"):
        assert {kind for module, kind in from_torch if module.startswith(stage + ".")} == set(HYBRID_FLOAT_KINDS)
    assert not any(module.startswith(("stages.0.", "stages.1.", "stages.2.")) for module, _ in from_torch)


def _nncf_nodes(model: nn.Module, size: int) -> list:
    import copy

    import torch
    from nncf.torch.function_hook import wrap_model
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph

    return build_nncf_graph(wrap_model(copy.deepcopy(model)), torch.zeros(1, 3, size, size)).get_all_nodes()


def test_attention_stages_render_both_forms_and_manifests_keep_the_onnx_regex() -> None:
    ours = OURS_ATTENTION_STAGES
    assert OURS_ATTENTION_STAGES.onnx_pattern == r"^/stages/stages\.[34]/"
    assert OURS_ATTENTION_STAGES.torch_pattern == r"^stages/[34]/"
    assert TIMM_ATTENTION_STAGES.onnx_pattern == r"^/stages/stages\.[23]/"
    for inside in ("/stages/stages.3/blocks/blocks.0/attn/Softmax", "stages/4/blocks/0/attn/softmax/0"):
        assert OURS_ATTENTION_STAGES.contains(inside)
    for elsewhere in ("/stages/stages.2/stages.2.1/Add", "stages/2/1/add/0", "/stages/stages.34/x/Add", "/ReduceMean"):
        assert not OURS_ATTENTION_STAGES.contains(elsewhere)
    assert ours.outside_all_stages("/ReduceMean") and ours.outside_all_stages("mean/0")
    assert not ours.outside_all_stages("/stages/stages.0/convs/convs.0/Conv")
    recorded = PtqSettings(attention_stages=TIMM_ATTENTION_STAGES).to_dict()["attention_stages"]
    assert recorded == r"^/stages/stages\.[23]/"
    with pytest.raises(CoatnetEdgeError, match="AttentionStages"):
        PtqSettings(attention_stages=r"^/stages/stages\.[34]/")
    with pytest.raises(ValueError):
        AttentionStages(())
