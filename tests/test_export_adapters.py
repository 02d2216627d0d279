"""`coatnet-edge export`: every artifact that can be built here is built, run and checked; TensorRT
adapters are tested where TensorRT and a GPU exist and skip with the reason elsewhere."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from coatnet_edge.data.sampling import build_calibration_set
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.export.tensorrt import EngineOptions, trtexec_command
from coatnet_edge.metrics import compare_logits
from coatnet_edge.models.checkpoint import load_checkpoint
from coatnet_edge.runtime import load_runner
from tests.conftest import HAS_TENSORRT, assert_one_line_error, run_cli
from tests.graphs import constants

HAS_TORCH_TENSORRT = importlib.util.find_spec("torch_tensorrt") is not None


def _manifest(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".manifest.json").read_text())


STAGES = {"student.fp32.onnx": "onnx", "student.fp16.onnx": "onnx-fp16", "student.int8.onnx": "quantize",
          "student.int8-fp16.onnx": "onnx-int8-fp16", "student.fp32.xml": "openvino-fp32",
          "student.fp16.xml": "openvino-fp16", "student.int8.xml": "openvino-int8"}


@pytest.fixture(scope="module")
def artifacts(default_run: tuple) -> dict[str, Path]:
    """The artifacts README command 1 built from its distilled student, by file name (IR .bin files included)."""
    run, _ = default_run
    return {path.name: path for name, stage in STAGES.items() for path in (run / stage).glob(Path(name).stem + ".*")
            if path.name.startswith(name) or path.suffix == ".bin"}


@pytest.fixture(scope="module")
def val_images(default_run: tuple) -> np.ndarray:
    """The run's 1,200 validation images (one flip: 0.08 %)."""
    run, _ = default_run
    _, info = load_checkpoint(run / "distill" / "student.safetensors")
    return build_calibration_set(run / "data" / "builtin" / "val", info.preprocess, size=1200, seed=1).images


def test_onnx_fp32_has_parity_with_pytorch_in_its_manifest(artifacts: dict) -> None:
    manifest = _manifest(artifacts["student.fp32.onnx"])
    parity = manifest["parity_vs_pytorch"]
    assert parity["max_abs"] < 1e-4 and parity["cosine"] > 0.999999 and "PyTorch" in parity["method"]
    assert manifest["opset"] >= 17 and manifest["input_shape"] == ["batch", 3, 64, 64]
    assert len(manifest["source"]["sha256"]) == 64 and manifest["versions"]["onnx"]


def _cpu_float_math(hint: str) -> str:
    """What OpenVINO's CPU plugin can run for a float precision hint, from its own capability list:
    f16 needs FP16 math (AVX512-FP16 / AMX-FP16), else bf16 where the CPU has it, else f32."""
    import openvino as ov

    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if hint == "f16" and "FP16" in caps:
        return "fp16"
    return "bf16" if hint in ("f16", "bf16") and "BF16" in caps else "fp32"


# Tolerances by the float math that really ran, vs the FP32 ONNX on the run's 1,200 val images: f32 measured
# max-abs 7e-6; bf16 (AMD EPYC Zen4) 0.087 / cosine 0.9999855 / agreement 0.9958 -> 0.2 / 0.99995 / 0.99; FP16
# weights decompressed to f32 (AVX2-only CPUs) measured 0.0047 on 48 images -> 2e-2; f16 math (AMX-FP16 Xeon) as bf16.
_TOLERANCES = {("fp32", "fp32"): (1e-4, 0.999999, 1.0), ("fp16", "fp16"): (2e-1, 0.99995, 0.99),
               ("fp16", "bf16"): (2e-1, 0.99995, 0.99), ("fp16", "fp32"): (2e-2, 0.99999, 0.997)}


