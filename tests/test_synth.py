"""The built-in dataset: deterministic, laid out as promised, neither trivial nor noise, atomic."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from coatnet_edge.data.synth import (
    CLASSES,
    SynthConfig,
    generate_image,
    image_rng,
    load_dataset_info,
    tree_sha256,
    write_dataset,
)
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.hashing import sha256_file

SMALL = SynthConfig(seed=1, image_size=48, train_per_class=3, val_per_class=2)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("synth")
    return write_dataset(base / "a", SMALL), write_dataset(base / "b", SMALL)


def test_same_seed_gives_byte_identical_files(pair: tuple[Path, Path]) -> None:
    a, b = pair
    files_a, files_b = _files(a), _files(b)
    assert len(files_a) == 1 + 12 * (3 + 2)
    assert files_a == files_b  # every PNG and dataset.json
    info = load_dataset_info(a)
    pngs = {rel: sha256_file(a / rel) for rel in files_a if rel.endswith(".png")}
    assert info["sha256"] == tree_sha256(pngs) == load_dataset_info(b)["sha256"]
    pixels = {}
    for rel in pngs:
        with Image.open(a / rel) as img:
            pixels[rel] = hashlib.sha256(img.tobytes()).hexdigest()
    assert info["pixels_sha256"] == tree_sha256(pixels)  # portable across zlib builds


def test_different_seed_gives_different_images(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = pair
    c = write_dataset(tmp_path / "c", dataclasses.replace(SMALL, seed=2))
    files_a, files_c = _files(a), _files(c)
    assert files_a.keys() == files_c.keys()
    assert load_dataset_info(a)["sha256"] != load_dataset_info(c)["sha256"]
    assert all(files_a[k] != files_c[k] for k in files_a)


def test_layout_counts_and_image_format(pair: tuple[Path, Path]) -> None:
    root, _ = pair
    info = load_dataset_info(root)
    assert info["classes"] == list(CLASSES) and len(CLASSES) >= 10
    assert info["seed"] == 1 and info["image_size"] == 48
    for split, per_class in (("train", 3), ("val", 2)):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(CLASSES)
        assert info["counts"][split] == {name: per_class for name in CLASSES}
        for name in CLASSES:
            pngs = sorted((root / split / name).glob("*.png"))
            assert len(pngs) == per_class
            for p in pngs:
                with Image.open(p) as img:
                    assert (img.format, img.mode, img.size) == ("PNG", "RGB", (48, 48))


def test_images_are_order_independent(pair: tuple[Path, Path]) -> None:
    # any single image can be regenerated alone from (seed, split, class, index)
    root, _ = pair
    k = CLASSES.index("hexagon")
    alone = generate_image(k, image_rng(1, "val", k, 1), 48)
    with Image.open(root / "val" / "hexagon" / "hexagon_00001.png") as img:
        assert np.array_equal(np.asarray(img), np.asarray(alone))
    other = generate_image(k, image_rng(1, "val", k, 0), 48)
    assert not np.array_equal(np.asarray(other), np.asarray(alone))


def test_workers_give_the_same_dataset(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = pair
    assert _files(write_dataset(tmp_path / "w", SMALL, workers=2)) == _files(a)


def _orientation_histogram(x: np.ndarray, bins: int = 8) -> np.ndarray:
    # colour-blind structure: magnitude-weighted histogram of edge orientations
    gy, gx = np.gradient(x.mean(-1), axis=(1, 2))
    mag, ang = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), np.pi)
    b = np.minimum((ang / np.pi * bins).astype(int), bins - 1)
    h = np.stack([(mag * (b == i)).sum((1, 2)) for i in range(bins)], axis=1)
    return h / (h.sum(1, keepdims=True) + 1e-8)


def _nearest_class_mean(ftr: np.ndarray, ytr: np.ndarray, fva: np.ndarray, yva: np.ndarray) -> float:
    means = np.stack([ftr[ytr == k].mean(0) for k in range(len(CLASSES))])
    return float((((fva[:, None] - means[None]) ** 2).sum(-1).argmin(1) == yva).mean())


def test_classes_carry_shape_signal_but_are_not_trivial(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "d", SynthConfig(seed=5, train_per_class=30, val_per_class=15))

    def load(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        full, small, ys = [], [], []
        for k, name in enumerate(CLASSES):
            for p in sorted((root / split / name).glob("*.png")):
                with Image.open(p) as img:
                    full.append(np.asarray(img, dtype=np.float32) / 255)
                    small.append(np.asarray(img.resize((16, 16), Image.BILINEAR), dtype=np.float32).ravel())
                ys.append(k)
        return np.stack(full), np.stack(small), np.array(ys)

    tr_full, tr_small, ytr = load("train")
    va_full, va_small, yva = load("val")
    chance = 1 / len(CLASSES)
    # colour, background and pose are nuisances: raw pixels are far from enough ...
    assert _nearest_class_mean(tr_small, ytr, va_small, yva) < 0.5
    # ... yet the classes differ in structure: a crude edge feature clearly beats chance
    orient = _nearest_class_mean(_orientation_histogram(tr_full), ytr, _orientation_histogram(va_full), yva)
    assert 1.5 * chance < orient < 0.9


@pytest.mark.parametrize("field, value", [
    ("seed", -1), ("seed", 1.5), ("image_size", 8), ("image_size", True), ("train_per_class", 0),
    ("val_per_class", 0), ("num_classes", 1), ("num_classes", len(CLASSES) + 1),
])
def test_config_validation(field: str, value: object) -> None:
    with pytest.raises(CoatnetEdgeError, match=field) as err:
        SynthConfig(**{field: value})
    assert "fix:" in str(err.value) and "\n" not in str(err.value)


def test_num_classes_takes_a_prefix(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "d", dataclasses.replace(SMALL, num_classes=3))
    assert load_dataset_info(root)["classes"] == list(CLASSES[:3])
    assert sorted(p.name for p in (root / "train").iterdir()) == sorted(CLASSES[:3])


def test_existing_dataset_is_reused_not_regenerated(pair: tuple[Path, Path]) -> None:
    a, _ = pair
    before = _files(a)
    calls: list[int] = []
    assert write_dataset(a, SMALL, progress=lambda done, total: calls.append(done)) == a
    assert calls == [] and _files(a) == before


def test_empty_existing_directory_is_filled(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    write_dataset(out, dataclasses.replace(SMALL, num_classes=2))
    assert load_dataset_info(out)["num_images"] == 2 * (3 + 2)


@pytest.mark.parametrize("setup", ["other_files", "other_config", "file"])
def test_occupied_out_is_an_error(setup: str, pair: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "occupied"
    if setup == "other_files":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif setup == "other_config":
        (out / "train").mkdir(parents=True)
        (out / "dataset.json").write_text((pair[0] / "dataset.json").read_text())
    else:
        out.write_text("a file")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(CoatnetEdgeError) as err:
        write_dataset(out, dataclasses.replace(SMALL, seed=9))
    msg = str(err.value)
    assert str(out) in msg and "--out" in msg and "\n" not in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing touched, no temp left


def test_interrupted_generation_leaves_nothing(tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    def progress(done: int, total: int) -> None:
        assert total == 12 * (3 + 2)
        if done == 7:
            raise Stop

    parent = tmp_path / "parent"
    with pytest.raises(Stop):
        write_dataset(parent / "out", SMALL, progress=progress)
    assert list(parent.iterdir()) == []  # no OUT, no temporary sibling


def test_load_dataset_info_errors(tmp_path: Path) -> None:
    with pytest.raises(CoatnetEdgeError, match=r"no dataset\.json"):
        load_dataset_info(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(CoatnetEdgeError, match="cannot read"):
        load_dataset_info(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "something else"}))
    with pytest.raises(CoatnetEdgeError, match="not a coatnet-edge synthetic dataset"):
        load_dataset_info(tmp_path)


def test_generate_image_rejects_bad_arguments() -> None:
    with pytest.raises(CoatnetEdgeError, match="class index"):
        generate_image(len(CLASSES), np.random.default_rng(0))
    with pytest.raises(CoatnetEdgeError, match="image_size"):
        generate_image(0, np.random.default_rng(0), 4)


def test_glyph_family_is_deterministic_and_unlike_the_shapes(tmp_path: Path) -> None:
    """The second family: its own classes, the same pixels for the same seed, darker images than the shapes
    (measured: mean pixel ~45 vs ~110 of 255); a trained model's accuracy on it is in docs/int8_peers.md."""
    from coatnet_edge.data.glyphs import GLYPH_CLASSES

    config = SynthConfig(seed=3, train_per_class=12, val_per_class=6, family="glyphs")
    first, second = write_dataset(tmp_path / "a", config), write_dataset(tmp_path / "b", config)
    info = load_dataset_info(first)
    assert info["classes"] == list(GLYPH_CLASSES) and info["config"]["family"] == "glyphs"
    assert info["pixels_sha256"] == load_dataset_info(second)["pixels_sha256"]
    shapes = write_dataset(tmp_path / "s", SynthConfig(seed=3, train_per_class=12, val_per_class=6))
    assert "family" not in load_dataset_info(shapes)["config"]  # shape datasets written before glyphs stay reusable

    def brightness(root: Path) -> float:
        return float(np.mean([np.asarray(Image.open(p), dtype=np.float32).mean() for p in
                              sorted((root / "val").rglob("*.png"))]))

    assert brightness(first) < 0.8 * brightness(shapes)
    with pytest.raises(CoatnetEdgeError, match="unknown dataset family 'fonts'"):
        SynthConfig(family="fonts")  # type: ignore[arg-type]
    with pytest.raises(CoatnetEdgeError, match="num_classes"):
        SynthConfig(family="glyphs", num_classes=len(GLYPH_CLASSES) + 1)
