"""Shared fixtures: tiny models built inside the tests, run through the real runtimes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("COATNET_EDGE_PROGRESS", "0")
REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess: exit code, stdout and stderr as a user sees them."""
    return subprocess.run([sys.executable, "-m", "coatnet_edge", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "COATNET_EDGE_PROGRESS": "0", **(env or {})}, timeout=600)


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
    """A small built-in dataset shared by tests that need real images (12 classes x (20 + 8))."""
    from coatnet_edge.data.synth import SynthConfig, write_dataset

    return write_dataset(tmp_path_factory.mktemp("synth") / "data",
                         SynthConfig(seed=3, train_per_class=20, val_per_class=8))
