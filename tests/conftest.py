"""Shared fixtures: tiny models built inside the tests, run through the real runtimes."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("COATNET_EDGE_PROGRESS", "0")
REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The console script's ``main`` called in this process: exit code, stdout and stderr as a user sees them.

    In-process because a fresh interpreter per call (torch, ONNX Runtime, OpenVINO imported anew) cost
    ~3 s each; the few checks that must see a real process use :func:`run_cli_process`.
    """
    from coatnet_edge.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(list(args))
    return subprocess.CompletedProcess(["coatnet-edge", *args], code, stdout.getvalue(), stderr.getvalue())


def run_cli_process(*args: str) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess: for exit codes and output streams of a real process."""
    return subprocess.run([sys.executable, "-m", "coatnet_edge", *args], capture_output=True, text=True,
                          env={**os.environ, "COATNET_EDGE_PROGRESS": "0"}, timeout=600)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small built-in dataset shared by tests that need real images: 12 classes x (20 train + 20 val);
    240 val images, so one flipped prediction moves an agreement by 0.4 %."""
    from coatnet_edge.data.synth import SynthConfig, write_dataset

    return write_dataset(tmp_path_factory.mktemp("synth") / "data",
                         SynthConfig(seed=3, train_per_class=20, val_per_class=20))


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """README command 1 (`coatnet-edge run` on the built-in defaults), run once: its trained student, its
    artifacts of every precision and its 1,200-image comparison are what the accuracy checks read."""
    out = tmp_path_factory.mktemp("default_run") / "run"
    proc = run_cli("run", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc
