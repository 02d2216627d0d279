"""Progress bars for long work, on stderr so stdout stays parseable."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator

ProgressCallback = Callable[..., None]  # (done, total, status="")


def progress_enabled() -> bool:
    return os.environ.get("COATNET_EDGE_PROGRESS", "1") != "0" and sys.stderr.isatty()


@contextlib.contextmanager
def progress_bar(description: str, *, enabled: bool | None = None) -> Iterator[ProgressCallback]:
    """Yield a ``callback(done, total)`` that drives a rich bar (a no-op when not on a terminal)."""
    if not (progress_enabled() if enabled is None else enabled):
        yield lambda done, total, status="": None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=None, status="")

        def update(done: int, total: int, status: str = "") -> None:
            bar.update(task, completed=done, total=total, status=status)

        yield update
