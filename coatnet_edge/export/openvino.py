"""OpenVINO IR (.xml + .bin) from an ONNX file: FP32, FP16 (compressed weights) or INT8.

The INT8 IR is the most faithful of the candidate paths measured in OpenVINO
(``calibration/openvino_int8.py``): the Q/DQ ONNX converted as is (each QuantizeLinear/DequantizeLinear
pair becomes a FakeQuantize), or NNCF run on the OpenVINO model itself from the same FP32 ONNX and
calibration images. Where the FP32 ONNX or the calibration images are not there any more (or the INT8
came from QAT), the Q/DQ graph is converted and the manifest says why. Every IR is compiled at export
time as a check.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from coatnet_edge.atomic import ensure_output_dir
from coatnet_edge.errors import CoatnetEdgeError, MissingDependencyError
from coatnet_edge.export.job import ExportJob, ExportOutput
from coatnet_edge.export.parity import artifact_parity, parity_images

PRECISIONS = ("fp32", "fp16", "int8")


def _openvino() -> Any:
    try:
        import openvino as ov
    except ImportError:
        raise MissingDependencyError("openvino", hint="pip install openvino") from None
    return ov


def export_openvino(onnx_path: str | Path, xml_path: str | Path, *, precision: str = "fp32",
                    device: str = "CPU") -> Path:
    """Convert ``onnx_path`` to IR at ``xml_path`` (``.bin`` beside it), both renamed in when complete."""
    ov = _openvino()
    if precision not in PRECISIONS:
        raise CoatnetEdgeError(f"unknown OpenVINO precision '{precision}'", fix=f"use one of: {', '.join(PRECISIONS)}")
    onnx_path = Path(onnx_path)
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as err:
        raise CoatnetEdgeError(f"OpenVINO cannot convert it ({str(err).splitlines()[0][:200]})", path=onnx_path,
                               fix="check the ONNX file with `python -m onnx.checker`") from None
    return save_ir(model, xml_path, compress_to_fp16=precision == "fp16", device=device)


def save_ir(model: Any, xml_path: str | Path, *, compress_to_fp16: bool = False, device: str = "CPU") -> Path:
    """Write an ``openvino.Model`` as IR, compiled for ``device`` as a check, renamed in when complete."""
    ov = _openvino()
    xml_path = Path(xml_path)
    if xml_path.suffix != ".xml":
        raise CoatnetEdgeError("an OpenVINO IR path must end in .xml", path=xml_path, fix="e.g. model.int8.xml")
    out_dir = ensure_output_dir(xml_path.parent)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{xml_path.stem}.") as tmp:
        tmp_xml = Path(tmp) / xml_path.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=compress_to_fp16)
        core = ov.Core()
        try:
            core.compile_model(core.read_model(str(tmp_xml)), device)
        except Exception as err:
            raise CoatnetEdgeError(f"the IR does not compile for {device} ({str(err).splitlines()[0][:200]})",
                                   path=xml_path, fix=f"available devices: {', '.join(core.available_devices)}") \
                from None
        # .bin first, .xml last: an .xml at the final name always has its weights beside it.
        shutil.move(str(tmp_xml.with_suffix(".bin")), str(xml_path.with_suffix(".bin")))
        shutil.move(str(tmp_xml), str(xml_path))
    return xml_path


def export_artifact(job: ExportJob) -> ExportOutput:
    """The IR of ``job``'s graph, with its parity against the ONNX graph it reproduces, in ONNX Runtime.

    INT8 with ``job.prepared`` (the model the OpenVINO INT8 selection kept): that model is saved, its parity
    taken against the graph it reproduces (FP32 ONNX for NNCF on the OpenVINO model, else the Q/DQ graph)."""
    prepared = job.prepared
    details: dict[str, Any] = {"device": job.device}
    reference = job.onnx_path
    if prepared is not None and prepared.model is not None:
        xml = save_ir(prepared.model, job.artifact_path(".xml"), device=job.device)
        reference = prepared.reference_onnx
    else:
        xml = export_openvino(job.onnx_path, job.artifact_path(".xml"), precision=job.precision, device=job.device)
    if prepared is not None:
        details.update(openvino_int8=prepared.record, inference_precision_hint=prepared.float_parts)
    parity = artifact_parity(reference, xml, parity_images(job.source, job.image_shape), job.precision,
                             backend="openvino", device=job.device)
    return ExportOutput(xml, [xml.with_suffix(".bin")], parity, details)
