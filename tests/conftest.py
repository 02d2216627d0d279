"""Shared fixtures: tiny models built inside the tests, run through the real runtimes."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("COATNET_EDGE_PROGRESS", "0")
REPO = Path(__file__).resolve().parents[1]
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None  # tests branch on it, never assume it


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


_BACKGROUND: dict[str, object] = {}


@pytest.fixture(scope="session")
def images_256(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built-in shapes drawn at 256 px: calibration images a 224-px timm model does not upscale."""
    from coatnet_edge.data.synth import SynthConfig, write_dataset

    return write_dataset(tmp_path_factory.mktemp("synth256") / "data",
                         SynthConfig(seed=5, image_size=256, train_per_class=3, val_per_class=2))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that read README command 1's output run last (stable order otherwise): the background run then
    overlaps every other test instead of being waited for by the first test that needs it."""
    items.sort(key=lambda item: "default_run" in getattr(item, "fixturenames", ()))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start README command 1 in its own process as soon as a collected test needs it.

    It is the longest job of the suite (~90 s on 2 cores, most of it distillation); started here, it runs
    while the other tests do, instead of after them. A real process, so its exit code is the shell's.
    """
    if not any("default_run" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    root = Path(tempfile.mkdtemp(prefix="coatnet_edge_default_run_"))
    streams = (root / "stdout.txt").open("w"), (root / "stderr.txt").open("w")
    process = subprocess.Popen([sys.executable, "-m", "coatnet_edge", "run", "--out", str(root / "run")],
                               stdout=streams[0], stderr=streams[1], cwd=root,
                               env={**os.environ, "COATNET_EDGE_PROGRESS": "0"})
    _BACKGROUND.update(root=root, process=process, streams=streams)


def pytest_sessionfinish(session: pytest.Session) -> None:
    process = _BACKGROUND.get("process")
    if process is not None:
        process.kill()
        process.wait()
        for stream in _BACKGROUND["streams"]:
            stream.close()
        shutil.rmtree(_BACKGROUND["root"], ignore_errors=True)


@pytest.fixture(scope="session")
def default_run() -> tuple[Path, subprocess.CompletedProcess]:
    """README command 1 (`coatnet-edge run` on the built-in defaults), run once, in the background from the
    start of the session: its trained student, its artifacts of every precision and its 1,200-image
    comparison are what the accuracy checks read."""
    if "process" not in _BACKGROUND:  # e.g. collected by a plugin after collection finished
        pytest.fail("the background run did not start")
    process = _BACKGROUND["process"]
    code = process.wait(timeout=1800)
    root = _BACKGROUND["root"]
    proc = subprocess.CompletedProcess(process.args, code, (root / "stdout.txt").read_text(),
                                       (root / "stderr.txt").read_text())
    assert proc.returncode == 0, proc.stderr
    return root / "run", proc
