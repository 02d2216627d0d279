"""Calibration sets: seeded, stratified, hashed; bad folders fail in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from coatnet_edge.data.defaults import builtin_preprocess
from coatnet_edge.data.sampling import HELD_OUT, build_calibration_set, split_calibration_folder
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.measure.evaluate import EVALUATION


def test_seeded_stratified_and_hashed(tiny_dataset: Path) -> None:
    pre = builtin_preprocess()
    a = build_calibration_set(tiny_dataset / "train", pre, size=36, seed=1)
    b = build_calibration_set(tiny_dataset / "train", pre, size=36, seed=1)
    c = build_calibration_set(tiny_dataset / "train", pre, size=36, seed=2)
    assert a.paths == b.paths and a.sha256 == b.sha256 and (a.images == b.images).all()
    assert a.paths != c.paths and a.sha256 != c.sha256
    per_class = {}
    for p in a.paths:
        per_class[p.parent.name] = per_class.get(p.parent.name, 0) + 1
    assert len(per_class) == 12 and set(per_class.values()) == {3}
    assert a.images.shape == (36, 3, 64, 64) and a.describe()["sha256"] == a.sha256


def test_unreadable_files_are_skipped_and_listed(tiny_dataset: Path, tmp_path: Path) -> None:
    folder = tmp_path / "calib"
    folder.mkdir()
    for i, p in enumerate(sorted((tiny_dataset / "train").rglob("*.png"))[:12]):
        shutil.copy(p, folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    with pytest.warns(UserWarning, match="fewer than the 50 asked for"):
        calib = build_calibration_set(folder, builtin_preprocess(), size=50)
    assert len(calib) == 12 and [s.path.name for s in calib.skipped] == ["broken.png"]


def test_too_few_images_is_an_error(tmp_path: Path, tiny_dataset: Path) -> None:
    folder = tmp_path / "few"
    folder.mkdir()
    for p in sorted((tiny_dataset / "train").rglob("*.png"))[:3]:
        shutil.copy(p, folder / p.name)
    for i in range(20):
        (folder / f"bad{i}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(CoatnetEdgeError, match="only 3 usable calibration images"):
        build_calibration_set(folder, builtin_preprocess(), size=100)
    with pytest.raises(CoatnetEdgeError, match=r"not found|does not exist"):
        build_calibration_set(tmp_path / "missing", builtin_preprocess())


def test_errors_name_the_options_of_the_purpose(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    for i in range(12):
        (folder / f"bad{i}.jpg").write_bytes(b"not a jpeg")
    pre = builtin_preprocess()
    with pytest.raises(CoatnetEdgeError, match="usable calibration images") as calibration:
        build_calibration_set(folder, pre, size=10)
    assert "--calib-dir" in (calibration.value.fix or "")
    with pytest.raises(CoatnetEdgeError, match="usable evaluation images") as evaluation:
        build_calibration_set(folder, pre, size=10, min_images=1, purpose=EVALUATION)
    assert "--data" in (evaluation.value.fix or "") and "--calib" not in str(evaluation.value)
    with pytest.raises(CoatnetEdgeError, match="--calib-size must be >= 1"):
        build_calibration_set(folder, pre, size=0)
    for purpose in (EVALUATION, HELD_OUT):
        with pytest.raises(CoatnetEdgeError, match=f"{purpose.size_option} must be >= 1") as err:
            build_calibration_set(folder, pre, size=0, purpose=purpose)
        assert "--calib-size" not in str(err.value)


def test_only_too_few_spare_images_means_no_held_out_set(tiny_dataset: Path, tmp_path: Path) -> None:
    """The held-out split is ``None`` for one reason, too few usable images beyond the sample; an unreadable file
    is skipped and listed like in the sample, and held-out images too small for the model are their own error."""
    folder = tmp_path / "calib"
    folder.mkdir()
    for i, p in enumerate(sorted((tiny_dataset / "train").rglob("*.png"))[:40]):
        shutil.copy(p, folder / f"{i:02d}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    pre = builtin_preprocess()
    calib, held_out = split_calibration_folder(folder, pre, calib_size=12, score_size=100, seed=0, min_score_images=10)
    assert held_out is not None and len(calib) + len(held_out) == 40
    assert "broken.png" in {s.path.name for s in [*calib.skipped, *held_out.skipped]}
    assert split_calibration_folder(folder, pre, calib_size=32, score_size=100, seed=0, min_score_images=10)[1] is None
    for path in held_out.paths:  # the same files, now thumbnails: the calibration sample is unchanged
        Image.new("RGB", (8, 8), (120, 60, 30)).save(path)
    with pytest.raises(CoatnetEdgeError, match="held-out images are too small"):
        split_calibration_folder(folder, pre, calib_size=12, score_size=100, seed=0, min_score_images=10)
