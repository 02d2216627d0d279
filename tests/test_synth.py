"""The built-in dataset: deterministic bytes, real variation, not trivially separable, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from coatnet_edge.data.synth import CLASSES, SynthConfig, load_dataset_info, write_dataset
from coatnet_edge.errors import CoatnetEdgeError

SMALL = {"train_per_class": 6, "val_per_class": 4}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_same_seed_same_bytes_other_seed_other_images(tmp_path: Path) -> None:
    a = write_dataset(tmp_path / "a", SynthConfig(seed=7, **SMALL))
    b = write_dataset(tmp_path / "b", SynthConfig(seed=7, **SMALL))
    c = write_dataset(tmp_path / "c", SynthConfig(seed=8, **SMALL))
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert fa == fb and len(fa) == len(CLASSES) * 10
    assert load_dataset_info(a)["sha256"] == load_dataset_info(b)["sha256"] != load_dataset_info(c)["sha256"]
    assert sum(fa[k] != fc[k] for k in fa) == len(fa)


def test_layout_counts_and_image_format(tmp_path: Path) -> None:
    out = write_dataset(tmp_path / "d", SynthConfig(seed=0, image_size=80, **SMALL))
    info = load_dataset_info(out)
    assert len(info["classes"]) >= 10
    for split, per_class in (("train", 6), ("val", 4)):
        dirs = sorted(p.name for p in (out / split).iterdir())
        assert dirs == sorted(CLASSES)
        assert all(len(list((out / split / d).glob("*.png"))) == per_class for d in dirs)
    img = Image.open(next((out / "val" / "star").glob("*.png")))
    assert img.mode == "RGB" and img.size == (80, 80)


def _pixels(root: Path, size: int = 20) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for k, name in enumerate(CLASSES):
        for p in sorted((root / name).glob("*.png")):
            xs.append(np.asarray(Image.open(p).convert("L").resize((size, size)), dtype=np.float32).ravel() / 255)
            ys.append(k)
    return np.stack(xs), np.array(ys)


def test_classes_differ_but_are_not_trivially_separable(tmp_path: Path) -> None:
    out = write_dataset(tmp_path / "e", SynthConfig(seed=1, train_per_class=40, val_per_class=15))
    x_train, y_train = _pixels(out / "train")
    x_val, y_val = _pixels(out / "val")
    # nuisances are real: images within a class differ a lot
    assert np.mean(np.std(x_train[y_train == 0], axis=0)) > 0.05
    # a nearest-class-mean classifier on raw pixels is far from perfect (chance is 1/12)
    centroids = np.stack([x_train[y_train == k].mean(0) for k in range(len(CLASSES))])
    predictions = np.argmin(((x_val[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    accuracy = float(np.mean(predictions == y_val))
    assert accuracy < 0.6, accuracy


def test_existing_identical_dataset_is_reused_other_content_refused(tmp_path: Path) -> None:
    cfg = SynthConfig(seed=2, **SMALL)
    out = write_dataset(tmp_path / "f", cfg)
    stamp = (out / "dataset.json").stat().st_mtime_ns
    assert write_dataset(out, cfg) == out and (out / "dataset.json").stat().st_mtime_ns == stamp
    with pytest.raises(CoatnetEdgeError, match="different dataset"):
        write_dataset(out, SynthConfig(seed=3, **SMALL))
    other = tmp_path / "g"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(CoatnetEdgeError) as err:
        write_dataset(other, cfg)
    assert str(other) in str(err.value) and "\n" not in str(err.value)


def test_interrupted_generation_leaves_nothing(tmp_path: Path) -> None:
    def crash(done: int, total: int) -> None:
        if done == 15:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_dataset(tmp_path / "h", SynthConfig(seed=0, **SMALL), progress=crash)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", [{"seed": -1}, {"image_size": 4}, {"train_per_class": 0}, {"num_classes": 1}])
def test_config_validation(bad: dict) -> None:
    with pytest.raises(CoatnetEdgeError, match="SynthConfig"):
        SynthConfig(**bad)


def test_dataset_info_errors(tmp_path: Path) -> None:
    with pytest.raises(CoatnetEdgeError, match="not a generated dataset"):
        load_dataset_info(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "other"}))
    with pytest.raises(CoatnetEdgeError, match="not a coatnet-edge synthetic dataset"):
        load_dataset_info(tmp_path)
