"""How the CLI prints: tables drawn with rich, on stdout; lines with click."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from coatnet_edge.measure.summary import Table


def echo_lines(lines: Iterable[str]) -> None:
    for line in lines:
        click.echo(line)


def echo_files(files: Mapping[str, Path]) -> None:
    """``kind: path`` for each file a verb wrote (report md/csv/json/png)."""
    echo_lines(f"{kind}: {path}" for kind, path in files.items())


def echo_table(table: Table) -> None:
    drawn = RichTable(title=escape(table.title))
    for i, name in enumerate(table.header):
        drawn.add_column(name, justify="left" if i == 0 or name == "note" else "right")
    for row in table.rows:
        drawn.add_row(*map(escape, row))  # cells are data: "coatnet-edge[tensorrt]" is not rich markup
    console = Console()
    # piped output (CI logs, `| tee`) has no width: keep every cell whole rather than fold to 80 columns
    console.width = max(100, console.width) if console.is_terminal else 240
    console.print(drawn)
