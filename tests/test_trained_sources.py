"""The user's fine-tuned model as their training tool wrote it (issue 17): timm's CheckpointSaver ``.pth.tar``
(args, EMA), ``save_for_hf`` folders, plain state dicts at any input size, grayscale models. Every file here is
written by timm's own functions; every format goes through the CLI (quantize, export, compare) with no flag
about the model, and its FP32 ONNX must equal the timm model fed by timm's own eval transform."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import assert_one_line_error, run_cli

timm = pytest.importorskip("timm")

from timm.models import save_for_hf  # noqa: E402
from timm.utils import CheckpointSaver, ModelEmaV3  # noqa: E402

ARCH = "coatnet_pico_rw_224"
CLASSES = 12  # tiny_dataset's


@dataclass
class Written:
    """A checkpoint as a training tool wrote it, and the timm model + eval transform it must behave as."""

    source: str  # what --model gets
    model: torch.nn.Module
    data_config: dict = field(default_factory=dict)  # timm.data.create_transform(**data_config)
    flags: tuple[str, ...] = ()  # flags the *user* states (only --ema, which is a choice, not a fact)


def _trained(size: int, *, in_chans: int = 3, seed: int = 0, ema: bool = False, folder: Path) -> tuple:
    """A timm CoAtNet after one SGD step (so weights and their EMA differ), and its CheckpointSaver."""
    torch.manual_seed(seed)
    model = timm.create_model(ARCH, pretrained=False, num_classes=CLASSES, img_size=size, in_chans=in_chans)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model_ema = ModelEmaV3(model, decay=0.5) if ema else None
    model(torch.randn(2, in_chans, size, size)).logsumexp(1).sum().backward()
    optimizer.step()
    if model_ema is not None:
        model_ema.update(model)
    return model.eval(), optimizer, model_ema


def _timm_args(size: int, **data: object) -> argparse.Namespace:
    """What timm's train.py pickles as ``args`` (the fields we read, and a few we must ignore)."""
    defaults = {"input_size": None, "in_chans": None, "mean": None, "std": None, "crop_pct": None,
                "interpolation": "", "lr": 0.5, "epochs": 1, "opt": "sgd", "model_ema": False}
    return argparse.Namespace(model=ARCH, num_classes=CLASSES, img_size=size, **{**defaults, **data})


def write_checkpoint_saver(folder: Path, *, ema: bool) -> Written:
    """``model_best.pth.tar`` from timm's CheckpointSaver, trained at 64 px with its own normalization."""
    data = {"mean": (0.4, 0.45, 0.5), "std": (0.2, 0.25, 0.3), "crop_pct": 0.95, "interpolation": "bilinear"}
    args = _timm_args(64, **data)
    model, optimizer, model_ema = _trained(64, seed=1, ema=ema, folder=folder)
    folder.mkdir(parents=True, exist_ok=True)
    saver = CheckpointSaver(model, optimizer, args=args, model_ema=model_ema, checkpoint_dir=str(folder),
                            recovery_dir=str(folder))
    saver.save_checkpoint(0, metric=0.5)
    reference = model_ema.module.eval() if ema else model
    return Written(str(folder / "model_best.pth.tar"), reference, {"input_size": (3, 64, 64), **data},
                   ("--ema",) if ema else ())


def write_hf_folder(folder: Path, *, in_chans: int) -> Written:
    """A folder from timm's ``save_for_hf``: a grayscale (``in_chans=1``) model at 64 px."""
    model, _, _ = _trained(64, in_chans=in_chans, seed=2, folder=folder)
    data = {"mean": (0.3,) * in_chans, "std": (0.4,) * in_chans, "crop_pct": 0.8, "interpolation": "bicubic"}
    save_for_hf(model, str(folder), safe_serialization=True, data_config={**data, "input_size": (in_chans, 64, 64)})
    return Written(str(folder), model, {"input_size": (in_chans, 64, 64), **data})


