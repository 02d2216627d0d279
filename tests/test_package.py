"""Package hygiene: a light import, imports that run one way, and ruff-clean sources."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

HEAVY = ("openvino", "nncf", "tensorrt", "onnxruntime", "torch", "timm", "torch_tensorrt")


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


def test_public_api_resolves() -> None:
    import coatnet_edge

    for name in coatnet_edge.__all__:
        assert getattr(coatnet_edge, name) is not None


def test_api_verbs_stay_functions_after_their_modules_load() -> None:
    """A submodule named like a verb would replace the verb on the package once imported."""
    import coatnet_edge
    import coatnet_edge.pipeline.run
    import coatnet_edge.training.verbs

    for verb in ("run", "train", "distill", "create_model", "export_onnx", "load_runner"):
        assert callable(getattr(coatnet_edge, verb)) and not isinstance(getattr(coatnet_edge, verb), type(sys)), verb


def test_export_is_a_verb_and_a_package() -> None:
    """`coatnet_edge.export(...)` mirrors `coatnet-edge export` although `coatnet_edge/export/` is a package."""
    import coatnet_edge

    assert callable(coatnet_edge.export)  # before any submodule import
    import coatnet_edge.export.onnx
    from coatnet_edge.runtime.registry import export_names

    assert callable(coatnet_edge.export) and coatnet_edge.export.onnx.export_onnx
    with pytest.raises(coatnet_edge.CoatnetEdgeError, match="unknown backend 'tflite'"):
        coatnet_edge.export("builtin:student", out="unused", backend="tflite")
    assert set(export_names()) == {"onnx", "onnxruntime", "openvino", "tensorrt", "torch-tensorrt"}


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff") or str(REPO / ".venv" / "bin" / "ruff")
    proc = subprocess.run([ruff, "check", "coatnet_edge", "tests", "benchmarks"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_verbs_are_imported_only_from_the_layers_above() -> None:
    """What a verb's neighbours need lives below the verb: no module of its own package imports the quantize or the
    train/distill verb (the INT8 target selections read quantize's inputs through target_inputs, not quantize)."""
    import grimp

    graph = grimp.build_graph("coatnet_edge", cache_dir=None)
    for verb in ("coatnet_edge.calibration.quantize", "coatnet_edge.training.verbs"):
        package = verb.rsplit(".", 1)[0] + "."
        importers = {m for m in graph.find_modules_that_directly_import(verb) if m.startswith(package)}
        assert not importers, f"{verb} is imported by {sorted(importers)}"


def _union_members(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union_members(node.left) + _union_members(node.right)
    return [node]


def test_no_function_returns_a_result_or_an_error_string() -> None:
    """Errors are exceptions carrying reason and fix (or an Optional): no return annotation is ``X | str``."""
    offenders = []
    for path in sorted((REPO / "coatnet_edge").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
                members = {ast.unparse(m) for m in _union_members(node.returns)}
                if "str" in members and members - {"str", "None"}:
                    where = f"{path.relative_to(REPO)}:{node.lineno}"
                    offenders.append(f"{where} {node.name} -> {ast.unparse(node.returns)}")
    assert not offenders, offenders


def test_imports_run_one_way() -> None:
    """The layers and no-cycle contracts in pyproject.toml ([tool.importlinter]), checked by import-linter."""
    lint = shutil.which("lint-imports") or str(REPO / ".venv" / "bin" / "lint-imports")
    proc = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout, proc.stdout[-2000:]
