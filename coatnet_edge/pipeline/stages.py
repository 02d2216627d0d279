"""Hash-keyed stage folders: a stage whose inputs and options are unchanged is not redone.

Each stage owns one folder under the run folder. Its key is the SHA-256 of everything that
decides its output (options, the content hashes of its inputs, the library versions). The stage
builds inside its folder and writes ``stage.json`` (key, outputs with hashes, wall time) last,
atomically: a folder without a matching, intact ``stage.json`` is a stage that never finished
(killed, failed, or made with other inputs), and it is wiped and rebuilt.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coatnet_edge.atomic import write_json_atomic
from coatnet_edge.hashing import sha256_file, sha256_text

STAGE_FILE = "stage.json"
STAGE_SCHEMA = "coatnet-edge/stage/v1"


@dataclass
class StageResult:
    name: str
    folder: Path
    key: str
    cached: bool
    seconds: float
    outputs: dict[str, Path] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)

    def sha256(self, output: str) -> str:
        return self.record["outputs"][output]["sha256"]


def stage_key(inputs: dict[str, Any]) -> str:
    return sha256_text(json.dumps(inputs, sort_keys=True, default=str))


def run_stage(root: Path, name: str, inputs: dict[str, Any], build: Callable[[Path], dict[str, Any]], *,
              force: bool = False, log: Callable[[str], None] = print) -> StageResult:
    """Return the cached stage when its key matches and its outputs are intact, else build it.

    ``build(folder)`` returns ``{"outputs": {label: path}, **extra}``; outputs are hashed into
    ``stage.json`` so later stages key on their content, not their paths.
    """
    folder = root / name
    key = stage_key({"stage": name, **inputs})
    record = None if force else _intact(folder, key)
    if record is not None:
        log(f"[{name}] unchanged (key {key[:12]}), reusing {folder}")
        return StageResult(name, folder, key, True, record["seconds"],
                           {k: folder / v["path"] for k, v in record["outputs"].items()}, record)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    log(f"[{name}] building in {folder}")
    started = time.perf_counter()
    try:
        built = build(folder)
    except BaseException:  # a failed stage leaves nothing half-built (a SIGKILL is caught on the next run)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    seconds = round(time.perf_counter() - started, 2)
    outputs: dict[str, Path] = built.pop("outputs")
    record = {"schema": STAGE_SCHEMA, "stage": name, "key": key, "inputs": inputs, "seconds": seconds,
              "outputs": {label: {"path": str(path.relative_to(folder)), "sha256": _hash(path)}
                          for label, path in outputs.items()}, **built}
    write_json_atomic(folder / STAGE_FILE, record)
    return StageResult(name, folder, key, False, seconds, outputs, record)


def _intact(folder: Path, key: str) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / STAGE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if record.get("schema") != STAGE_SCHEMA or record.get("key") != key:
        return None
    for output in record.get("outputs", {}).values():
        path = folder / output["path"]
        if not path.exists() or _hash(path) != output["sha256"]:
            return None
    return record


def _hash(path: Path) -> str:
    """Content hash of a file, or of a folder tree (relative names + file hashes)."""
    if path.is_file():
        return sha256_file(path)
    lines = [f"{p.relative_to(path).as_posix()}\t{sha256_file(p)}" for p in sorted(path.rglob("*")) if p.is_file()]
    return sha256_text("\n".join(lines))


def folder_fingerprint(path: Path) -> str:
    """A cheap identity of a user's image folder: names, sizes and modification times of its files."""
    lines = [f"{p.relative_to(path).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}"
             for p in sorted(path.rglob("*")) if p.is_file() and (st := p.stat())]
    return sha256_text("\n".join(lines))
