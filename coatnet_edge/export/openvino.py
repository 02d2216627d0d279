"""OpenVINO IR (.xml + .bin) from an ONNX file: FP32, FP16 (compressed weights) or INT8 (from Q/DQ).

The INT8 IR is the Q/DQ ONNX converted as is: OpenVINO turns each QuantizeLinear/DequantizeLinear
pair into a FakeQuantize and runs the quantized layers in INT8 on CPU, so the quantization done
once (NNCF PTQ or QAT) is the one every backend runs. The IR is compiled at export time as a check.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from coatnet_edge.atomic import ensure_output_dir
from coatnet_edge.errors import CoatnetEdgeError, MissingDependencyError
from coatnet_edge.export.job import ExportJob, ExportOutput
from coatnet_edge.export.parity import artifact_parity, parity_images

PRECISIONS = ("fp32", "fp16", "int8")


def export_openvino(onnx_path: str | Path, xml_path: str | Path, *, precision: str = "fp32",
                    device: str = "CPU") -> Path:
    """Convert ``onnx_path`` to IR at ``xml_path`` (``.bin`` beside it), both renamed in when complete."""
    try:
        import openvino as ov
    except ImportError:
        raise MissingDependencyError("openvino", hint="pip install openvino") from None
    if precision not in PRECISIONS:
        raise CoatnetEdgeError(f"unknown OpenVINO precision '{precision}'", fix=f"use one of: {', '.join(PRECISIONS)}")
    onnx_path, xml_path = Path(onnx_path), Path(xml_path)
    if xml_path.suffix != ".xml":
        raise CoatnetEdgeError("an OpenVINO IR path must end in .xml", path=xml_path, fix="e.g. model.int8.xml")
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as err:
        raise CoatnetEdgeError(f"OpenVINO cannot convert it ({str(err).splitlines()[0][:200]})", path=onnx_path,
                               fix="check the ONNX file with `python -m onnx.checker`") from None
    out_dir = ensure_output_dir(xml_path.parent)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{xml_path.stem}.") as tmp:
        tmp_xml = Path(tmp) / xml_path.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=precision == "fp16")
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
    """The IR of ``job``'s graph, with its parity against that graph in ONNX Runtime."""
    xml = export_openvino(job.onnx_path, job.artifact_path(".xml"), precision=job.precision, device=job.device)
    parity = artifact_parity(job.onnx_path, xml, parity_images(job.source, job.image_shape), job.precision,
                             backend="openvino", device=job.device)
    return ExportOutput(xml, [xml.with_suffix(".bin")], parity, {"device": job.device})
