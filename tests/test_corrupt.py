"""Corrupted copies of a validation folder (issue 16's built-in corruption option): deterministic, every kind
really corrupts, stronger with severity, harder for a trained model, and bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from coatnet_edge.data.corrupt import CORRUPTIONS, RECORD, CorruptConfig, write_corrupted
from coatnet_edge.data.folders import scan_folder
from coatnet_edge.errors import CoatnetEdgeError
from tests.conftest import assert_one_line_error, run_cli


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


def test_same_options_same_pixels_and_each_image_keeps_its_class(tiny_dataset: Path, tmp_path: Path) -> None:
    val = tiny_dataset / "val"
    first = write_corrupted(val, tmp_path / "a")
    second = write_corrupted(val, tmp_path / "b")
    reseeded = write_corrupted(val, tmp_path / "c", CorruptConfig(seed=1))
    records = [json.loads((p / RECORD).read_text()) for p in (first, second, reseeded)]
    assert records[0]["pixels_sha256"] == records[1]["pixels_sha256"] != records[2]["pixels_sha256"]
    kinds = list(records[0]["files"].values())
    assert {k: kinds.count(k) for k in CORRUPTIONS} == {k: len(kinds) // 4 for k in CORRUPTIONS}
    source, copy = scan_folder(val), scan_folder(first)
    assert copy.classes == source.classes and len(copy) == len(source)
    assert [p.relative_to(first).with_suffix("") for p in copy.paths] == \
        [p.relative_to(val).with_suffix("") for p in source.paths]


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_every_kind_changes_the_image_more_at_higher_severity(kind: str, tiny_dataset: Path, tmp_path: Path) -> None:
    val = tiny_dataset / "val"
    clean = {p.relative_to(val).with_suffix(".png"): _pixels(p) for p in sorted(scan_folder(val).paths)[:24]}
    change = []
    for severity in (1, 3, 5):
        out = write_corrupted(val, tmp_path / f"s{severity}", CorruptConfig(kinds=(kind,), severity=severity))
        change.append(float(np.mean([np.abs(_pixels(out / rel) - img).mean() for rel, img in clean.items()])))
    assert change[0] > 0.5 and change[0] < change[1] < change[2], change


def test_a_trained_model_is_less_accurate_on_the_corrupted_copy(tiny_dataset: Path, tmp_path: Path) -> None:
    from coatnet_edge.measure.evaluate import evaluate

    corrupted = write_corrupted(tiny_dataset / "val", tmp_path / "val_corrupted")
    clean = evaluate(["builtin:student"], data=tiny_dataset / "val")[0]["top1"]
    hard = evaluate(["builtin:student"], data=corrupted)[0]["top1"]
    # measured (Intel Xeon AMX, 240 images, severity 3): student 0.942 -> 0.792, teacher 0.925 -> 0.796
    assert clean - hard >= 0.05, (clean, hard)


def test_cli_writes_the_copy_and_bad_input_is_one_line(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "val_c"
    proc = run_cli("data", "corrupt", str(tiny_dataset / "val"), "--out", str(out), "--kind", "blur", "--kind",
                   "jpeg", "--severity", "2")
    assert proc.returncode == 0, proc.stderr
    assert "240 images in 12 classes" in proc.stdout and "blur, jpeg at severity 2" in proc.stdout
    assert set(json.loads((out / RECORD).read_text())["files"].values()) == {"blur", "jpeg"}
    assert_one_line_error(run_cli("data", "corrupt", str(tiny_dataset / "val"), "--out", str(out)),
                          str(out), "already exists", "fix:")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run_cli("data", "corrupt", str(empty), "--out", str(tmp_path / "x")), str(empty), "fix:")
    assert not (tmp_path / "x").exists()
    with pytest.raises(CoatnetEdgeError, match=r"severity must be 1\.\.5"):
        CorruptConfig(severity=6)
    with pytest.raises(CoatnetEdgeError, match="unknown corruption 'fog'"):
        CorruptConfig(kinds=("fog",))


def test_in_memory_corruption_equals_the_written_copy(tiny_dataset: Path, tmp_path: Path) -> None:
    """What quantize scores its candidates on (corrupted_batch) is exactly `data corrupt`'s pixels, preprocessed."""
    from coatnet_edge.data.corrupt import corrupted_batch
    from coatnet_edge.data.preprocess import PreprocessConfig, preprocess_batch

    val = tiny_dataset / "val"
    paths = sorted(scan_folder(val).paths)[:16]
    pre = PreprocessConfig(image_size=64)
    written = write_corrupted(val, tmp_path / "copy")
    on_disk = preprocess_batch([written / p.relative_to(val).with_suffix(".png") for p in paths], pre)
    np.testing.assert_array_equal(corrupted_batch(paths, pre), on_disk)
