"""Package hygiene: a light import and light `--help`, heavy libraries imported where ARCHITECTURE.md says, imports
that change no global state and run one way, and ruff-clean sources."""

from __future__ import annotations

import ast
import inspect
import shutil
import subprocess
import sys

import click
import pytest

from tests.conftest import REPO

HEAVY = ("openvino", "nncf", "tensorrt", "onnxruntime", "onnx", "torch", "timm", "torch_tensorrt", "modelopt")


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


# ARCHITECTURE.md, "Where heavy libraries are imported": torch at module top only here; the others never at top
TORCH_AT_TOP = ("models/", "training/", "export/onnx.py", "export/torch_tensorrt.py", "calibration/qat.py")
LIGHT = ("models/config.py", "models/registry.py", "models/source_options.py", "training/config.py",
         "training/verbs.py")  # read by the CLI for its options: torch-free although their package is not


def _top_level_imports(tree: ast.Module) -> set[str]:
    """The top-level packages a module imports when it is imported (not in functions, not under TYPE_CHECKING)."""
    found, todo = set(), list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            todo += node.body + node.orelse
        elif isinstance(node, ast.Try):
            todo += node.body + node.orelse + node.finalbody + [n for h in node.handlers for n in h.body]
    return found


def test_heavy_libraries_are_imported_at_top_only_where_architecture_says() -> None:
    package = REPO / "coatnet_edge"
    for path in sorted(package.rglob("*.py")):
        name = path.relative_to(package).as_posix()
        imported = _top_level_imports(ast.parse(path.read_text(encoding="utf-8")))
        assert not imported & (set(HEAVY) - {"torch", "onnx"}), name
        if "torch" in imported:
            assert name.startswith(TORCH_AT_TOP) and name not in LIGHT, f"{name} imports torch at module top"


NO_GLOBAL_STATE_CHANGES = """
import ast, importlib, logging, os, pathlib, warnings
import coatnet_edge

package = pathlib.Path(coatnet_edge.__file__).parent
modules = sorted("coatnet_edge." + ".".join(p.relative_to(package).with_suffix("").parts).removesuffix(".__init__")
                 for p in package.rglob("*.py") if p.name != "__main__.py")
for path in package.rglob("*.py"):  # the libraries they import first: their own import may set filters
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        for name in names:
            if not name.startswith("coatnet_edge"):
                importlib.import_module(name)

loggers = list(logging.root.manager.loggerDict)

def state():
    return {"environ": dict(os.environ), "warning filters": list(warnings.filters),
            "showwarning": warnings.showwarning, "root logger": (logging.root.level, list(logging.root.handlers)),
            "logger levels": {n: (logging.getLogger(n).level, logging.getLogger(n).disabled) for n in loggers}}

before = state()
for name in modules:
    importlib.import_module(name)
print(sorted(key for key, value in state().items() if value != before[key]))
"""


def test_importing_any_module_changes_no_global_state() -> None:
    """Environment, warning filters and logging are set where a function needs them, never by an import."""
    proc = subprocess.run([sys.executable, "-c", NO_GLOBAL_STATE_CHANGES], capture_output=True, text=True, check=True)
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
