"""The reliability suite: bad input to every verb, through the real console entry point.

This is the one place for how the toolkit meets bad input. Each case asserts what a user gets:
one line on stderr that names the offending file and says how to fix it, a non-zero exit, and no
partial artifact (the output asked for does not exist afterwards, no ``*.partial`` temp file is
left anywhere). Images in odd but valid formats (CMYK, 16-bit, grayscale, palette) are not bad
input: they are converted, and predict the same class as their RGB original.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import HAS_TENSORRT, assert_one_line_error, run_cli

STUDENT = Path(__file__).parents[1] / "coatnet_edge" / "assets" / "builtin_student.safetensors"


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx")
    proc = run_cli("export", "--model", "builtin:student", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out / "builtin_student.fp32.onnx"


@pytest.fixture(scope="module")
def one_image(tiny_dataset: Path) -> Path:
    return sorted((tiny_dataset / "val" / "star").iterdir())[0]


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".partial" in p.name]


def _expect_error(tmp_path: Path, args: list[str], *needles: str, absent: Path | None = None) -> str:
    proc = run_cli(*args)
    line = assert_one_line_error(proc, "fix:", *needles)
    if absent is not None:
        assert not absent.exists(), f"{absent} was left behind"
    assert not _leftovers(tmp_path), _leftovers(tmp_path)
    return line


# --- bad images ---------------------------------------------------------------------------------

def _zero_byte(path: Path) -> Path:
    path = path.with_suffix(".jpg")
    path.write_bytes(b"")
    return path


def _truncated_png(path: Path) -> Path:
    buffer = io.BytesIO()
    Image.new("RGB", (80, 80), (200, 10, 10)).save(buffer, format="PNG")
    path = path.with_suffix(".png")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def _truncated_jpeg(path: Path) -> Path:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path = path.with_suffix(".jpg")
    path.write_bytes(buffer.getvalue()[:300])
    return path


def _text_as_jpeg(path: Path) -> Path:
    path = path.with_suffix(".jpg")
    path.write_text("this is a shopping list, not a photo\n")
    return path


BAD_IMAGES: dict[str, Callable[[Path], Path]] = {"zero-byte": _zero_byte, "truncated-png": _truncated_png,
                                                 "truncated-jpeg": _truncated_jpeg, "text-as-jpeg": _text_as_jpeg}


@pytest.mark.parametrize("kind", list(BAD_IMAGES))
def test_predict_refuses_a_broken_image(kind: str, onnx_model: Path, tmp_path: Path) -> None:
    image = BAD_IMAGES[kind](tmp_path / "photo")
    _expect_error(tmp_path, ["predict", "--model", str(onnx_model), str(image)], image.name)


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "L", "P", "RGBA"])
def test_odd_but_valid_image_formats_are_converted(mode: str, onnx_model: Path, one_image: Path,
                                                    tmp_path: Path) -> None:
    with Image.open(one_image) as img:
        rgb = img.convert("RGB")
    if mode == "I;16":  # 16-bit grayscale, as medical / industrial cameras write it
        converted = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
        converted.save(tmp_path / "x.png")
        path = tmp_path / "x.png"
        reference = rgb.convert("L").convert("RGB")
    else:
        path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
        rgb.convert(mode).save(path, quality=100) if mode == "CMYK" else rgb.convert(mode).save(path)
        reference = rgb if mode != "L" else rgb.convert("L").convert("RGB")
    reference.save(tmp_path / "ref.png")
    from coatnet_edge import predict

    odd, ref = predict(onnx_model, [path, tmp_path / "ref.png"], top_k=1)
    top = [odd["top"][0][0], ref["top"][0][0]]
    assert top[0] == top[1], (mode, top)


# --- bad folders --------------------------------------------------------------------------------

def test_calibration_from_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _expect_error(tmp_path, ["quantize", "--model", "builtin:student", "--calib-dir", str(tmp_path / "empty"),
                             "--out", str(tmp_path / "q")], "empty", absent=tmp_path / "q")


def test_calibration_folder_of_only_corrupt_images(tmp_path: Path) -> None:
    folder = tmp_path / "calib"
    folder.mkdir()
    for k in range(12):
        _text_as_jpeg(folder / f"img{k}")
    _expect_error(tmp_path, ["quantize", "--model", "builtin:student", "--calib-dir", str(folder),
                             "--out", str(tmp_path / "q")], "usable calibration images", "--calib-dir",
                  absent=tmp_path / "q")


def _corrupt_folder(folder: Path) -> Path:
    folder.mkdir()
    for k in range(12):
        _text_as_jpeg(folder / f"img{k}")
    return folder


def test_an_unreadable_evaluation_folder_names_the_evaluation_options(onnx_model: Path, tiny_dataset: Path,
                                                                      tmp_path: Path) -> None:
    """The error names the option of the purpose at hand: `evaluate --data`, `quantize --eval-dir`, never
    --calib-dir for images that are not calibration images."""
    folder = _corrupt_folder(tmp_path / "val")
    line = _expect_error(tmp_path, ["evaluate", str(onnx_model), "--data", str(folder), "--json",
                                    str(tmp_path / "e.json")], "usable evaluation images", "--data",
                         absent=tmp_path / "e.json")
    assert "--calib" not in line, line
    line = _expect_error(tmp_path, ["quantize", "--model", "builtin:student", "--calib-dir",
                                    str(tiny_dataset / "train"), "--eval-dir", str(folder), "--out",
                                    str(tmp_path / "q")], "usable evaluation images", "--eval-dir",
                         absent=tmp_path / "q")
    assert "--calib" not in line, line


def test_calibration_images_far_smaller_than_the_model_input(tmp_path: Path) -> None:
    folder = tmp_path / "thumbs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(20):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"t{k}.png")
    _expect_error(tmp_path, ["quantize", "--model", "builtin:student", "--calib-dir", str(folder),
                             "--out", str(tmp_path / "q")], "thumbs", absent=tmp_path / "q")


def test_evaluation_on_an_empty_folder(onnx_model: Path, tmp_path: Path) -> None:
    (tmp_path / "val").mkdir()
    _expect_error(tmp_path, ["evaluate", str(onnx_model), "--data", str(tmp_path / "val"),
                             "--json", str(tmp_path / "e.json")], "val", absent=tmp_path / "e.json")


def _three_classes(root: Path, tiny_dataset: Path) -> Path:
    for name in ("star", "ring", "plus"):
        shutil.copytree(tiny_dataset / "train" / name, root / name)
    return root


def test_distill_on_a_folder_with_another_class_count(tiny_dataset: Path, tmp_path: Path) -> None:
    data = _three_classes(tmp_path / "three", tiny_dataset)
    _expect_error(tmp_path, ["distill", "--data", str(data), "--teacher", "builtin:teacher", "--epochs", "1",
                             "--out", str(tmp_path / "d")], "three", "12 classes", absent=tmp_path / "d")


def test_evaluate_with_a_folder_of_other_classes(onnx_model: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    data = _three_classes(tmp_path / "three", tiny_dataset)
    _expect_error(tmp_path, ["evaluate", str(onnx_model), "--data", str(data), "--json", str(tmp_path / "e.json")],
                  "three", absent=tmp_path / "e.json")


def test_train_needs_labels(tmp_path: Path, tiny_dataset: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for k, path in enumerate(sorted((tiny_dataset / "train" / "star").iterdir())[:12]):
        shutil.copy(path, flat / f"{k}.png")
    _expect_error(tmp_path, ["train", "--data", str(flat), "--epochs", "1", "--out", str(tmp_path / "t")], "flat",
                  absent=tmp_path / "t")


# --- bad checkpoints and model files -------------------------------------------------------------

class _Payload:
    """Unpickling this would create a marker file: the toolkit must never unpickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_checkpoint_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    bad = tmp_path / "model.pt"
    bad.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}))
    _expect_error(tmp_path, ["export", "--model", str(bad), "--out", str(tmp_path / "x")], "model.pt",
                  absent=tmp_path / "x")
    assert not marker.exists(), "the pickle was executed"