@pytest.mark.parametrize(("name", "hint"), [("fp32", "f32"), ("fp16", "f16")])
def test_openvino_float_irs_match_onnx(artifacts: dict, val_images: np.ndarray, name: str, hint: str) -> None:
    xml = artifacts[f"student.{name}.xml"]
    assert xml.with_suffix(".bin").is_file()
    manifest = _manifest(xml)
    assert manifest["kind"] == "openvino" and manifest["precision"] == name
    assert set(manifest["files_bytes"]) == {xml.name, xml.with_suffix(".bin").name}
    runner = load_runner(xml, precision=name)
    ran = _cpu_float_math(hint)
    # the row label is the precision that really ran (an FP16 IR on a CPU without FP16 math runs bf16)
    assert (runner.info.precision, runner.info.artifact_precision) == (ran, name), runner.info
    ref = load_runner(artifacts["student.fp32.onnx"]).run(val_images)
    agreement = compare_logits(ref, runner.run(val_images))
    max_abs, cosine, top1 = _TOLERANCES[(name, ran)]
    assert agreement.max_abs < max_abs and agreement.cosine > cosine and agreement.top1_agreement >= top1, (ran,
                                                                                                         agreement)
    if name == "fp16":  # compressed weights: about half the FP32 IR
        assert xml.with_suffix(".bin").stat().st_size < 0.6 * (artifacts["student.fp32.bin"]).stat().st_size


def _int8_weighted_layers(onnx_path: Path) -> int:
    """Conv/MatMul/Gemm nodes of a Q/DQ graph whose weight is a dequantized constant (the INT8 layers)."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    known = constants(graph)
    dequantized_constants = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in known}
    return sum(1 for n in graph.node if n.op_type in ("Conv", "MatMul", "Gemm") and len(n.input) > 1
               and n.input[1] in dequantized_constants)


def _executed_precisions(xml: Path) -> dict[str, list[str]]:
    """What OpenVINO's CPU plugin really runs: layer type -> runtime precision of each compiled layer."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(xml), "CPU")
    found: dict[str, list[str]] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        found.setdefault(info["layerType"].astype(str), []).append(info["runtimePrecision"].astype(str))
    return found


def test_openvino_int8_ir_executes_its_quantized_layers_in_int8(artifacts: dict, tmp_path: Path) -> None:
    """Not just close to FP32 (an FP32 IR under an INT8 name would be closer): the Q/DQ graph converted
    (``--openvino-candidate qdq``, no calibration again) runs one integer Convolution / FullyConnected per quantized
    layer of that graph; the IR the run kept (whichever path made it) runs at least as many.
    Measured on the built-in student: 28 quantized layers -> 15 u8 Convolutions + 13 i8 FullyConnected."""
    proc = run_cli("export", "--model", str(artifacts["student.int8.onnx"]), "--backend", "openvino",
                   "--int8", "--openvino-candidate", "qdq", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "student.int8.xml").is_file() and not list(tmp_path.glob("*.onnx"))
    assert _manifest(tmp_path / "student.int8.xml")["openvino_int8"]["chosen"] == "qdq"

    def integer_layers(xml: Path) -> list[str]:
        executed = _executed_precisions(xml)
        return [p for kind in ("Convolution", "FullyConnected") for p in executed.get(kind, []) if p in ("i8", "u8")]

    expected = _int8_weighted_layers(artifacts["student.int8.onnx"])
    assert expected >= 25 and len(integer_layers(tmp_path / "student.int8.xml")) == expected
    assert len(integer_layers(artifacts["student.int8.xml"])) >= expected
    assert not integer_layers(artifacts["student.fp32.xml"])


# INT8 vs FP32 on the run's 1,200 val images, measured (AMD EPYC Zen4): OpenVINO IR 0.9842 / cosine 0.99722, the
# Q/DQ ONNX in ONNX Runtime 0.9833 / 0.99738 -> 0.973 / 0.995 (~1 point, 12 images, below: other CPUs train
# a slightly different student).
@pytest.mark.parametrize(("name", "backend"), [("student.int8.xml", "openvino"), ("student.int8.onnx", "onnxruntime")])
def test_int8_artifacts_agree_with_fp32(artifacts: dict, val_images: np.ndarray, name: str, backend: str) -> None:
    path = artifacts[name]
    if backend == "openvino":
        manifest = _manifest(path)
        assert manifest["calibration"]["size"] == 300 and "images of" in manifest["parity_vs_onnx"]["method"]
    ref = load_runner(artifacts["student.fp32.onnx"]).run(val_images)
    agreement = compare_logits(ref, load_runner(path, backend=backend).run(val_images))
    assert agreement.top1_agreement >= 0.973 and agreement.cosine >= 0.995, agreement


