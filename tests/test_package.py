"""Package hygiene: a light import, imports that run one way, and ruff-clean sources."""

from __future__ import annotations

import inspect
import shutil
import subprocess
import sys

import click
import pytest

from tests.conftest import REPO

HEAVY = ("openvino", "nncf", "tensorrt", "onnxruntime", "onnx", "torch", "timm", "torch_tensorrt")


def test_import_pulls_in_no_heavy_backend() -> None:
    code = ("import sys, coatnet_edge; coatnet_edge.__version__; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_loading_a_recipe_pulls_in_no_heavy_backend() -> None:
    """`coatnet-edge run --print-recipe` and a recipe check must not wait for torch: the recipe's sections are plain
    option dataclasses (TrainConfig, QuantizeOptions, the targets' candidate names), not the verbs that use them."""
    code = ("import sys; from coatnet_edge.pipeline.recipe import load_recipe, recipe_toml; "
            "recipe_toml(load_recipe(None)); "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


HELP_OF_EVERY_VERB = """
import sys
import click
from coatnet_edge.cli import cli

def helps(command, ctx):
    yield command.get_help(ctx)
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            yield from helps(sub, click.Context(sub, info_name=name, parent=ctx))

root = click.Context(cli, info_name="coatnet-edge")
texts = list(helps(cli, root))
print(len(texts))
print([t.splitlines()[2] for t in texts if "Unavailable here" in t])
print([m for m in HEAVY if m in sys.modules])
"""


def test_every_verbs_help_pulls_in_no_heavy_backend() -> None:
    """`coatnet-edge <verb> --help` must not wait for torch: every verb module builds its options from option
    dataclasses and torch-free verb modules, and imports what does the work inside its functions."""
    code = f"HEAVY = {HEAVY!r}" + HELP_OF_EVERY_VERB
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    count, unavailable, heavy = proc.stdout.strip().splitlines()
    assert int(count) > 13 and unavailable == "[]", proc.stdout  # the root, each verb, and `data`'s subcommands
    assert heavy == "[]"


def test_public_api_resolves() -> None:
    import coatnet_edge

    for name in coatnet_edge.__all__:
        assert getattr(coatnet_edge, name) is not None


def test_api_verbs_stay_functions_after_their_modules_load() -> None:
    """A submodule named like a verb would replace the verb on the package once imported."""
    import coatnet_edge
    import coatnet_edge.pipeline.run
    import coatnet_edge.training.verbs

    for verb in ("run", "train", "distill", "export_model", "create_model", "export_onnx", "load_runner"):
        assert callable(getattr(coatnet_edge, verb)) and not isinstance(getattr(coatnet_edge, verb), type(sys)), verb


def test_export_model_is_the_export_verb() -> None:
    """`coatnet_edge.export_model(...)` is what `coatnet-edge export` calls, with the CLI's defaults; the
    `coatnet_edge.export` package holds the adapters and is a plain module."""
    import coatnet_edge
    from coatnet_edge.cli.export import export as export_command
    from coatnet_edge.pipeline.export import export_model
    from coatnet_edge.runtime.registry import export_names

    assert coatnet_edge.export_model is export_model
    import coatnet_edge.export.onnx

    assert not callable(coatnet_edge.export) and callable(coatnet_edge.export.onnx.export_onnx)
    keywords, ctx = inspect.signature(export_model).parameters, click.Context(export_command)
    cli_defaults = {p.name: p.get_default(ctx) for p in export_command.params if p.name != "precision"}
    for name in ("backend", "batch", "dynamic_batch", "max_batch", "device", "workspace_mib", "weights", "num_classes",
                 "openvino_candidates", "onnxruntime_candidates"):
        assert cli_defaults[name] == keywords[name].default, name
    assert keywords["precision"].default in [p.get_default(ctx) for p in export_command.params if p.name == "precision"]
    with pytest.raises(coatnet_edge.CoatnetEdgeError, match="unknown backend 'tflite'"):
        coatnet_edge.export_model("builtin:student", out="unused", backend="tflite")
    assert set(export_names()) == {"onnx", "onnxruntime", "openvino", "tensorrt", "torch-tensorrt"}


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff") or str(REPO / ".venv" / "bin" / "ruff")
    proc = subprocess.run([ruff, "check", "coatnet_edge", "tests", "benchmarks"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_imports_run_one_way() -> None:
    """The layers and no-cycle contracts in pyproject.toml ([tool.importlinter]), checked by import-linter."""
    lint = shutil.which("lint-imports") or str(REPO / ".venv" / "bin" / "lint-imports")
    proc = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout, proc.stdout[-2000:]
