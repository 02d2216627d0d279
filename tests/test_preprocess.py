"""Preprocessing: every common format and mode decodes to RGB, the numbers match timm's eval transform."""

from __future__ import annotations

import io
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from coatnet_edge.data.preprocess import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    PreprocessConfig,
    load_image,
    preprocess_batch,
    preprocess_file,
    preprocess_image,
    to_rgb,
)
from coatnet_edge.errors import CoatnetEdgeError

REPO = Path(__file__).resolve().parents[1]
SMALL = PreprocessConfig(image_size=32)


def _pattern(w: int = 48, h: int = 40) -> np.ndarray:
    """HWC uint8 gradient with structure in every channel."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], -1).astype(np.uint8)


def _assert_ok(path: Path, cfg: PreprocessConfig = SMALL) -> Image.Image:
    img = load_image(path)
    assert img.mode == "RGB"
    assert np.asarray(img).dtype == np.uint8
    out = preprocess_file(path, cfg)
    assert out.shape == (3, cfg.image_size, cfg.image_size)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert np.isfinite(out).all()
    return img


@pytest.mark.parametrize(("ext", "kwargs"), [
    ("jpg", {"quality": 95}), ("png", {}), ("webp", {"lossless": True}),
    ("bmp", {}), ("tiff", {}), ("gif", {}),
])
def test_formats(tmp_path: Path, ext: str, kwargs: dict) -> None:
    path = tmp_path / f"img.{ext}"
    Image.fromarray(_pattern()).save(path, **kwargs)
    img = _assert_ok(path)
    assert img.size == (48, 40)
    if ext in ("png", "webp", "bmp", "tiff"):  # lossless: exact pixels back
        np.testing.assert_array_equal(np.asarray(img), _pattern())


def _mode_image(mode: str) -> Image.Image:
    rgb = Image.fromarray(_pattern())
    if mode == "P-transparent":
        img = rgb.convert("P")
        img.info["transparency"] = 0
        return img
    return rgb.convert(mode)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "P-transparent", "RGBA", "1"])
def test_modes_png(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "img.png"
    _mode_image(mode).save(path)
    with Image.open(path) as raw:
        assert raw.mode == mode.split("-")[0]
    img = _assert_ok(path)
    with Image.open(path) as raw:
        want = np.asarray(raw.convert("RGBA").convert("RGB"))
    np.testing.assert_array_equal(np.asarray(img), want)


def test_rgba_drops_alpha_like_timm(tmp_path: Path) -> None:
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[..., :3] = (200, 100, 50)  # fully transparent but coloured: the colour is kept, not composited
    path = tmp_path / "a.png"
    Image.fromarray(arr, "RGBA").save(path)
    assert load_image(path).getpixel((3, 3)) == (200, 100, 50)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(_pattern()).convert("CMYK").save(path, quality=95)
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    _assert_ok(path)


def test_ycbcr(tmp_path: Path) -> None:
    img = Image.fromarray(_pattern()).convert("YCbCr")
    assert to_rgb(img).mode == "RGB"


@pytest.mark.parametrize("ext", ["png", "tiff"])
def test_16bit_gray_is_scaled_not_clipped(tmp_path: Path, ext: str) -> None:
    arr = np.full((10, 12), 32896, np.uint16)  # 128 * 257: mid-gray
    arr[0, 0], arr[0, 1] = 0, 65535
    path = tmp_path / f"g16.{ext}"
    Image.fromarray(arr).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I;16")
    img = _assert_ok(path)
    assert img.getpixel((5, 5)) == (128, 128, 128)
    assert img.getpixel((0, 0)) == (0, 0, 0) and img.getpixel((1, 0)) == (255, 255, 255)


def test_int32_and_float_modes() -> None:
    i16_in_i = Image.fromarray(np.full((4, 4), 32896, np.int32))  # 16-bit data in Pillow's "I" (e.g. PGM)
    assert i16_in_i.mode == "I" and to_rgb(i16_in_i).getpixel((0, 0)) == (128, 128, 128)
    i32 = Image.fromarray(np.full((4, 4), 2**30, np.int32))
    assert to_rgb(i32).getpixel((0, 0)) == (128, 128, 128)
    f = Image.fromarray(np.array([[-5.0, 100.4, 300.0, np.nan]], np.float32))
    assert f.mode == "F"
    assert [to_rgb(f).getpixel((i, 0))[0] for i in range(4)] == [0, 100, 255, 0]


def _exif_image(tmp_path: Path, ext: str) -> Path:
    arr = np.zeros((20, 40, 3), np.uint8)  # stored 40 wide, 20 high
    arr[:10, :10] = (255, 0, 0)  # red block at the stored top-left
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    path = tmp_path / f"exif.{ext}"
    img.save(path, exif=exif, **({"quality": 95} if ext == "jpg" else {}))
    return path


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_exif_orientation_applied(tmp_path: Path, ext: str) -> None:
    img = _assert_ok(_exif_image(tmp_path, ext))
    assert img.size == (20, 40)  # transposed: now 20 wide, 40 high
    # clockwise turn moves the stored top-left corner to the top-right
    r, g, b = img.getpixel((17, 2))
    assert r > 200 and g < 50 and b < 50
    r, g, b = img.getpixel((2, 2))
    assert r < 50


def test_constant_colour_normalizes_exactly() -> None:
    colour = (10, 128, 250)
    out = preprocess_image(Image.new("RGB", (50, 37), colour), SMALL)
    for c in range(3):
        want = (colour[c] / 255 - IMAGENET_DEFAULT_MEAN[c]) / IMAGENET_DEFAULT_STD[c]
        np.testing.assert_allclose(out[c], want, rtol=0, atol=1e-6)


def _reference(img: Image.Image, size: int, crop_pct: float, resample: int, mean, std) -> np.ndarray:
    """Independent restatement of timm eval: Resize(shorter side), CenterCrop, ToTensor, Normalize."""
    scale = math.floor(size / crop_pct)
    w, h = img.size
    new = (scale, int(scale * h / w)) if w < h else (int(scale * w / h), scale)
    if new != img.size:
        img = img.resize(new, resample)
    top = round((img.height - size) / 2)
    left = round((img.width - size) / 2)
    img = img.crop((left, top, left + size, top + size))
    x = np.array(img).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    m = np.array(mean, np.float32)[:, None, None]
    s = np.array(std, np.float32)[:, None, None]
    return (x - m) / s


@pytest.mark.parametrize(("w", "h"), [(301, 200), (200, 301), (97, 64), (64, 64), (33, 500), (640, 480)])
@pytest.mark.parametrize("interp", [
    ("bicubic", Image.Resampling.BICUBIC), ("bilinear", Image.Resampling.BILINEAR),
    ("nearest", Image.Resampling.NEAREST),
])
def test_geometry_matches_reference(w: int, h: int, interp: tuple[str, int]) -> None:
    rng = np.random.default_rng(w * 1000 + h)
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    arr[h // 3: h // 3 + 5, w // 2: w // 2 + 5] = (255, 0, 255)  # off-center marker
    img = Image.fromarray(arr)
    cfg = PreprocessConfig(image_size=56, crop_pct=0.9, interpolation=interp[0])
    ref = _reference(img, 56, 0.9, interp[1], cfg.mean, cfg.std)
    out = preprocess_image(img, cfg)
    assert out.shape == ref.shape == (3, 56, 56)
    assert np.abs(out - ref).max() == 0


@pytest.mark.slow
def test_matches_timm_eval_transform() -> None:
    timm_data = pytest.importorskip("timm.data")  # slow import (torch); the parity check is the point
    rng = np.random.default_rng(0)
    cfgs = (
        PreprocessConfig(),
        PreprocessConfig(image_size=160, crop_pct=0.95, interpolation="bilinear"),
        PreprocessConfig(image_size=96, crop_pct=1.0, interpolation="nearest",
                         mean=(0.5,) * 3, std=(0.4,) * 3),
    )
    for shape in ((333, 250, 3), (250, 333, 3), (37, 1000, 3)):
        img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
        for cfg in cfgs:
            tf = timm_data.create_transform(
                cfg.image_size, is_training=False, interpolation=cfg.interpolation, crop_pct=cfg.crop_pct,
                mean=cfg.mean, std=cfg.std,
            )
            want = tf(img).numpy()
            got = preprocess_image(img, cfg)
            assert want.shape == got.shape
            assert np.abs(want - got).max() == 0, (shape, cfg)


def test_crop_larger_than_resize_is_padded() -> None:
    # crop_pct <= 1 never needs this; call the crop directly to keep torchvision's padding rule honest
    from coatnet_edge.data.preprocess import _center_crop

    out = _center_crop(Image.new("RGB", (10, 6), (9, 9, 9)), 8)
    arr = np.asarray(out)
    assert out.size == (8, 8)
    assert (arr[0] == 0).all() and (arr[1:7] == 9).all() and (arr[7] == 0).all()


def test_batch(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (40 + i, 30), (i * 50, 0, 0)).save(paths[-1])
    batch = preprocess_batch(paths, SMALL)
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[1], preprocess_file(paths[1], SMALL))
    assert preprocess_batch([], SMALL).shape == (0, 3, 32, 32)


# --- config ---------------------------------------------------------------------------------------


def test_config_defaults_and_resize_size() -> None:
    cfg = PreprocessConfig()
    assert cfg.resize_size == 256  # timm: floor(224 / 0.875)
    assert PreprocessConfig(image_size=384, crop_pct=1.0).resize_size == 384
    assert PreprocessConfig(image_size=224, crop_pct=0.9).resize_size == 248


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"crop_pct": 0}, "crop_pct"),
    ({"crop_pct": 1.2}, "crop_pct"),
    ({"image_size": 0}, "image_size"),
    ({"image_size": 224.0}, "image_size"),
    ({"interpolation": "lanczos"}, "interpolation"),
    ({"mean": (0.5, 0.5)}, "mean"),
    ({"std": (0.2, 0.0, 0.2)}, "std"),
    ({"std": "abc"}, "std"),
])
def test_config_validation(kwargs: dict, needle: str) -> None:
    with pytest.raises(CoatnetEdgeError) as info:
        PreprocessConfig(**kwargs)
    msg = str(info.value)
    assert needle in msg and "fix:" in msg and "\n" not in msg


def test_config_coerces_and_round_trips() -> None:
    cfg = PreprocessConfig(
        image_size=160, crop_pct=1, interpolation="BILINEAR", mean=[0.5, 0.5, 0.5], std=[1, 1, 1]
    )
    assert cfg.mean == (0.5, 0.5, 0.5) and cfg.std == (1.0, 1.0, 1.0)
    assert cfg.interpolation == "bilinear" and isinstance(cfg.crop_pct, float)
    d = cfg.to_dict()
    assert d["mean"] == [0.5, 0.5, 0.5]
    assert PreprocessConfig.from_dict(d) == cfg
    hash(cfg)  # frozen, hashable


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(CoatnetEdgeError) as info:
        PreprocessConfig.from_dict({"image_size": 224, "crop": 0.9, "resize": 1}, source="model.json")
    msg = str(info.value)
    assert "crop, resize" in msg and "model.json" in msg and "\n" not in msg
    with pytest.raises(CoatnetEdgeError, match=r"model\.json: invalid preprocessing config"):
        PreprocessConfig.from_dict({"crop_pct": 2.0}, source="model.json")


# --- errors ---------------------------------------------------------------------------------------


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _jpg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "empty.png": b"",
        "truncated.jpg": _jpg_bytes()[: len(_jpg_bytes()) // 2],
        "truncated.png": _png_bytes()[: len(_png_bytes()) // 2],
        "text.jpg": b"hello, I am not a picture\n" * 10,
    }
    out = {}
    for name, data in files.items():
        out[name] = tmp_path / name
        out[name].write_bytes(data)
    out["missing.jpg"] = tmp_path / "missing.jpg"
    out["folder.jpg"] = tmp_path / "folder.jpg"
    out["folder.jpg"].mkdir()
    return out


@pytest.mark.parametrize("name", ["empty.png", "truncated.jpg", "truncated.png", "text.jpg", "missing.jpg",
                                  "folder.jpg"])
def test_bad_files_raise_one_line_error(tmp_path: Path, name: str) -> None:
    path = _bad_files(tmp_path)[name]
    for call in (load_image, lambda p: preprocess_file(p, SMALL)):
        with pytest.raises(CoatnetEdgeError) as info:
            call(path)
        msg = str(info.value)
        assert str(path) in msg and "\n" not in msg and "fix:" in msg
        assert info.value.path == path


def test_truncated_fails_even_if_pillow_allows_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(CoatnetEdgeError, match="truncated"):
        load_image(_bad_files(tmp_path)["truncated.jpg"])


def test_decompression_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # > 2x the limit is an error in Pillow
    with pytest.raises(CoatnetEdgeError, match="too large"):
        load_image(path)


def test_no_torch_needed(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    Image.fromarray(_pattern()).save(path)
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        from coatnet_edge.data import folders, preprocess
        cfg = preprocess.PreprocessConfig(image_size=32)
        x = preprocess.preprocess_file({str(path)!r}, cfg)
        assert x.shape == (3, 32, 32), x.shape
        assert len(folders.scan_unlabeled_folder({str(tmp_path)!r})) == 1
        heavy = sorted(m for m in ("torch", "torchvision", "timm") if sys.modules.get(m) is not None)
        assert not heavy, heavy
        print("ok")
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
