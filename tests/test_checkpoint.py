"""Checkpoints: safetensors with an embedded config; nothing is ever unpickled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.models.checkpoint import load_checkpoint, load_state_dict, read_checkpoint_info, save_checkpoint
from coatnet_edge.models.registry import create_model


@pytest.fixture
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("coatnet_pico", image_size=64, num_classes=4).eval()


def test_round_trip_restores_weights_config_and_preprocessing(tmp_path: Path, model: torch.nn.Module) -> None:
    pre = PreprocessConfig(image_size=64, crop_pct=0.9, interpolation="bilinear")
    path = save_checkpoint(model, tmp_path / "m.safetensors", preprocess=pre, class_names=list("abcd"),
                           extra={"note": "test"})
    loaded, info = load_checkpoint(path)
    assert info.model == model.cfg and info.preprocess == pre and info.class_names == list("abcd")
    assert info.extra == {"note": "test"}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert not loaded.training


def test_pth_state_dict_loads_only_with_config(tmp_path: Path, model: torch.nn.Module) -> None:
    ckpt = save_checkpoint(model, tmp_path / "m.safetensors")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(read_checkpoint_info(ckpt).to_dict()))
    pth = tmp_path / "m.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, pth)
    with pytest.raises(CoatnetEdgeError, match="carries no model config"):
        load_checkpoint(pth)
    loaded, _ = load_checkpoint(pth, config=config)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


class _Payload:
    def __reduce__(self) -> tuple:
        return (print, ("this must never run",))


def test_pickled_objects_are_refused_not_executed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"weights": torch.zeros(1), "payload": _Payload()}, path)
    with pytest.raises(CoatnetEdgeError) as err:
        load_state_dict(path)
    message = str(err.value)
    assert "refused to unpickle" in message and str(path) in message and "safetensors" in message
    assert "this must never run" not in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"lr: 0.1\nepochs: 3\n", b""])
def test_a_file_that_is_no_checkpoint_is_called_that(tmp_path: Path, content: bytes) -> None:
    """A text file (or an empty one) under a checkpoint name is 'not a PyTorch checkpoint', not a refused pickle."""
    path = tmp_path / "args.pth"
    path.write_bytes(content)
    with pytest.raises(CoatnetEdgeError) as err:
        load_state_dict(path)
    assert err.value.reason.startswith("not a PyTorch checkpoint") and "unpickle" not in str(err.value)
    assert err.value.path == path and ".safetensors" in err.value.fix


def test_mismatched_keys_name_the_first_ones_and_the_file(tmp_path: Path, model: torch.nn.Module) -> None:
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    state = load_state_dict(path)
    state.pop("head.weight")
    state["extra.weight"] = torch.zeros(1)
    meta = {"coatnet_edge": json.dumps(read_checkpoint_info(path).to_dict())}
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad), metadata=meta)
    with pytest.raises(CoatnetEdgeError) as err:
        load_checkpoint(bad)
    message = str(err.value)
    assert str(bad) in message and "missing keys (first: head.weight)" in message
    assert "unexpected keys (first: extra.weight)" in message and "\n" not in message


def test_wrong_class_count_is_a_shape_mismatch(tmp_path: Path, model: torch.nn.Module) -> None:
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    info = read_checkpoint_info(path).to_dict()
    info["model"]["num_classes"] = 7
    with pytest.raises(CoatnetEdgeError, match=r"shape mismatches \(first: head.weight \(4, 160\) vs \(7, 160\)"):
        load_checkpoint(path, config=info)
    with pytest.raises(CoatnetEdgeError, match="checkpoint has 4 classes, 7 were expected"):
        load_checkpoint(path, num_classes=7)


@pytest.mark.parametrize("damage", ["truncate", "zero", "garbage"])
def test_damaged_checkpoint_is_one_line_error(tmp_path: Path, model: torch.nn.Module, damage: str) -> None:
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "zero": b"", "garbage": b"\x00" * 64}[damage])
    with pytest.raises(CoatnetEdgeError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_foreign_safetensors_without_config(tmp_path: Path, model: torch.nn.Module) -> None:
    path = tmp_path / "plain.safetensors"
    save_file(model.state_dict(), str(path))
    with pytest.raises(CoatnetEdgeError, match="no coatnet-edge config"):
        load_checkpoint(path)


def test_save_is_atomic_and_safetensors_only(tmp_path: Path, model: torch.nn.Module,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CoatnetEdgeError, match="written as safetensors"):
        save_checkpoint(model, tmp_path / "m.pth")
    import safetensors.torch

    def crash(*args: object, **kwargs: object) -> None:
        Path(args[1]).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CoatnetEdgeError, match="file not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_artifacts_get_normal_permissions(tmp_path: Path, model: torch.nn.Module) -> None:
    import os

    mask = os.umask(0)
    os.umask(mask)
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
