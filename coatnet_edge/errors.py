"""The one exception type users see: a one-line message that names the file and the fix.

Raised deep in the stack, printed once at the CLI edge (``--debug`` shows the traceback).
"""

from __future__ import annotations

from pathlib import Path


class CoatnetEdgeError(Exception):
    """A problem the user can act on. ``str(err)`` is a single line; ``reason``, ``path`` and ``fix`` are its
    parts, for code that re-raises it with more context (never parse the text)."""

    def __init__(self, message: str, *, path: str | Path | None = None, fix: str | None = None):
        self.reason = " ".join(message.split())
        self.path = None if path is None else Path(path)
        self.fix = fix
        parts = [f"{path}: {self.reason}" if path is not None else self.reason]
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__(" — ".join(" ".join(p.split()) for p in parts))


class MissingDependencyError(CoatnetEdgeError):
    """An optional backend is not installed; the message says which extra brings it."""

    def __init__(self, package: str, extra: str | None = None, hint: str | None = None):
        fix = hint or (f"pip install 'coatnet-edge[{extra}]'" if extra else f"pip install {package}")
        super().__init__(f"{package} is not installed", fix=fix)
        self.package = package