def test_truncated_safetensors_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(STUDENT.read_bytes()[:5000])
    _expect_error(tmp_path, ["export", "--model", str(bad), "--out", str(tmp_path / "x")], "cut.safetensors",
                  absent=tmp_path / "x")


def test_zero_byte_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "empty.safetensors"
    bad.write_bytes(b"")
    _expect_error(tmp_path, ["info", str(bad)], "empty.safetensors")


def test_checkpoint_whose_config_does_not_fit_its_weights(tmp_path: Path) -> None:
    import torch

    from coatnet_edge.models.checkpoint import read_checkpoint_info

    bad = tmp_path / "mismatch.pth"
    torch.save(_student_state(), bad)  # the student's weights ...
    config = tmp_path / "config.json"  # ... with the teacher's (wider) architecture
    teacher = STUDENT.with_name("builtin_teacher.safetensors")
    config.write_text(json.dumps(read_checkpoint_info(teacher).to_dict()))
    _expect_error(tmp_path, ["info", str(bad), "--config", str(config)], "mismatch.pth")


def _student_state() -> dict:
    from safetensors.torch import load_file

    return load_file(str(STUDENT))


def test_truncated_onnx_file(onnx_model: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(onnx_model.read_bytes()[:4000])
    shutil.copy(onnx_model.with_name(onnx_model.name + ".manifest.json"), tmp_path / "cut.onnx.manifest.json")
    _expect_error(tmp_path, ["evaluate", str(bad), "--data", str(tiny_dataset / "val"), "--limit", "12"],
                  "cut.onnx")


def test_text_file_named_onnx(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_text("not a protobuf")
    _expect_error(tmp_path, ["benchmark", str(bad), "--runs", "2", "--out", str(tmp_path / "b.json")],
                  "model.onnx", absent=tmp_path / "b.json")


def test_onnx_without_its_manifest_to_export(onnx_model: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.onnx"
    shutil.copy(onnx_model, bare)
    _expect_error(tmp_path, ["export", "--model", str(bare), "--backend", "openvino", "--out", str(tmp_path / "ov")],
                  "bare.onnx", "manifest", absent=tmp_path / "ov")


def test_unknown_timm_model_name(tmp_path: Path) -> None:
    _expect_error(tmp_path, ["export", "--model", "timm:coatnet_9_rw_224", "--weights", str(STUDENT),
                             "--out", str(tmp_path / "x")], "coatnet_9_rw_224", absent=tmp_path / "x")


# --- bad outputs and options ---------------------------------------------------------------------

def test_output_folder_under_a_file(tmp_path: Path) -> None:
    """An unwritable output location (a path through a file: fails even for root, unlike chmod)."""
    blocker = tmp_path / "results"
    blocker.write_text("a file, not a folder")
    _expect_error(tmp_path, ["export", "--model", "builtin:student", "--out", str(blocker / "onnx")], "results")


def test_read_only_output_folder(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions; test_output_folder_under_a_file covers this as root")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    _expect_error(tmp_path, ["export", "--model", "builtin:student", "--out", str(locked / "onnx")], "locked")


def test_report_of_another_schema(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "someone-else/v9", "rows": []}))
    _expect_error(tmp_path, ["report", str(other), "--out", str(tmp_path / "r")], "other.json",
                  absent=tmp_path / "r")


def test_report_of_corrupt_json(tmp_path: Path) -> None:
    bad = tmp_path / "cut.json"
    bad.write_text('{"schema": "coatnet-edge/benchmark/v1", "results": [')
    _expect_error(tmp_path, ["report", str(bad), "--out", str(tmp_path / "r")], "cut.json", absent=tmp_path / "r")


def test_benchmark_batch_zero(onnx_model: Path, tmp_path: Path) -> None:
    _expect_error(tmp_path, ["benchmark", str(onnx_model), "--batch", "0", "--out", str(tmp_path / "b.json")],
                  "batch", absent=tmp_path / "b.json")


def test_compare_with_a_missing_artifact(tiny_dataset: Path, tmp_path: Path) -> None:
    _expect_error(tmp_path, ["compare", "--reference", "builtin:student", str(tmp_path / "gone.xml"),
                             "--data", str(tiny_dataset / "val"), "--out", str(tmp_path / "c")], "gone.xml",
                  absent=tmp_path / "c")


@pytest.mark.skipif(HAS_TENSORRT,
                    reason="TensorRT is installed here: test_export_adapters builds real engines instead")
def test_tensorrt_export_without_tensorrt_writes_nothing(tmp_path: Path) -> None:
    calib = tmp_path / "calib"
    calib.mkdir()
    _expect_error(tmp_path, ["export", "--model", "builtin:student", "--backend", "tensorrt", "--int8",
                             "--calib-dir", str(calib), "--out", str(tmp_path / "trt")], "tensorrt is not installed",
                  "pip install 'coatnet-edge[tensorrt]'", "JetPack", absent=tmp_path / "trt")


def test_synth_into_a_folder_that_holds_something_else(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("keep me")
    _expect_error(tmp_path, ["data", "synth", "--out", str(tmp_path / "mine")], "mine")
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "keep me"


# --- run / recipe files: added with the pipeline ---


RECIPE_CASES = {  # recipe text -> words the one-line error must contain (besides the file name and a fix)
    "unknown-key": ("[distill]\nepoch = 3\n", ["unknown key 'epoch'", "did you mean 'epochs'"]),
    "unknown-section": ("[quantise]\nmethod = \"ptq\"\n", ["unknown key 'quantise'", "did you mean 'quantize'"]),
    "wrong-type": ("[distill]\nepochs = \"three\"\n", ["epochs must be an integer", "'three'"]),
    "bool-for-int": ("[quantize]\ncalib_size = true\n", ["calib_size must be an integer"]),
    "section-not-table": ("distill = 3\n", ["'distill' must be a table"]),
    "bad-toml": ("[distill\nepochs = 3\n", ["not valid TOML"]),
    "bad-choice": ("[quantize]\nmethod = \"awq\"\n", ["method = 'awq' is not one of ptq, qat"]),
    "unknown-quantize-key": ("[quantize]\neval_sizes = 100\n", ["unknown key 'eval_sizes' in [quantize]",
                                                                "did you mean 'eval_size'"]),
    "bad-quantize-value": ("[quantize]\nscore_size = 0\n", ["[quantize] score_size must be >= 1, got 0"]),
    "bad-quantize-choice": ("[quantize]\nbudget_order = \"fastest\"\n",
                            ["budget_order = 'fastest' is not one of sensitivity, per-ms"]),
    "unknown-target": ("[targets]\nbuild = [\"openvino-int4\"]\n", ["unknown target 'openvino-int4'"]),
    "negative-epochs": ("[distill]\nepochs = 0\n", ["epochs must be > 0"]),
    "int8-without-quantize": ("[quantize]\nenabled = false\n", ["INT8 targets", "enabled = false"]),
    "timm-without-weights": ("[source]\nmodel = \"timm:coatnet_0_rw_224\"\n", ["needs its fine-tuned weights"]),
    "missing-checkpoint": ("[source]\nmodel = \"nowhere/model.safetensors\"\n", ["model file not found"]),
    "missing-data": ("[data]\ntrain = \"no_such_images\"\n", ["[data] train not found"]),
}


@pytest.mark.parametrize("case", list(RECIPE_CASES))
def test_bad_recipe(case: str, tmp_path: Path) -> None:
    text, needles = RECIPE_CASES[case]
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f'out = "out"\n{text}')
    proc = run_cli("run", str(recipe))
    line = assert_one_line_error(proc, "fix:", *needles)
    assert line.startswith(f"error: {recipe}"), line  # the file, by its full path, first
    assert not (tmp_path / "out").exists(), "a bad recipe must not start a run folder"


def test_missing_recipe_file(tmp_path: Path) -> None:
    proc = run_cli("run", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "out"))
    assert_one_line_error(proc, "nope.toml", "recipe file not found", "--print-recipe")
    assert not (tmp_path / "out").exists()


def test_recipe_data_with_another_class_count_leaves_no_run_folder(tiny_dataset: Path, tmp_path: Path) -> None:
    """Found mid-run (by the distillation stage): the half-made stage and the empty run folder are removed."""
    data = _three_classes(tmp_path / "three" / "train", tiny_dataset)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f'out = "out"\n[data]\ntrain = "{data}"\nval = "{data}"\n[distill]\nepochs = 1\n')
    _expect_error(tmp_path, ["run", str(recipe)], "three", "12 classes", absent=tmp_path / "out")


def test_force_of_an_unknown_stage(tmp_path: Path) -> None:
    _expect_error(tmp_path, ["run", "--force", "compile", "--out", str(tmp_path / "out")], "compile",
                  absent=tmp_path / "out")
