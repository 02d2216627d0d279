"""Atomic artifact writing: every file is written under a temporary name in its final directory and
renamed into place only when complete, so an interrupted run never leaves a file at the final name."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from coatnet_edge.errors import CoatnetEdgeError


def ensure_output_dir(path: str | Path) -> Path:
    """Create ``path`` as a directory, or say in one line why it cannot be one."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CoatnetEdgeError("output path exists and is not a directory", path=path,
                               fix="pass a directory path (or remove the file)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CoatnetEdgeError(f"cannot create output directory ({err.strerror})", path=path,
                               fix="choose a writable location with --out") from None
    if not os.access(path, os.W_OK):
        raise CoatnetEdgeError("output directory is not writable", path=path,
                               fix="choose a writable location with --out")
    return path


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it to ``final`` only if the block succeeds.

    Works for files and directories (whatever the block creates at the yielded path).
    """
    final = Path(final)
    ensure_output_dir(final.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if not tmp.exists():
            raise CoatnetEdgeError("internal error: nothing was written", path=final)
        if tmp.is_file():
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make artifacts private
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    return path
