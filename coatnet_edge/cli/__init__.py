"""``coatnet-edge``: a thin CLI over the Python API. It only parses arguments and prints results.

One module per verb family (``run``, ``train``, ``quantize``, ``export``, ``measure``, ``info``,
``data``), each imported when its verb is used: ``coatnet-edge --help`` lists the verbs from their
docstrings, ``coatnet-edge VERB --help`` imports no torch either (a verb imports it when it runs), and a
verb whose optional dependency is missing reports it in one line without breaking the others (Polygraphy's
MissingTool pattern).

Errors raised below arrive as :class:`CoatnetEdgeError` and are printed here once, as one line,
with exit code 2 (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from coatnet_edge import __version__
from coatnet_edge.errors import CoatnetEdgeError

EXIT_USER_ERROR = 2
_PACKAGE = Path(__file__).parents[1]

VERBS = {  # command -> "module:attribute" of its click command
    "run": "coatnet_edge.cli.run:run",
    "train": "coatnet_edge.cli.train:train",
    "distill": "coatnet_edge.cli.train:distill",
    "quantize": "coatnet_edge.cli.quantize:quantize",
    "export": "coatnet_edge.cli.export:export",
    "evaluate": "coatnet_edge.cli.measure:evaluate",
    "benchmark": "coatnet_edge.cli.measure:benchmark",
    "compare": "coatnet_edge.cli.measure:compare",
    "report": "coatnet_edge.cli.measure:report",
    "predict": "coatnet_edge.cli.measure:predict",
    "models": "coatnet_edge.cli.info:models",
    "info": "coatnet_edge.cli.info:info",
    "data": "coatnet_edge.cli.data:data",
}


class VerbGroup(click.Group):
    """The verbs of ``VERBS``, each imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(VERBS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_verb(cmd_name) if cmd_name in VERBS else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The verb list, from each command function's docstring (read, not imported)."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        with formatter.section("Commands"):
            formatter.write_dl([(name, click.utils.make_default_short_help(_docstring(VERBS[name]), limit))
                                for name in names])


@functools.cache
def load_verb(name: str) -> click.Command:
    module, attribute = VERBS[name].split(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except ImportError as err:
        if (err.name or "coatnet_edge").split(".")[0] == "coatnet_edge":
            raise  # our own import is broken: a bug, not a missing extra
        return _unavailable(name, err)


def _unavailable(name: str, err: ImportError) -> click.Command:
    """A stand-in for a verb whose module needs a library that is not installed: says so when used."""
    def fail(args: tuple[str, ...]) -> None:
        raise CoatnetEdgeError(f"`coatnet-edge {name}` is unavailable: {err}",
                               fix=f"pip install {err.name} (or see `coatnet-edge --debug {name}`)") from err

    return click.Command(name, callback=fail, help=f"Unavailable here: {err}",
                         params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
                         context_settings={"ignore_unknown_options": True}, add_help_option=False)


def _docstring(target: str) -> str:
    module, attribute = target.split(":")
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return ""
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    function = next((node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == attribute),
                    None)
    return (ast.get_docstring(function) if function else None) or ""


@click.group(cls=VerbGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="coatnet-edge")
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Take a PyTorch CoAtNet to edge devices: distill, quantize, export to ONNX / OpenVINO /
    TensorRT, and measure accuracy and latency against the FP32 reference at every stage.

    \b
    Start here:
      coatnet-edge run                      # the whole job on built-in data and defaults
      coatnet-edge models                   # the CoAtNet variants, with params and MACs
      coatnet-edge data synth --out data/   # the built-in labeled dataset
    """
    ctx.obj = {"debug": debug}


_default_showwarning = warnings.showwarning


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    """Our warnings as one `warning: ...` line on stderr (no source-line echo); others unchanged."""
    if filename.startswith(str(_PACKAGE)):
        click.echo(f"warning: {message}", err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: one-line errors, non-zero exit codes."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    warnings.showwarning = _show_warning
    try:
        cli.main(args=args, prog_name="coatnet-edge", standalone_mode=False)
    except CoatnetEdgeError as err:
        if debug:
            raise
        click.echo(f"error: {err}", err=True)
        return EXIT_USER_ERROR
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.UsageError as err:  # one line, like every other error
        command = err.ctx.command_path if err.ctx else "coatnet-edge"
        click.echo(f"error: {err.format_message()} — fix: see `{command} --help`", err=True)
        return err.exit_code
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Exit as err:
        return err.exit_code
    return 0


__all__ = ["cli", "main"]