def write_state_dict(folder: Path, size: int) -> Written:
    """A plain state dict (safetensors) of a model fine-tuned at ``size``: the size is read off the weights."""
    from safetensors.torch import save_file

    model, _, _ = _trained(size, seed=3, folder=folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ft{size}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    config = timm.data.resolve_data_config({}, model=model)
    return Written(f"timm:{ARCH}", model, {**config, "input_size": (3, size, size)}, ("--weights", str(path)))


FORMATS = {
    "checkpoint_saver": lambda folder: write_checkpoint_saver(folder, ema=False),
    "checkpoint_saver_ema": lambda folder: write_checkpoint_saver(folder, ema=True),
    "save_for_hf_grayscale": lambda folder: write_hf_folder(folder / "hf_gray", in_chans=1),
    "state_dict_64": lambda folder: write_state_dict(folder, 64),
    "state_dict_288": lambda folder: write_state_dict(folder, 288),
}


def timm_logits(written: Written, images: list[Path]) -> np.ndarray:
    """The timm model on timm's own eval transform of the images (the checkpoint's preprocessing)."""
    transform = timm.data.create_transform(**written.data_config)
    mode = "L" if written.data_config["input_size"][0] == 1 else "RGB"
    batch = torch.stack([transform(Image.open(p).convert(mode)) for p in images])
    with torch.no_grad():
        return written.model(batch).numpy()


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_quantizes_exports_and_compares_with_no_model_flags(fmt: str, tiny_dataset: Path,
                                                                        images_256: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    from coatnet_edge.data.preprocess import PreprocessConfig, preprocess_batch
    from coatnet_edge.manifest import Manifest

    written = FORMATS[fmt](tmp_path / "ckpt")
    data = images_256 if fmt.endswith("288") else tiny_dataset  # calibration images must not be upscaled 3x
    images_per_step = "12" if fmt.endswith("288") else "24"  # 288 px costs 20x the compute of 64 px
    val = data / "val"
    out = tmp_path / "int8"
    proc = run_cli("quantize", "--model", written.source, *written.flags, "--calib-dir", str(data / "train"),
                   "--calib-size", images_per_step, "--candidate", "hybrid", "--out", str(out))
    assert proc.returncode == 0, proc.stderr  # one candidate: the formats are under test, not the selection
    fp32 = next(out.glob("*.fp32.onnx"))
    int8 = next(out.glob("*.int8.onnx"))

    # the FP32 ONNX on our preprocessing == the timm model on timm's transform of the same files
    images = sorted(val.rglob("*.png"))[:6]
    manifest = Manifest.read(fp32)
    ours = preprocess_batch(images, PreprocessConfig.from_dict(manifest.preprocess))
    session = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {session.get_inputs()[0].name: ours})[0]
    expected = timm_logits(written, images)
    assert np.abs(onnx_logits - expected).max() <= 1e-4, np.abs(onnx_logits - expected).max()
    read = manifest.record["source"]["read"]
    if fmt == "checkpoint_saver_ema":
        assert read["weights_key"] == "state_dict_ema" and read["ema"] is True
    if fmt == "checkpoint_saver":
        assert read["weights_key"].startswith("state_dict") and read["preprocess_from"]["mean"] == "args.mean"
    if fmt.startswith("state_dict"):
        assert read["image_size_from"] == "relative-position tables of the weights"

    artifacts = [fp32, int8]
    if fmt == "checkpoint_saver":  # the IR is made from the INT8 ONNX whatever the source format: one format is enough
        xml_dir = tmp_path / "ov"
        proc = run_cli("export", "--model", str(int8), "--backend", "openvino", "--int8", "--openvino-candidate",
                       "qdq", "--out", str(xml_dir))  # the source formats are under test here, not the selection
        assert proc.returncode == 0, proc.stderr
        artifacts.append(next(xml_dir.glob("*.int8.xml")))

    report = tmp_path / "report"
    proc = run_cli("compare", "--reference", written.source, *(
        ["--reference-weights", written.flags[1]] if written.flags[:1] == ("--weights",) else written.flags),
        *map(str, artifacts), "--data", str(val), "--limit", images_per_step, "--warmup", "1", "--runs", "2",
        "--out", str(report))
    assert proc.returncode == 0, proc.stderr
    rows = {Path(r["artifact"]).name: r for r in json.loads((report / "compare.json").read_text())["accuracy"]}
    assert {a.name for a in artifacts} <= set(rows)
    assert rows[fp32.name]["vs_reference_max_abs"] <= 1e-4  # the reference compare loaded is the model itself


# --- never a full unpickle -----------------------------------------------------------------------------------

def _mark(path: str) -> str:
    """What a hostile pickle would run on load: here it only leaves a file behind."""
    Path(path).write_text("constructed")
    return path


class _Hostile:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (_mark, (str(self.marker),))


@pytest.mark.parametrize("where", ["top level", "inside args"])
def test_checkpoint_holding_any_other_object_is_refused_and_nothing_is_constructed(where: str,
                                                                                    tmp_path: Path) -> None:
    """timm's Namespace passes the allow-list; an object anywhere else (even inside the Namespace) is refused
    before it is built: the control below shows a plain torch.load would have built it."""
    marker = tmp_path / "constructed.txt"
    model = timm.create_model(ARCH, pretrained=False, num_classes=CLASSES, img_size=64)
    args = _timm_args(64)
    checkpoint = {"arch": ARCH, "state_dict": model.state_dict(), "args": args, "epoch": 1}
    if where == "top level":
        checkpoint["hook"] = _Hostile(marker)
    else:
        args.callback = _Hostile(marker)
    path = tmp_path / "model_best.pth.tar"
    torch.save(checkpoint, path)

    proc = run_cli("info", str(path))
    line = assert_one_line_error(proc, str(path), "refused to unpickle", "_mark", "argparse.Namespace", "fix:")
    assert "safetensors" in line
    assert not marker.exists()

    # the control, read without unpickling: the file really holds a call of _mark that a full unpickle would run
    assert ("tests.test_trained_sources", "_mark") in _pickled_calls(path)


def _pickled_calls(path: Path) -> set[tuple[str, str]]:
    """(module, name) of every global a torch.save file's pickle would import and call, from its opcodes alone."""
    import pickletools
    import zipfile

    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    strings: list[str] = []
    calls = set()
    for opcode, arg, _ in pickletools.genops(data):
        if isinstance(arg, str):
            strings.append(arg)
        if opcode.name == "STACK_GLOBAL":
            calls.add((strings[-2], strings[-1]))
        elif opcode.name == "GLOBAL":
            calls.add(tuple(arg.split(" ", 1)))
    return calls


# --- bad input: one line naming the file and the fix, nothing written ----------------------------------------

def _refused(args: list[str], tmp_path: Path, *needles: str) -> None:
    out = tmp_path / "out"
    proc = run_cli("quantize", *args, "--calib-dir", str(tmp_path), "--out", str(out))
    assert_one_line_error(proc, *needles, "fix:")
    assert not out.exists()


def test_bad_trained_sources_fail_in_one_line_and_write_nothing(tmp_path: Path) -> None:
    saver_dir = tmp_path / "plain"
    written = write_checkpoint_saver(saver_dir, ema=False)
    ckpt = written.source

    no_weights = tmp_path / "no_weights.pth.tar"
    torch.save({"arch": ARCH, "args": _timm_args(64), "epoch": 3, "metric": 0.9}, no_weights)
    _refused(["--model", str(no_weights)], tmp_path, str(no_weights), "holds no weights", "state_dict")

    _refused(["--model", ckpt, "--ema"], tmp_path, ckpt, "--ema", "state_dict_ema", "drop --ema")
    out = tmp_path / "student"  # distill's --teacher takes the same options, prefixed
    proc = run_cli("distill", "--data", str(tmp_path), "--teacher", ckpt, "--teacher-ema", "--out", str(out))
    assert_one_line_error(proc, ckpt, "state_dict_ema", "drop --ema")
    assert not out.exists()

    _refused(["--model", ckpt, "--image-size", "96"], tmp_path, ckpt, "--image-size 96",
             "trained at 64 px", "--image-size 64")
    trained64 = write_state_dict(tmp_path / "sd", 64)
    _refused(["--model", trained64.source, *trained64.flags, "--image-size", "224"], tmp_path, trained64.flags[1],
             "--image-size 224", "--image-size 64")

    hf = tmp_path / "hf"
    write_hf_folder(hf, in_chans=3)
    config = json.loads((hf / "config.json").read_text())
    (hf / "config.json").write_text(json.dumps({**config, "architecture": "resnet50"}))
    _refused(["--model", str(hf)], tmp_path, str(hf / "config.json"), "'resnet50' is not a CoAtNet")
    (hf / "config.json").write_text(json.dumps({**config, "architecture": "coatnet_7_rw_224"}))
    _refused(["--model", str(hf)], tmp_path, str(hf / "config.json"), "'coatnet_7_rw_224'", "does not have")
    (hf / "config.json").unlink()
    _refused(["--model", str(hf)], tmp_path, str(hf), "no config.json")


def test_info_says_what_was_read_from_where(tmp_path: Path) -> None:
    written = write_checkpoint_saver(tmp_path / "ema", ema=True)
    proc = run_cli("info", written.source)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"{ARCH}, {CLASSES} classes, input 3x64x64" in out
    assert "weights: state_dict (state_dict_ema also present: --ema loads the EMA weights)" in out
    assert "image_size: 64 (from args.img_size)" in out
    assert "preprocess.mean: [0.4, 0.45, 0.5] (from args.mean)" in out
    assert "preprocess.interpolation: bilinear (from args.interpolation)" in out
    assert "preprocess.crop_pct: 0.95 (from args.crop_pct)" in out
    proc = run_cli("info", written.source, "--ema", "--crop-pct", "0.9")
    assert "weights: state_dict_ema" in proc.stdout
    assert "preprocess.crop_pct: 0.9 (from set by the user)" in proc.stdout


def test_recipe_whose_source_is_a_timm_training_checkpoint_runs_end_to_end(tiny_dataset: Path,
                                                                            tmp_path: Path) -> None:
    write_checkpoint_saver(tmp_path / "train_output", ema=True)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f'''out = "run"
[source]
model = "train_output/model_best.pth.tar"
ema = true
[data]
train = "{tiny_dataset / 'train'}"
val = "{tiny_dataset / 'val'}"
[distill]
enabled = false
[quantize]
calib_size = 24
candidates = ["hybrid"]  # the selection is tested in test_candidates.py
[targets]
build = ["onnx-fp32", "onnx-int8", "openvino-int8"]
openvino_int8_candidates = ["qdq"]
[evaluate]
limit = 48
[benchmark]
batches = [1]
warmup = 1
runs = 3
''')
    proc = run_cli("run", str(recipe))
    assert proc.returncode == 0, proc.stderr
    run = json.loads((tmp_path / "run" / "compare" / "compare.json").read_text())
    rows = {Path(r["artifact"]).name: r for r in run["accuracy"]}
    assert set(rows) >= {"model_best.pth.tar", "model_best.fp32.onnx", "model_best.int8.onnx", "model_best.int8.xml"}
    assert rows["model_best.fp32.onnx"]["vs_reference_max_abs"] <= 1e-4
    from coatnet_edge.manifest import Manifest

    read = Manifest.read(tmp_path / "run" / "onnx" / "model_best.fp32.onnx").record["source"]["read"]
    assert read["weights_key"] == "state_dict_ema" and read["preprocess_from"]["crop_pct"] == "args.crop_pct"