# Measured on the run's 1,200 val images (AMD EPYC Zen4): FP16 graph vs FP32 max-abs 0.0055 (ORT) / 0.0080
# (OpenVINO, weights decompressed to f32), cosine 0.99999991, agreement 0.9992 -> 2e-2 / 0.99999 / 0.997;
# INT8+FP16 vs INT8 cosine 0.99915, agreement 0.9900 -> 0.998 / 0.98.
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_fp16_graph_is_fp16_and_matches_fp32(artifacts: dict, val_images: np.ndarray, runtime: str) -> None:
    import onnx

    from coatnet_edge.export.fp16 import FP32_OPS

    path = artifacts["student.fp16.onnx"]
    model = onnx.load(str(path))
    dtype = {i.name: i.data_type for i in model.graph.initializer}
    weights = [n.input[1] for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm") and n.input[1] in dtype]
    assert weights and all(dtype[w] == onnx.TensorProto.FLOAT16 for w in weights)  # the compute is FP16
    fp32 = {name for name, t in dtype.items() if t == onnx.TensorProto.FLOAT}  # only what the kept ops read
    assert all(n.op_type in FP32_OPS for n in model.graph.node if fp32 & set(n.input))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 I/O
    kept = {n.op_type for n in model.graph.node if n.op_type in FP32_OPS}
    assert {"LayerNormalization", "Softmax"} <= kept
    manifest = _manifest(path)
    assert manifest["precision"] == "fp16" and "TensorRT" in manifest["role"] and manifest["float32_nodes"]
    ref = load_runner(artifacts["student.fp32.onnx"]).run(val_images)
    agreement = compare_logits(ref, load_runner(path, backend=runtime, precision="fp32").run(val_images))
    assert agreement.max_abs < 2e-2 and agreement.cosine > 0.99999 and agreement.top1_agreement >= 0.997, agreement


def test_int8_fp16_graph_keeps_its_quantizers_in_fp16(artifacts: dict, val_images: np.ndarray) -> None:
    import onnx
    from onnx import numpy_helper

    path = artifacts["student.int8-fp16.onnx"]
    model = onnx.load(str(path))
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 19
    scales = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert qdq and all(scales[n.input[1]].dtype == np.float16 for n in qdq if n.input[1] in scales)
    int8 = load_runner(artifacts["student.int8.onnx"]).run(val_images)
    agreement = compare_logits(int8, load_runner(path).run(val_images))
    assert agreement.cosine > 0.998 and agreement.top1_agreement >= 0.98, agreement


def test_dynamic_batch_program_covers_its_batch_range() -> None:
    """Torch-TensorRT compiles this torch.export program: it must run every batch the manifest claims."""
    import torch

    from coatnet_edge.export.torch_tensorrt import TypedModel, export_program
    from coatnet_edge.models.coatnet import export_mode

    model, _ = load_checkpoint("builtin:student")
    options = EngineOptions(precision="fp32", min_batch=1, opt_batch=1, max_batch=16, image_size=64)
    with export_mode(model.eval()), torch.no_grad():
        program = export_program(TypedModel(model, torch.float32), options, device="cpu")
        for batch in (1, 3, 16):
            x = torch.randn(batch, 3, 64, 64)
            assert torch.allclose(program.module()(x), model(x), atol=1e-5)
    bounds = next(iter(program.range_constraints.values()))
    assert (bounds.lower, bounds.upper) == (1, 16)


def test_interrupted_exports_leave_nothing_at_the_final_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnx
    import openvino as ov

    from coatnet_edge.pipeline.export import export_model

    def boom(*args, **kwargs):
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(onnx.checker, "check_model", boom)
    with pytest.raises(RuntimeError, match="killed"):
        export_model("builtin:student", out=tmp_path, backend="onnx", log=lambda s: None)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    export_model("builtin:student", out=tmp_path, backend="onnx", log=lambda s: None)
    monkeypatch.setattr(ov, "save_model", lambda *a, **k: (Path(a[1]).write_text("<half"), boom())[1])
    with pytest.raises(RuntimeError, match="killed"):
        export_model("builtin:student", out=tmp_path, backend="openvino", log=lambda s: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["builtin_student.fp32.onnx",
                                                          "builtin_student.fp32.onnx.manifest.json"]


@pytest.mark.parametrize("major", [10, 11])
def test_trtexec_line_is_strongly_typed_for_each_tensorrt(major: int) -> None:
    """TensorRT 11 removed --fp16/--int8; 10.x builds the same graph with --stronglyTyped."""
    options = EngineOptions(precision="int8", min_batch=1, opt_batch=8, max_batch=32, image_size=224)
    line = trtexec_command("m.int8.onnx", "m.int8.engine", options, major)
    assert line.startswith("trtexec --onnx=m.int8.onnx --saveEngine=m.int8.engine")
    for part in ("--minShapes=images:1x3x224x224", "--optShapes=images:8x3x224x224",
                 "--maxShapes=images:32x3x224x224", "--memPoolSize=workspace:2048M"):
        assert part in line
    assert ("--stronglyTyped" in line) == (major == 10)
    assert "--fp16" not in line.split() and "--int8" not in line.split()
    with pytest.raises(CoatnetEdgeError, match="min <= opt <= max"):
        EngineOptions(min_batch=4, opt_batch=2)


def test_no_weak_typing_api_is_left() -> None:
    """BuilderFlag.FP16/INT8, INT8 calibrators and precision constraints are gone in TensorRT 11."""
    import ast

    used = set()
    for path in (Path(__file__).parents[1] / "coatnet_edge").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):  # code only: docstrings may name what was removed
            if isinstance(node, ast.Attribute):
                used.add(f"{getattr(node.value, 'attr', getattr(node.value, 'id', ''))}.{node.attr}")
                used.add(node.attr)
            elif isinstance(node, ast.keyword) and node.arg:
                used.add(node.arg)
    removed = {"BuilderFlag.FP16", "BuilderFlag.INT8", "int8_calibrator", "OBEY_PRECISION_CONSTRAINTS",
               "PREFER_PRECISION_CONSTRAINTS", "IInt8EntropyCalibrator2", "enabled_precisions"}
    assert not removed & used, removed & used


@pytest.mark.parametrize(("flags", "expected"), [({"STRONGLY_TYPED": 1}, 1 << 1), ({}, 0)])
def test_network_flags_follow_the_installed_tensorrt(flags: dict, expected: int) -> None:
    """10.x names STRONGLY_TYPED (set it); 11.x may not name it (strong typing is its only mode)."""
    from types import SimpleNamespace

    from coatnet_edge.export.tensorrt import network_flags, tensorrt_major

    assert network_flags(SimpleNamespace(NetworkDefinitionCreationFlag=SimpleNamespace(**flags))) == expected
    assert tensorrt_major(SimpleNamespace(__version__="11.4.0.106")) == 11
    with pytest.raises(CoatnetEdgeError, match="outside the tested range"):
        tensorrt_major(SimpleNamespace(__version__="8.6.1"))


def test_device_kit_carries_the_graph_that_states_the_precision(artifacts: dict, tmp_path: Path) -> None:
    from coatnet_edge.export.fp16 import graph_precision
    from coatnet_edge.export.tensorrt import write_device_kit

    for source, precision in (("fp32", "fp16"), ("int8", "int8"), ("int8", "int8+fp16")):
        folder = tmp_path / precision
        folder.mkdir()
        kit = write_device_kit(artifacts[f"student.{source}.onnx"], folder, precision, 32)
        assert graph_precision(kit["onnx"]) == precision
        script = kit["trtexec"].read_text()
        assert f"--onnx={kit['onnx'].name}" in script and "--stronglyTyped" in script and "--fp16" not in script
        assert _manifest(kit["onnx"])["input_shape"][-1] == 64


@pytest.mark.skipif(not HAS_TENSORRT, reason="TensorRT is not installed (NVIDIA GPU machines: "
                                              "pip install 'coatnet-edge[tensorrt]'; Jetson: JetPack)")
def test_tensorrt_engines_run_like_their_graphs(artifacts: dict, val_images: np.ndarray, tmp_path: Path) -> None:
    """Where TensorRT runs: FP16, INT8 and INT8+FP16 engines through the TensorRT runner, each against the very
    graph it was built from run in ONNX Runtime, at several batches inside the engine's profile."""
    from coatnet_edge.pipeline.export import export_model

    for model, precision in (("builtin:student", "fp16"), (str(artifacts["student.int8.onnx"]), "int8"),
                             (str(artifacts["student.int8.onnx"]), "int8+fp16")):
        result = export_model(model, out=tmp_path / precision, backend="tensorrt", precision=precision, max_batch=16,
                              log=lambda s: None)
        assert result.artifact.suffix == ".engine" and result.manifest["engine"]["max_batch"] == 16
        built_from = tmp_path / precision / result.manifest["graph"]  # a converted graph lies next to the engine
        graph = built_from if built_from.is_file() else Path(model)
        engine = load_runner(result.artifact)
        for batch in (1, 16):
            agreement = compare_logits(load_runner(graph).run(val_images[:batch]), engine.run(val_images[:batch]))
            assert agreement.cosine > 0.999, (precision, batch, agreement)
        assert any(p.name.endswith(".trtexec.sh") for p in result.extra_files)


@pytest.mark.skipif(not HAS_TORCH_TENSORRT, reason="torch-tensorrt is not installed (NVIDIA GPU machines: "
                                                    "pip install 'coatnet-edge[tensorrt]')")
def test_torch_tensorrt_fp16_and_int8_compile(tmp_path: Path, tiny_dataset: Path) -> None:
    from coatnet_edge.pipeline.export import export_model

    result = export_model("builtin:student", out=tmp_path, backend="torch-tensorrt", precision="fp16",
                          log=lambda s: None)
    assert result.artifact.suffix == ".ep" and result.artifact.stat().st_size > 0
    if importlib.util.find_spec("modelopt") is None:
        pytest.skip("nvidia-modelopt is not installed (Torch-TensorRT's INT8 route needs it)")
    result = export_model("builtin:student", out=tmp_path, backend="torch-tensorrt", precision="int8",
                          calib_dir=tiny_dataset / "train", calib_size=24, log=lambda s: None)
    assert result.artifact.name.endswith(".int8.ep")


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_tensorrt_missing_says_how_to_get_it_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert_one_line_error(run_cli("export", "--model", "builtin:student", "--backend", "tensorrt", "--fp16",
                                  "--out", str(out)), "tensorrt is not installed", "JetPack")
    assert not out.exists()


@pytest.mark.parametrize(("args", "needles"), [
    (["--backend", "tflite"], ["'tflite' is not one of", "openvino", "tensorrt"]),
    (["--int8"], ["--int8 needs calibration images", "--calib-dir"]),
    (["--batch", "0"], ["--batch 0", "1 <= --batch <= --max-batch"]),
    (["--backend", "openvino", "--int8-fp16"], ["--int8+fp16 is not available for --backend openvino"]),
    (["--model", "missing.safetensors"], ["missing.safetensors"]),
])
def test_bad_export_requests_are_one_line_and_write_nothing(tmp_path: Path, args: list[str],
                                                            needles: list[str]) -> None:
    out = tmp_path / "out"
    model = [] if "--model" in args else ["--model", "builtin:student"]
    assert_one_line_error(run_cli("export", *model, *args, "--out", str(out)), *needles)
    assert not out.exists()


def test_output_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x")
    assert_one_line_error(run_cli("export", "--model", "builtin:student", "--out", str(target)),
                          str(target), "not a directory")
    assert target.read_text() == "x"


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _has_cuda(), reason="no CUDA GPU visible (the GPU-side parity check runs where one is)")
def test_cuda_pytorch_fp16_matches_fp32(val_images: np.ndarray) -> None:
    """The part of the TensorRT FP16 path a GPU without TensorRT can check: the model in CUDA FP16."""
    import torch

    model, _ = load_checkpoint("builtin:student")
    x = torch.from_numpy(val_images)
    with torch.no_grad():
        ref = model.eval()(x).numpy()
        half = model.cuda().half()(x.cuda().half()).float().cpu().numpy()
    agreement = compare_logits(ref, half)
    assert agreement.top1_agreement >= 0.97 and agreement.cosine > 0.999, agreement


def test_cpu_install_has_no_gpu_runtime_and_a_current_onnx() -> None:
    """nvidia-modelopt[onnx] would pull onnxruntime-gpu, cupy and onnx~=1.21 into a CPU install; the FP16
    pass comes from onnxconverter-common instead (export/fp16.py), so none of that may be installed here."""
    import importlib.metadata as metadata

    from packaging.version import Version

    names = {d.metadata["Name"].lower() for d in metadata.distributions()}
    assert not {n for n in names if n.startswith(("onnxruntime-gpu", "cupy"))}, names
    assert Version(metadata.version("onnx")) >= Version("1.22"), metadata.version("onnx")
