"""Training and distillation on a pico CoAtNet and a few hundred built-in images, a few steps each."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from coatnet_edge.data.defaults import builtin_preprocess
from coatnet_edge.data.folders import scan_folder
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.models.checkpoint import load_checkpoint
from coatnet_edge.training.losses import kd_loss
from coatnet_edge.training.predict import predict_logits
from coatnet_edge.training.verbs import distill, train
from tests.conftest import REPO, assert_one_line_error, run_cli

FAST = {"batch_size": 16, "workers": 0, "lr": 3e-3, "warmup_epochs": 0.2, "max_steps_per_epoch": 8}


def _quiet(_: str) -> None:
    pass


def _eval(model: torch.nn.Module, folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    return predict_logits(model, scan_folder(folder, labeled=True), builtin_preprocess(), device=torch.device("cpu"))


@pytest.fixture(scope="module")
def teacher(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teacher")
    train(tiny_dataset, out=out, model="coatnet_pico", epochs=4, log=_quiet, **FAST)
    return out / "last.safetensors"


def test_training_lowers_the_loss(tiny_dataset: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    result = train(tiny_dataset, out=tmp_path, model="coatnet_pico", epochs=4, log=_quiet, **FAST)
    from coatnet_edge.models.registry import create_model

    torch.manual_seed(0)
    untrained = create_model("coatnet_pico", num_classes=12, image_size=64)
    trained, info = load_checkpoint(result.checkpoint)
    before = torch.nn.functional.cross_entropy(*_eval(untrained, tiny_dataset / "train"))
    after = torch.nn.functional.cross_entropy(*_eval(trained, tiny_dataset / "train"))
    assert after < before - 0.05, (before, after)
    assert info.class_names == scan_folder(tiny_dataset / "train").classes
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4] and "val_top1" in result.history[-1]
    assert (tmp_path / "best.safetensors").is_file() and (tmp_path / "last.state.json").is_file()


def test_distillation_moves_student_towards_teacher(tiny_dataset: Path, teacher: Path, tmp_path: Path) -> None:
    teacher_model, _ = load_checkpoint(teacher)
    t_logits, _ = _eval(teacher_model, tiny_dataset / "val")
    result = distill(tiny_dataset, teacher=teacher, out=tmp_path, student="coatnet_pico", epochs=2, seed=1,
                     log=_quiet, **FAST)
    from coatnet_edge.models.registry import create_model

    torch.manual_seed(1)
    before = kd_loss(_eval(create_model("coatnet_pico", num_classes=12, image_size=64), tiny_dataset / "val")[0],
                     t_logits, 4.0)
    student, _ = load_checkpoint(result.checkpoint)
    after = kd_loss(_eval(student, tiny_dataset / "val")[0], t_logits, 4.0)
    assert after < before * 0.8, (before, after)
    assert result.history[-1]["train_kd"] < result.history[0]["train_kd"] * 1.5


def test_unlabeled_distillation(tiny_dataset: Path, teacher: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for i, path in enumerate(sorted((tiny_dataset / "train").rglob("*.png"))):
        shutil.copy(path, raw / f"img_{i:04d}.png")  # a flat folder: no labels at all
    teacher_model, _ = load_checkpoint(teacher)
    t_logits, _ = _eval(teacher_model, tiny_dataset / "val")
    lines: list[str] = []
    result = distill(raw, teacher=teacher, out=tmp_path / "out", val=tiny_dataset / "val", epochs=2, seed=1,
                     log=lines.append, **FAST)
    assert any("pure knowledge distillation" in line for line in lines)
    assert "train_top1" not in result.history[0]
    student, info = load_checkpoint(result.checkpoint)
    assert info.class_names  # taken from the teacher
    from coatnet_edge.models.registry import create_model

    torch.manual_seed(1)
    before = kd_loss(_eval(create_model("coatnet_pico", num_classes=12, image_size=64), tiny_dataset / "val")[0],
                     t_logits, 4.0)
    assert kd_loss(_eval(student, tiny_dataset / "val")[0], t_logits, 4.0) < before * 0.8


def test_resume_reproduces_an_uninterrupted_run(tiny_dataset: Path, tmp_path: Path) -> None:
    options = {**FAST, "epochs": 2, "max_steps_per_epoch": 3, "seed": 5}
    full = train(tiny_dataset, out=tmp_path / "full", model="coatnet_pico", log=_quiet, **options)

    class Stop(Exception):
        pass

    def stop_after_first_epoch(line: str) -> None:
        if line.startswith("epoch 1/"):
            raise Stop

    with pytest.raises(Stop):
        train(tiny_dataset, out=tmp_path / "cut", model="coatnet_pico", log=stop_after_first_epoch, **options)
    resumed = train(tiny_dataset, out=tmp_path / "cut", model="coatnet_pico", resume=tmp_path / "cut",
                    log=_quiet, **options)
    assert resumed.summary["weights_sha256"] == full.summary["weights_sha256"]
    assert [r["step"] for r in resumed.history] == [3, 6]


def test_resume_from_a_foreign_run_is_refused(tiny_dataset: Path, tmp_path: Path) -> None:
    options = {**FAST, "epochs": 1, "max_steps_per_epoch": 1}
    train(tiny_dataset, out=tmp_path / "a", model="coatnet_pico", log=_quiet, **options)
    with pytest.raises(CoatnetEdgeError, match=r"belongs to another run.*model"):
        train(tiny_dataset, out=tmp_path / "b", model="coatnet_nano", resume=tmp_path / "a", log=_quiet, **options)
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(CoatnetEdgeError, match="not a coatnet-edge training state"):
        train(tiny_dataset, out=tmp_path / "b", resume=tmp_path / "junk.json", log=_quiet, **options)


def test_two_process_ddp_keeps_ranks_identical(tiny_dataset: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
           "-m", "coatnet_edge", "train", "--data", str(tiny_dataset), "--out", str(tmp_path), "--variant",
           "coatnet_pico", "--epochs", "1", "--batch-size", "8", "--max-steps-per-epoch", "3", "--workers", "0"]
    env = {**os.environ, "COATNET_EDGE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((tmp_path / "last.state.json").read_text())["ddp"]
    assert ddp["world_size"] == 2 and ddp["backend"] == "gloo"
    assert ddp["identical"] and len(set(ddp["weights_sha256_per_rank"])) == 1


def test_cli_errors(tiny_dataset: Path, tmp_path: Path, teacher: Path) -> None:
    assert_one_line_error(run_cli("distill", "--data", str(tiny_dataset), "--teacher", str(tmp_path / "no.safetensors"),
                                  "--out", str(tmp_path / "o")), "teacher checkpoint not found")
    assert_one_line_error(run_cli("train", "--data", str(tiny_dataset), "--variant", "coatnet_femto",
                                  "--out", str(tmp_path / "o")), "unknown CoAtNet variant", "coatnet_pico")
    assert_one_line_error(run_cli("distill", "--data", str(tiny_dataset), "--teacher", str(teacher), "--student",
                                  "coatnet_femto", "--out", str(tmp_path / "o")), "unknown CoAtNet variant")
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(next((tiny_dataset / "train").rglob("*.png")), flat / "a.png")
    assert_one_line_error(run_cli("train", "--data", str(flat), "--out", str(tmp_path / "o")),
                          "needs labels", "pure KD needs no labels")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run_cli("train", "--data", str(empty), "--out", str(tmp_path / "o")), str(empty))
    # a teacher with another class count than the labeled folder
    other = tmp_path / "other"
    for name in ("a", "b"):
        (other / name).mkdir(parents=True)
        for p in sorted((tiny_dataset / "train" / "circle").glob("*.png"))[:4]:
            shutil.copy(p, other / name / p.name)
    assert_one_line_error(run_cli("distill", "--data", str(other), "--teacher", str(teacher), "--out",
                                  str(tmp_path / "o2")), "teacher predicts 12 classes but the folder has 2")
    assert not (tmp_path / "o2" / "last.safetensors").exists()


def test_worker_loaders_never_install_a_sigchld_handler(tiny_dataset: Path) -> None:
    """PyTorch's DataLoader installs a process-wide SIGCHLD handler for its workers; with it, a child's
    exit killed the process (SIGSEGV) on an AMX VM. Train with workers must run without it.

    In a fresh interpreter: whether this test process already holds PyTorch's handler depends on
    which tests ran before. A plain DataLoader with workers first proves the probe sees the handler.
    """
    code = f"""
import signal, sys, tempfile
import torch
from torch.utils.data import DataLoader
from coatnet_edge.training.verbs import train

default = signal.getsignal(signal.SIGCHLD)
seen = []
with tempfile.TemporaryDirectory() as out:
    train({str(tiny_dataset)!r}, out=out, model="coatnet_pico", epochs=2, batch_size=16, workers=2,
          max_steps_per_epoch=2, log=lambda line: seen.append(signal.getsignal(signal.SIGCHLD)))
after_train = signal.getsignal(signal.SIGCHLD)
list(DataLoader(list(range(4)), num_workers=1))  # PyTorch's own loader, unguarded
print(len(seen), all(h is default for h in seen), after_train is default,
      signal.getsignal(signal.SIGCHLD) is default)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "COATNET_EDGE_PROGRESS": "0"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    count, during, after, unguarded = proc.stdout.split()[-4:]
    assert int(count) >= 2 and during == "True" and after == "True", proc.stdout  # also mid-training
    assert unguarded == "False", "the probe cannot see PyTorch's handler: the check above proves nothing"
