"""ONNX Runtime CPU INT8 graph (``--backend onnxruntime --int8``): the graph the ONNX Runtime target kept
by measurement (``calibration/onnxruntime_int8.py``: ONNX Runtime's own u8-activation QDQ graph with GELU as
one op, or the Q/DQ graph when that measures better), written as ``<name>.int8.ort.onnx`` so it never
shadows the Q/DQ graph TensorRT builds from."""

from __future__ import annotations

from typing import Any

from coatnet_edge.atomic import atomic_path
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.export.job import ExportJob, ExportOutput
from coatnet_edge.export.parity import artifact_parity, parity_images


def export_artifact(job: ExportJob) -> ExportOutput:
    import onnx

    if job.precision != "int8":
        raise CoatnetEdgeError(f"--backend onnxruntime builds INT8 only, not {job.precision}",
                               fix="use --backend onnx for FP32 / FP16 graphs")
    prepared = job.prepared
    model: Any = prepared.model if prepared is not None and prepared.model is not None else onnx.load(
        str(job.onnx_path))
    path = job.out / f"{job.stem}.int8.ort.onnx"
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
        onnx.checker.check_model(str(tmp))
    reference = prepared.reference_onnx if prepared is not None else job.onnx_path
    parity = artifact_parity(reference, path, parity_images(job.source, job.image_shape), "int8",
                             backend="onnxruntime", device="CPU")
    details: dict[str, Any] = {"device": "CPU"}
    if prepared is not None:
        details["onnxruntime_int8"] = prepared.record
    return ExportOutput(path, [], parity, details)
