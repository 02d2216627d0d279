"""Image folders: what is used, what is skipped (and why), and the errors for folders we can't use."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from coatnet_edge.data.folders import (
    IMAGE_EXTENSIONS,
    ImageFolder,
    format_skipped,
    looks_labeled,
    scan_folder,
    scan_labeled_folder,
    scan_unlabeled_folder,
)
from coatnet_edge.errors import CoatnetEdgeError


def _img(path: Path, colour: tuple[int, int, int] = (10, 20, 30), size: tuple[int, int] = (12, 9)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _truncated(path: Path) -> Path:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(buf, "JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def _labeled(root: Path) -> Path:
    _img(root / "cat" / "b.jpg")
    _img(root / "cat" / "a.png")
    _img(root / "cat" / "nested" / "deeper" / "c.JPEG")  # nested + upper-case extension
    _img(root / "dog" / "x.webp")
    _truncated(root / "dog" / "broken.jpg")
    _img(root / "emu" / "e.bmp")
    (root / "emu" / "zero.png").write_bytes(b"")
    (root / "emu" / "notes.txt").write_text("hi")
    (root / "emu" / ".DS_Store").write_bytes(b"junk")  # hidden: ignored entirely
    _img(root / ".hidden_class" / "h.png")  # hidden dir: not a class
    return root


def test_labeled_folder(tmp_path: Path) -> None:
    root = _labeled(tmp_path / "data")
    calls: list[tuple[int, int]] = []
    folder = scan_labeled_folder(root, progress=lambda done, total: calls.append((done, total)))
    assert folder.labeled and folder.classes == ["cat", "dog", "emu"]
    rel = [p.relative_to(root).as_posix() for p in folder.paths]
    assert rel == ["cat/a.png", "cat/b.jpg", "cat/nested/deeper/c.JPEG", "dog/x.webp", "emu/e.bmp"]
    assert folder.labels.tolist() == [0, 0, 0, 1, 2] and folder.labels.dtype == np.int64
    assert len(folder) == 5
    skipped = {s.path.relative_to(root).as_posix(): s.reason for s in folder.skipped}
    assert set(skipped) == {"dog/broken.jpg", "emu/notes.txt", "emu/zero.png"}
    assert "truncated" in skipped["dog/broken.jpg"]
    assert "empty file" in skipped["emu/zero.png"]
    assert skipped["emu/notes.txt"] == "not an image file (extension .txt)"
    assert all("\n" not in r and str(root) not in r for r in skipped.values())
    assert folder.summary() == "5 images in 3 classes (3 skipped)"
    # progress: a start call, then one per image-extension file
    assert calls[0] == (0, 7) and calls[-1] == (7, 7) and len(calls) == 8
    # deterministic
    again = scan_labeled_folder(root)
    assert again.paths == folder.paths and [s.path for s in again.skipped] == [s.path for s in folder.skipped]


def test_format_skipped(tmp_path: Path) -> None:
    folder = scan_labeled_folder(_labeled(tmp_path / "data"))
    lines = format_skipped(folder.skipped)
    assert len(lines) == 3
    assert lines[0].startswith(f"  skipped {tmp_path / 'data' / 'dog' / 'broken.jpg'}: corrupt or truncated")
    assert format_skipped(folder.skipped, limit=1)[-1] == "  ... and 2 more skipped"


def test_verify_false_keeps_undecoded_images(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    root = _labeled(tmp_path / "data")
    folder = scan_labeled_folder(root, verify=False, progress=lambda *a: calls.append(a))
    assert len(folder) == 7 and len(folder.skipped) == 1  # only notes.txt
    assert calls == []


def test_loose_files_in_labeled_root_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _img(root / "a" / "1.png")
    _img(root / "loose.png")
    folder = scan_labeled_folder(root)
    assert folder.paths == [root / "a" / "1.png"]
    assert [(s.path.name, s.reason) for s in folder.skipped] == [("loose.png", "not inside a class folder")]


def test_labeled_scan_of_flat_folder_errors(tmp_path: Path) -> None:
    _img(tmp_path / "1.png")
    with pytest.raises(CoatnetEdgeError) as info:
        scan_labeled_folder(tmp_path)
    msg = str(info.value)
    assert "not a labeled folder" in msg and "root/<class>/<image>" in msg and "unlabeled" in msg
    assert str(tmp_path) in msg and "\n" not in msg


@pytest.mark.parametrize("nested", [False, True])
def test_unlabeled(tmp_path: Path, nested: bool) -> None:
    sub = tmp_path / "a" / "b" if nested else tmp_path
    for i in range(3):
        _img(sub / f"{i}.png")
    _img(tmp_path / "top.gif")
    (tmp_path / "readme.md").write_text("x")
    folder = scan_unlabeled_folder(tmp_path)
    assert not folder.labeled and folder.classes == [] and folder.labels is None
    assert len(folder) == 4 and all(s.label is None for s in folder.samples)
    assert [s.path.name for s in folder.skipped] == ["readme.md"]
    assert folder.summary() == "4 images (unlabeled) (1 skipped)"
    rel = [p.relative_to(tmp_path).as_posix() for p in folder.paths]
    assert rel == sorted(rel)


def test_auto_detect(tmp_path: Path) -> None:
    labeled = tmp_path / "labeled"
    _img(labeled / "a" / "1.png")
    _img(labeled / "b" / "2.png")
    (labeled / "README.txt").write_text("loose non-images don't make it unlabeled")
    assert looks_labeled(labeled)
    assert scan_folder(labeled).classes == ["a", "b"]

    flat = tmp_path / "flat"
    _img(flat / "1.png")
    _img(flat / "sub" / "2.png")  # loose image at top wins: unlabeled
    assert not looks_labeled(flat)
    folder = scan_folder(flat)
    assert not folder.labeled and len(folder) == 2

    assert scan_folder(labeled, labeled=False).labels is None
    with pytest.raises(CoatnetEdgeError, match="not a labeled folder"):
        scan_folder(flat / "sub", labeled=True)


def _assert_one_line(err: pytest.ExceptionInfo[CoatnetEdgeError], path: Path, *needles: str) -> str:
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "fix:" in msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_empty_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(CoatnetEdgeError) as info:
        scan_folder(tmp_path)
    _assert_one_line(info, tmp_path, "no images found")
    with pytest.raises(CoatnetEdgeError) as info:
        scan_labeled_folder(tmp_path)
    _assert_one_line(info, tmp_path, "not a labeled folder")


def test_missing_folder_and_file_instead_of_folder(tmp_path: Path) -> None:
    for scan in (scan_folder, scan_labeled_folder, scan_unlabeled_folder):
        with pytest.raises(CoatnetEdgeError) as info:
            scan(tmp_path / "nope")
        _assert_one_line(info, tmp_path / "nope", "not found")
        f = _img(tmp_path / "file.png")
        with pytest.raises(CoatnetEdgeError) as info:
            scan(f)
        _assert_one_line(info, f, "not a folder")


def test_class_with_only_corrupt_images_errors(tmp_path: Path) -> None:
    _img(tmp_path / "good" / "1.png")
    _truncated(tmp_path / "bad" / "1.jpg")
    (tmp_path / "bad" / "2.png").write_bytes(b"")
    with pytest.raises(CoatnetEdgeError) as info:
        scan_labeled_folder(tmp_path)
    _assert_one_line(info, tmp_path / "bad", "'bad' has no usable images")
    (tmp_path / "empty_class").mkdir()
    (tmp_path / "bad" / "1.jpg").unlink()
    (tmp_path / "bad" / "2.png").unlink()
    _img(tmp_path / "bad" / "ok.png")
    with pytest.raises(CoatnetEdgeError) as info:
        scan_labeled_folder(tmp_path)
    _assert_one_line(info, tmp_path / "empty_class", "no usable images")


def test_all_corrupt_folder_error_counts(tmp_path: Path) -> None:
    _truncated(tmp_path / "a.jpg")
    (tmp_path / "b.png").write_bytes(b"")
    (tmp_path / "c.txt").write_text("x")
    with pytest.raises(CoatnetEdgeError) as info:
        scan_unlabeled_folder(tmp_path)
    _assert_one_line(info, tmp_path, "0 usable images", "3 skipped", "2 unreadable", "1 not an image")


def test_image_extensions_case_insensitive(tmp_path: Path) -> None:
    assert ".jpg" in IMAGE_EXTENSIONS and ".tiff" in IMAGE_EXTENSIONS
    _img(tmp_path / "A.PNG")
    _img(tmp_path / "b.TIF")
    assert len(scan_unlabeled_folder(tmp_path)) == 2


def test_summary_singular() -> None:
    folder = ImageFolder(root=Path("."), samples=[], classes=["only"], skipped=[])
    assert folder.summary() == "0 images in 1 class"
