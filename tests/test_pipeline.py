"""``coatnet-edge run``: recipes, stage reuse, determinism and resuming after a kill — all real stages.

A tiny recipe (the shared tiny dataset, two distillation steps, 40 calibration images, three
timed runs) keeps each run to seconds while every library does its real work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import typing
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from safetensors.torch import load_file

from coatnet_edge.calibration.options import QuantizeOptions
from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.data.sampling import build_calibration_set
from coatnet_edge.measure.evaluate import load_eval_data
from coatnet_edge.pipeline.recipe import Recipe, load_recipe, recipe_toml
from tests.conftest import HAS_TENSORRT, run_cli
from tests.graphs import constants, qdq_nodes

TARGETS = ["onnx-fp32", "onnx-int8", "openvino-int8", "tensorrt-int8"]


def tiny_recipe(data: Path, out: Path, targets: list[str] = TARGETS) -> str:
    return f"""
out = "{out}"
seed = 0
[data]
train = "{data}"
[distill]
epochs = 1
max_steps_per_epoch = 2
batch_size = 32
workers = 0
[quantize]
calib_size = 40
candidates = ["hybrid"]  # the selection is tested in test_candidates.py
max_drop = 50.0  # met by plain INT8 (no per-layer ranking): the budget runs, on held-out training images
[targets]
build = {targets!r}
openvino_int8_candidates = ["qdq"]
[evaluate]
limit = 48
[benchmark]
batches = [1]
warmup = 1
runs = 3
""".replace("'", '"')


@pytest.fixture(scope="module")
def first_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("run")
    recipe = root / "recipe.toml"
    recipe.write_text(tiny_recipe(tiny_dataset, root / "out"))
    proc = run_cli("run", str(recipe))
    assert proc.returncode == 0, proc.stderr
    return recipe, proc


def int8_scales(path: Path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {node.input[1]: init[node.input[1]] for node in model.graph.node if node.op_type == "QuantizeLinear"
            and node.input[1] in init}


def test_recipe_run_prints_table_writes_stages_and_report(first_run: tuple) -> None:
    recipe, proc = first_run
    out = recipe.parent / "out"
    for needle in ("student.int8.onnx", "student.int8.xml", "onnxruntime", "openvino", "int8", "compare.png",
                   "stage wall time"):
        assert needle in proc.stdout, needle
    for stage in ("distill", "onnx", "quantize", "openvino-int8", "tensorrt-int8", "compare"):
        assert (out / stage / "stage.json").is_file(), stage
    assert {p.suffix for p in (out / "compare").iterdir()} >= {".md", ".csv", ".json", ".png"}
    assert (out / "compare" / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    kit = out / "tensorrt-int8"  # the ONNX + manifest + trtexec line travel to the device either way
    script = (kit / "student.int8.trtexec.sh").read_text()
    assert "--stronglyTyped" in script and "--onnx=student.int8.onnx" in script
    if HAS_TENSORRT:  # built here, and measured in the table
        assert (kit / "student.int8.engine").is_file() and "student.int8.engine" in proc.stdout
    else:
        assert sorted(p.name for p in kit.iterdir()) == ["stage.json", "student.int8.onnx",
                                                         "student.int8.onnx.manifest.json", "student.int8.trtexec.sh"]
        assert "skipped: TensorRT is not installed" in (out / "compare" / "compare.md").read_text()
    assert load_recipe(out / "recipe.toml") == load_recipe(recipe)  # the effective recipe, kept beside the run


def test_the_budget_is_fitted_on_held_out_training_images_never_on_the_images_compare_reports_on(
        first_run: tuple, tiny_dataset: Path) -> None:
    """`run` never hands quantize the evaluation folder: the --max-drop budget sees the calibration folder beyond its
    sample, and none of the images (by path or by content) the compare stage evaluates every artifact on."""
    recipe, _ = first_run
    out = recipe.parent / "out"
    manifest = json.loads((out / "quantize" / "student.int8.onnx.manifest.json").read_text())
    budget = manifest["accuracy_budget"]
    assert budget is not None and budget["max_drop"] == 50.0 and budget["met"] is True  # the budget ran
    train, val = (tiny_dataset / "train").resolve(), (tiny_dataset / "val").resolve()
    root = Path(budget["images_root"]).resolve()
    assert root == train and budget["images_sha256"] == manifest["held_out"]["sha256"]
    budget_files = {root / rel for rel in budget["image_paths"]}
    pre = PreprocessConfig.from_dict(manifest["preprocess"])
    calib = build_calibration_set(train, pre, size=40, seed=0)
    assert calib.sha256 == manifest["calibration"]["sha256"]
    assert len(budget_files) == budget["images"] == 240 - 40 and not budget_files & set(calib.paths)

    method = json.loads((out / "compare" / "compare.json").read_text())["method"]["accuracy"]
    count, _, data = method.partition(" images of ")
    assert Path(data).resolve() == val and count == "48"  # [evaluate] limit
    compared = load_eval_data(data, pre, manifest["class_names"], limit=48).paths
    assert len(compared) == 48 and not budget_files & {p.resolve() for p in compared}

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert not {digest(p) for p in budget_files} & {digest(p) for p in val.rglob("*.png")}  # no val picture at all


def test_unchanged_stages_are_reused_and_a_new_target_builds_alone(first_run: tuple, tiny_dataset: Path) -> None:
    recipe, _ = first_run
    again = run_cli("run", str(recipe))
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("unchanged") == 6, again.stdout  # distill onnx quantize ov-int8 trt-kit compare
    assert "building" not in again.stdout
    recipe.write_text(tiny_recipe(tiny_dataset, recipe.parent / "out", [*TARGETS, "openvino-fp32"]))
    more = run_cli("run", str(recipe))
    assert more.returncode == 0, more.stderr
    built = [line.split("]")[0][1:] for line in more.stdout.splitlines() if " building in " in line]
    assert built == ["openvino-fp32", "compare"], more.stdout  # speed-ups are re-measured in one run
    assert "student.fp32.xml" in more.stdout


def test_same_recipe_and_seed_give_byte_identical_onnx(first_run: tuple, tiny_dataset: Path, tmp_path: Path) -> None:
    from coatnet_edge import run

    recipe, _ = first_run
    first = recipe.parent / "out"
    second = run(load_recipe(recipe), out=tmp_path / "again", log=lambda line: None)
    for rel in ("onnx/student.fp32.onnx", "quantize/student.int8.onnx", "openvino-int8/student.int8.bin"):
        assert (first / rel).read_bytes() == (tmp_path / "again" / rel).read_bytes(), rel
    # the checkpoint's metadata holds the epoch's wall time; its tensors must match exactly
    w1, w2 = (load_file(str(root / "distill/student.safetensors")) for root in (first, tmp_path / "again"))
    assert w1.keys() == w2.keys() and all(np.array_equal(w1[k].numpy(), w2[k].numpy()) for k in w1)
    a, b = int8_scales(first / "quantize/student.int8.onnx"), int8_scales(second.out_dir / "quantize/student.int8.onnx")
    assert len(a) > 20 and a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_killed_run_resumes_cleanly(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(tiny_recipe(tiny_dataset, out, ["onnx-int8", "openvino-int8"]))
    proc = subprocess.Popen([sys.executable, "-m", "coatnet_edge", "run", str(recipe)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "COATNET_EDGE_PROGRESS": "0"},
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while not (out / "quantize").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-quantize: distill and onnx are done, quantize is not
    proc.wait()
    assert (out / "distill" / "stage.json").is_file()
    assert not (out / "quantize" / "stage.json").exists()

    resumed = run_cli("run", str(recipe))
    assert resumed.returncode == 0, resumed.stderr
    assert "[distill] unchanged" in resumed.stdout and "[onnx] unchanged" in resumed.stdout
    assert "[quantize] building" in resumed.stdout
    assert (out / "quantize" / "stage.json").is_file() and (out / "compare" / "compare.json").is_file()
    assert not list(out.rglob("*.partial")), "temporary files left behind"


def test_printed_recipe_round_trips_and_documents_every_section(tmp_path: Path) -> None:
    text = recipe_toml()
    for section in ("[source]", "[data]", "[distill]", "[quantize]", "[targets]", "[evaluate]", "[benchmark]"):
        assert section in text
    path = tmp_path / "r.toml"
    path.write_text(text)
    assert load_recipe(path) == Recipe()
    proc = run_cli("run", "--print-recipe")
    assert proc.returncode == 0 and proc.stdout == text


def test_relative_paths_are_relative_to_the_recipe(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "r.toml"
    path.write_text('out = "runs/x"\n[data]\ntrain = "../images"\n')
    recipe = load_recipe(path)
    assert recipe.resolve(recipe.out) == tmp_path / "sub" / "runs/x"
    assert recipe.resolve(recipe.data.train).resolve() == (tmp_path / "images").resolve()


@pytest.mark.parametrize("name", ["finetuned.toml", "timm.toml"])
def test_example_recipes_are_valid(name: str) -> None:
    from coatnet_edge.models.registry import list_variants

    recipe = load_recipe(Path(__file__).parents[1] / "examples" / "recipes" / name)
    assert recipe.distill.student in (*list_variants(), "builtin:student")


def _another_value(default: Any, hint: Any) -> Any:
    """A valid value of a ``QuantizeOptions`` field other than its default, from the field's type alone."""
    args = tuple(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is typing.Literal:
        return next(a for a in args if a != default)
    if typing.get_origin(hint) is tuple:
        item = args[0]
        return tuple(reversed(typing.get_args(item)))[:2] if typing.get_origin(item) is typing.Literal else ("x.*",)
    kind = args[0] if args else hint
    if kind is bool:
        return not default
    return {int: (default or 0) + 7, float: (default or 0.0) + 0.25}[kind]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def test_every_quantize_option_is_a_recipe_key(tmp_path: Path) -> None:
    """[quantize] is ``QuantizeOptions``: each field, written with a value other than its default, comes back as
    written (a field added to the options and not taken by the recipe fails here)."""
    hints = typing.get_type_hints(QuantizeOptions)
    written = {f.name: _another_value(getattr(QuantizeOptions(), f.name), hints[f.name])
               for f in dataclasses.fields(QuantizeOptions)}
    path = tmp_path / "r.toml"
    path.write_text("[quantize]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in written.items()))
    options = load_recipe(path).quantize.options(seed=0)
    assert options == QuantizeOptions(**written) and options != QuantizeOptions()
    assert {k: getattr(options, k) for k in written} == written
    assert load_recipe({}).quantize.options(seed=5) == QuantizeOptions(seed=5)  # same defaults; the recipe's seed


def test_readme_shows_the_builtin_recipe_as_printed() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "```toml\n" + recipe_toml() + "```" in readme


# measured (AMD EPYC Zen4), built-in student, 240 val images, 1 QAT epoch: ONNX Runtime 0.9833 / cosine 0.99707,
# OpenVINO 0.9792 / 0.99720 -> 0.9625 (4 flips below the lower) / 0.995
QAT_AGREEMENT, QAT_COSINE = 0.9625, 0.995


def test_recipe_with_qat_through_the_cli(tiny_dataset: Path, tmp_path: Path) -> None:
    """QAT as a recipe stage on the trained built-in student: standard signed Q/DQ, a checkpoint, the history
    with its PTQ start, and both runtimes within the measured agreement."""
    import json

    recipe = tmp_path / "qat.toml"
    recipe.write_text(f"""
out = "{tmp_path / 'out'}"
[source]
model = "builtin:student"
[data]
train = "{tiny_dataset}"
[distill]
enabled = false
[quantize]
method = "qat"
qat_epochs = 1
calib_size = 40
[targets]
build = ["onnx-int8", "openvino-int8"]
openvino_int8_candidates = ["qdq"]  # QAT is under test here; the OpenVINO selection in test_target_int8.py
[benchmark]
batches = [1]
warmup = 1
runs = 3
""")
    proc = run_cli("run", str(recipe))
    assert proc.returncode == 0, proc.stderr
    assert "QAT epoch 1/1" in proc.stdout and "QAT start (PTQ init)" in proc.stdout
    int8 = tmp_path / "out" / "quantize" / "builtin_student.int8.onnx"
    graph = onnx.load(str(int8)).graph
    assert {n.domain for n in graph.node} <= {"", "ai.onnx"}
    values = constants(graph)
    qdq = qdq_nodes(graph)
    assert len(qdq) > 50 and all(values[n.input[2]].dtype == np.int8 and not values[n.input[2]].any() for n in qdq)
    quant = json.loads(int8.with_name(int8.name + ".manifest.json").read_text())["quantization"]
    assert quant["method"] == "qat" and quant["engine"] == "nncf-torch" and quant["qat"]["epochs"] == 1
    assert [h["epoch"] for h in quant["history"]] == [0, 1] and Path(quant["checkpoint"]).is_file()
    rows = json.loads((tmp_path / "out" / "compare" / "compare.json").read_text())["accuracy"]
    # the OpenVINO row is int8 or int8+bf16: its target keeps bf16 float parts where they measured faster here
    int8_rows = {r["backend"]: r for r in rows if r["precision"] in ("int8", "int8+bf16")}
    assert set(int8_rows) == {"onnxruntime", "openvino"} and int8_rows["openvino"]["images"] == 240
    for row in int8_rows.values():
        assert row["vs_reference_top1_agreement"] >= QAT_AGREEMENT and row["vs_reference_cosine"] >= QAT_COSINE, row


def test_an_edited_image_in_an_override_calibration_folder_reruns_quantize_and_what_follows(
        default_run: tuple, tiny_dataset: Path, tmp_path: Path) -> None:
    """With the built-in data, `[quantize] calib_dir` and `[evaluate] data` point elsewhere: their stages must key on
    those folders, so editing a calibration image re-runs quantize and everything after it, and an untouched
    re-run reuses every stage. (The built-in data stage is README command 1's, copied: its 4,800 images are not
    drawn twice.)"""
    import shutil

    from PIL import Image

    from coatnet_edge import run

    shutil.copytree(default_run[0] / "data", tmp_path / "out" / "data")
    calib = shutil.copytree(tiny_dataset / "train", tmp_path / "calib")
    recipe = load_recipe({"out": str(tmp_path / "out"), "source": {"model": "builtin:student"},
                          "distill": {"enabled": False},
                          "quantize": {"calib_dir": str(calib), "calib_size": 40, "candidates": ["cnn"]},
                          "targets": {"build": ["onnx-int8"]},
                          "evaluate": {"data": str(tiny_dataset / "val"), "limit": 24},
                          "benchmark": {"batches": [1], "warmup": 1, "runs": 2}})
    first = run(recipe, log=lambda line: None)
    assert first.stages["data"]["cached"] and not any(s["cached"] for n, s in first.stages.items() if n != "data")
    again = run(recipe, log=lambda line: None)
    assert all(s["cached"] for s in again.stages.values()), again.stages
    sampled = build_calibration_set(calib, PreprocessConfig(image_size=64), size=40, seed=0).paths[0]
    Image.fromarray(255 - np.asarray(Image.open(sampled))).save(sampled)  # one calibration image, inverted
    edited = run(recipe, log=lambda line: None)
    assert [n for n, s in edited.stages.items() if not s["cached"]] == ["quantize", "compare"], edited.stages
