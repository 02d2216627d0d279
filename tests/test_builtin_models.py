"""The shipped teacher and student: real C-C-T-T CoAtNets whose manifests tell the truth."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from coatnet_edge.data.folders import scan_folder
from coatnet_edge.data.synth import load_dataset_info
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.hashing import sha256_file
from coatnet_edge.models.builtin import builtin_manifest, builtin_path
from coatnet_edge.models.checkpoint import load_checkpoint
from coatnet_edge.models.coatnet import MBConv, TransformerBlock
from coatnet_edge.models.profile import profile_model
from coatnet_edge.training.predict import predict_logits


@pytest.fixture(scope="module")
def builtin_data(default_run: tuple) -> Path:
    """The built-in dataset README command 1 generated (the pixel hash below proves it is the same one)."""
    return default_run[0] / "data" / "builtin"


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_manifest_matches_the_shipped_file(role: str) -> None:
    manifest = builtin_manifest(role)
    path = builtin_path(f"builtin:{role}")
    assert manifest["sha256"] == sha256_file(path)
    assert path.stat().st_size < 8 * 2**20
    model, info = load_checkpoint(f"builtin:{role}")
    assert manifest["variant"] == model.cfg.name and len(info.class_names) == 12
    assert any(isinstance(m, MBConv) for m in model.modules())
    assert any(isinstance(m, TransformerBlock) for m in model.modules())


def test_student_is_at_least_twice_cheaper() -> None:
    teacher, _ = load_checkpoint("builtin:teacher")
    student, _ = load_checkpoint("builtin:student")
    assert profile_model(teacher).macs >= 2 * profile_model(student).macs


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_stated_accuracy_is_reproduced(builtin_data: Path, role: str) -> None:
    manifest = builtin_manifest(role)
    # pixels, not PNG bytes: the bytes also depend on the zlib inside Pillow
    assert manifest["dataset"]["pixels_sha256"] == load_dataset_info(builtin_data)["pixels_sha256"]
    model, info = load_checkpoint(f"builtin:{role}")
    logits, labels = predict_logits(model, scan_folder(builtin_data / "val", labeled=True, verify=False),
                                    info.preprocess, device=torch.device("cpu"))
    top1 = float((logits.argmax(1) == labels).float().mean())
    assert abs(top1 - manifest["val_top1"]) < 1e-3, (top1, manifest["val_top1"])


def test_unknown_builtin_name() -> None:
    with pytest.raises(CoatnetEdgeError, match="unknown built-in model 'builtin:tutor'"):
        load_checkpoint("builtin:tutor")
