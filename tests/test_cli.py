"""The console entry point as a user runs it: help that teaches, one-line errors, real results."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from coatnet_edge.models.checkpoint import save_checkpoint
from coatnet_edge.models.registry import create_model
from tests.conftest import HAS_TENSORRT, assert_one_line_error, run_cli, run_cli_process


def test_help_lists_verbs() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for verb in ("run", "models", "data", "info"):
        assert verb in proc.stdout


def test_models_lists_variants_with_counts() -> None:
    proc = run_cli("models", "--image-size", "64", "--num-classes", "12")
    assert proc.returncode == 0, proc.stderr
    assert "coatnet_0" in proc.stdout and "coatnet_pico" in proc.stdout and "FlopCounterMode" in proc.stdout


def test_models_refuses_bad_size() -> None:
    assert_one_line_error(run_cli("models", "--image-size", "100"), "input size 100", "fix:")


def test_info_of_checkpoint_and_errors(tmp_path: Path) -> None:
    model = create_model("coatnet_pico", image_size=64, num_classes=3)
    path = save_checkpoint(model, tmp_path / "m.safetensors", class_names=["a", "b", "c"])
    proc = run_cli("info", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "coatnet_pico, 3 classes, input 3x64x64" in proc.stdout and "classes: a, b, c" in proc.stdout

    path.write_bytes(path.read_bytes()[:100])
    assert_one_line_error(run_cli("info", str(path)), str(path), "fix:")
    pth = tmp_path / "m.pth"
    torch.save({"w": torch.zeros(1), "cfg": {1, 2}}, pth)  # a set: not allowed by weights_only
    assert_one_line_error(run_cli("info", str(pth), "--config", str(tmp_path / "none.json")), "none.json")


def test_debug_flag_shows_traceback(tmp_path: Path) -> None:
    proc = run_cli_process("--debug", "info", str(tmp_path / "missing.safetensors"))  # a real traceback on stderr
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_data_synth_and_scan(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    proc = run_cli("data", "synth", "--out", str(out), "--train-per-class", "3", "--val-per-class", "2")
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "dataset.json").read_text())
    assert len(info["classes"]) >= 10
    (out / "val" / info["classes"][0] / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    proc = run_cli("data", "scan", str(out / "val"))
    assert proc.returncode == 0, proc.stderr
    assert "1 skipped" in proc.stdout and "broken.png" in proc.stdout


def test_scan_errors(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("data", "scan", str(tmp_path / "nowhere")), "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run_cli("data", "scan", str(empty)), "empty")


# Measured by README command 1 on the built-in student, 1,200 val images (AMD EPYC Zen4, 2026-12-03): student top-1
# 0.9058; vs the student: ONNX Runtime INT8 0.9833 / cosine 0.997377, OpenVINO INT8 0.9842 / 0.997220, INT8+FP16
# graph 0.9825 / 0.997390, FP16 graph 0.9992 / 1.000000, OpenVINO FP16 IR (ran bf16) 0.9958 / 0.999986. Thresholds
# sit ~1 point (12 images) below for other CPUs (the student is trained on the machine); one flip is 0.08 %.
# Re-measured with --scheme auto (Intel Xeon AMX, 2026-12-03; transformer+smoothquant kept): ONNX Runtime INT8
# 0.9900 / 0.998397, OpenVINO INT8 0.9892 / 0.998411, INT8+FP16 graph 0.9842 / 0.998254.
# Re-measured with transformer+shift among the candidates (Intel Xeon AMX, 2026-12-06; it was kept): ONNX Runtime
# INT8 0.9875 / 0.998197, OpenVINO INT8 0.9875 / 0.997830, INT8+FP16 graph 0.9858 / 0.998179.
INT8_AGREEMENT, INT8_COSINE = 0.973, 0.995


def test_builtin_recipe_end_to_end(default_run: tuple) -> None:
    """README command 1: the built-in recipe, every stage real, table with FP32, ONNX INT8 and OpenVINO INT8."""
    run, proc = default_run
    record = json.loads((run / "run.json").read_text())
    assert set(record["stages"]) >= {"data", "distill", "onnx", "quantize", "openvino-fp32", "openvino-fp16",
                                     "openvino-int8", "onnxruntime-int8", "compare"}
    doc = json.loads((run / "compare" / "compare.json").read_text())
    accuracy = {(r["backend"], r["precision"], Path(r["artifact"]).name): r for r in doc["accuracy"]}
    student = accuracy[("pytorch", "fp32", "student.safetensors")]
    assert student["images"] == 1200 and student["top1"] > 0.88  # distilled from the trained teacher
    # the OpenVINO target keeps bf16 float parts only where they measured faster on this CPU: the row must
    # carry the label of what its export chose (int8 = f32 float parts), whichever it was
    ov_hint = json.loads((run / "openvino-int8" / "student.int8.xml.manifest.json").read_text())
    ov_int8 = {"f32": "int8", "bf16": "int8+bf16"}[ov_hint["inference_precision_hint"]]
    for key in (("onnxruntime", "int8", "student.int8.onnx"), ("openvino", ov_int8, "student.int8.xml"),
                ("onnxruntime", "int8+fp16", "student.int8-fp16.onnx"),
                ("onnxruntime", "int8", "student.int8.ort.onnx")):
        assert accuracy[key]["vs_reference_top1_agreement"] >= INT8_AGREEMENT, (key, accuracy[key])
        assert accuracy[key]["vs_reference_cosine"] >= INT8_COSINE, (key, accuracy[key])
        assert abs(accuracy[key]["top1"] - student["top1"]) < 0.015, key
    assert accuracy[("onnxruntime", "fp32", "student.fp32.onnx")]["vs_reference_max_abs"] < 1e-4
    assert accuracy[("onnxruntime", "fp16", "student.fp16.onnx")]["vs_reference_top1_agreement"] >= 0.997
    ov_fp16 = next(r for k, r in accuracy.items() if k[0] == "openvino" and k[2] == "student.fp16.xml")
    assert ov_fp16["vs_reference_top1_agreement"] >= 0.99 and ov_fp16["vs_reference_cosine"] >= 0.9999
    assert "TensorRT builds" in (run / "compare" / "compare.md").read_text()
    assert sorted({r["batch"] for r in doc["latency"]}) == [1, 8]
    if not HAS_TENSORRT:
        skipped = [line for line in proc.stdout.splitlines() if line.startswith("[tensorrt-")
                   and "skipped: TensorRT is not installed" in line]
        assert len(skipped) == 3, proc.stdout
        assert (run / "tensorrt-int8" / "student.int8.trtexec.sh").is_file()
    else:
        assert "student.int8.engine" in proc.stdout and (run / "tensorrt-int8" / "student.int8.engine").is_file()
    manifest = json.loads((run / "onnx" / "student.fp32.onnx.manifest.json").read_text())
    assert len(manifest["sha256"]) == 64 and manifest["preprocess"]["image_size"] == 64
    assert manifest["versions"]["onnxruntime"] and manifest["parity_vs_pytorch"]["max_abs"] < 1e-4


def test_exit_codes_and_streams_of_the_real_console_script(tmp_path: Path) -> None:
    """The other tests call ``main`` in-process; this one proves what a shell sees from a real process:
    0 and the result on stdout, 2 and one line on stderr for a bad input or a bad option."""
    ok = run_cli_process("models", "--image-size", "64")
    assert ok.returncode == 0 and "coatnet_pico" in ok.stdout and ok.stderr.strip() == ""
    missing = run_cli_process("info", str(tmp_path / "gone.safetensors"))
    assert missing.returncode == 2 and missing.stdout == ""
    assert_one_line_error(missing, "gone.safetensors", "fix:")
    usage = run_cli_process("export", "--backend", "tflite")
    assert usage.returncode == 2
    assert_one_line_error(usage, "'tflite' is not one of")
