"""FP32 ONNX export: opset >= 17, named I/O, optional dynamic batch, checked before it is renamed in.

Uses the TorchScript-based exporter (``dynamo=False``): it honours the opset asked for (the dynamo
exporter silently wrote opset 18 when asked for 17 on these CoAtNets) and emits the plain
MatMul/Softmax attention pattern that runtimes fuse.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from coatnet_edge.atomic import atomic_path, ensure_output_dir
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.export.fp16 import FP32_OPS, float32_nodes, to_mixed_fp16
from coatnet_edge.export.job import ExportJob, ExportOutput
from coatnet_edge.export.parity import artifact_parity, parity_images, torch_parity
from coatnet_edge.hashing import sha256_file
from coatnet_edge.manifest import write_manifest
from coatnet_edge.models.coatnet import export_mode

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17


def export_onnx(model: nn.Module, path: str | Path, *, image_size: int, batch_size: int = 1,
                dynamic_batch: bool = True, opset: int = DEFAULT_OPSET, in_chans: int = 3) -> Path:
    """Write ``model`` as ONNX at ``path`` (atomically) and run ``onnx.checker`` on it."""
    import onnx

    if opset < 17:
        raise CoatnetEdgeError(f"opset {opset} is too old", fix="use --opset 17 or newer (LayerNormalization)")
    path = Path(path)
    dummy = torch.zeros(batch_size, in_chans, image_size, image_size)
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with atomic_path(path) as tmp, export_mode(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about python-int shapes is expected here
        torch.onnx.export(model, (dummy,), str(tmp), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes=dynamic_axes, do_constant_folding=True)
        graph = onnx.load(str(tmp))
        if _drop_initializer_identities(graph.graph):
            onnx.save(graph, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
    return path


def _drop_initializer_identities(graph) -> int:
    """Remove the Identity nodes the exporter adds for shared weights, so every op reads its weight
    directly (quantizers and TensorRT's Q/DQ fusion look for an initializer on the weight input)."""
    initializers = {init.name for init in graph.initializer}
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.input[0] in initializers}
    if not alias:
        return 0
    graph_outputs = {o.name for o in graph.output}
    keep = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in alias
                                          and n.output[0] not in graph_outputs)]
    for node in keep:
        for i, name in enumerate(node.input):
            if name in alias and name not in graph_outputs:
                node.input[i] = alias[name]
    del graph.node[:]
    graph.node.extend(keep)
    return len(alias)


def export_fp32_onnx(loaded: Any, out: str | Path, *, batch: int = 1, dynamic_batch: bool = True,
                     log: Any = print) -> tuple[Path, dict[str, Any]]:
    """``OUT/<name>.fp32.onnx`` with its manifest, parity against PyTorch measured and logged."""
    out = ensure_output_dir(out)
    channels, size, _ = shape = loaded.preprocess.input_shape
    path = export_onnx(loaded.net, out / f"{loaded.stem}.fp32.onnx", image_size=size, batch_size=batch,
                       dynamic_batch=dynamic_batch, in_chans=channels)
    parity = torch_parity(loaded.net, path, shape)
    log(f"{path}: ONNX Runtime vs PyTorch max |diff| {parity['max_abs']:.2e}, cosine {parity['cosine']:.7f} "
        f"({parity['method']})")
    source = loaded.source_file
    record = {"kind": "onnx", "precision": "fp32",
              "source": {"checkpoint": str(source) if source else None,
                         "sha256": sha256_file(source) if source else None, "variant": loaded.variant,
                         "read": loaded.provenance},
              "variant": loaded.variant, "preprocess": loaded.preprocess.to_dict(), "class_names": loaded.class_names,
              "opset": _opset(path), "input_shape": ["batch" if dynamic_batch else batch, *shape],
              "parity_vs_pytorch": parity}
    write_manifest(path, record)
    return path, record


def _opset(path: Path) -> int:
    return next(o.version for o in onnx.load(str(path), load_external_data=False).opset_import if o.domain in ("",))


TENSORRT_GRAPH_ROLE = "the graph TensorRT builds (strongly typed), measured in ONNX Runtime"


def write_mixed_fp16(job: ExportJob) -> ExportOutput:
    """``<stem>.fp16.onnx`` (from the FP32 graph) or ``<stem>.int8-fp16.onnx`` (from the Q/DQ graph): the
    float parts in FP16, what a strongly typed TensorRT engine runs; parity measured in ONNX Runtime."""
    started = onnx.load(str(job.onnx_path))
    converted = to_mixed_fp16(started)
    path = job.artifact_path(".onnx")
    with atomic_path(path) as tmp:
        onnx.save(converted, str(tmp))
    images = parity_images(job.source, job.image_shape)
    parity = artifact_parity(job.onnx_path, path, images, job.precision, backend="onnxruntime", device="CPU")
    details = {"opset": _opset(path), "float32_nodes": float32_nodes(converted), "role": TENSORRT_GRAPH_ROLE,
               "conversion": "onnxconverter-common float16, float32 I/O, float32 kept for: " + ", ".join(FP32_OPS)}
    return ExportOutput(path, [], parity, details)


def export_artifact(job: ExportJob) -> ExportOutput:
    """The ONNX backend's artifact: the graph itself (FP32 or Q/DQ INT8, already written with its manifest),
    or its mixed-precision FP16 copy."""
    if job.precision in ("fp16", "int8+fp16"):
        return write_mixed_fp16(job)
    return ExportOutput(job.onnx_path, [], dict(job.record.get("parity_vs_pytorch") or {}))
