"""``coatnet-edge benchmark``: latency and throughput of artifacts, with the method and the machine recorded.

Method: for each artifact and batch size, ``warmup`` untimed runs, then timed runs (``runs`` of them,
or as many as fit in ``seconds``), each one ``runner.run(batch)`` timed with ``time.perf_counter``
around the call: host-to-host latency as an application sees it (copies included). Inputs are a
seeded N(0,1) batch of the model's input shape. Reported: p50/p90/p99/mean/std in milliseconds
and throughput (images/s = batch / mean latency). The result is a versioned JSON document.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coatnet_edge.environment import describe_environment
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.models.source_options import SourceOptions
from coatnet_edge.progress import progress_bar
from coatnet_edge.runtime import load_runner
from coatnet_edge.runtime.artifact import artifact_origin, artifact_profile, artifact_role, artifact_size

SCHEMA = "coatnet-edge/benchmark/v1"
SCHEMA_FILE = Path(__file__).parents[1] / "schemas" / "benchmark-v1.schema.json"


def environment() -> dict[str, Any]:
    env = describe_environment()
    env["host"] = platform.node()
    env["gpu"] = _gpu_name()
    return env


def _gpu_name() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def device_label(env: dict[str, Any]) -> str:
    """A short name for the machine a result came from (GPU name, else CPU model + cores)."""
    if env.get("gpu"):
        return str(env["gpu"])
    cpu = env.get("cpu", {})
    return f"{cpu.get('model', 'CPU')} ({cpu.get('logical_cores', '?')} cores)"


def time_runner(runner: Any, batch: np.ndarray, *, warmup: int = 10, runs: int | None = 50,
                seconds: float | None = None) -> dict[str, Any]:
    """Latency statistics of ``runner.run(batch)`` (see the module docstring for the method)."""
    if warmup < 0 or (runs is not None and runs < 1) or (seconds is not None and seconds <= 0):
        raise CoatnetEdgeError(f"--warmup {warmup} / --runs {runs} / --seconds {seconds}",
                               fix="use --warmup >= 0 and --runs >= 1 (or --seconds > 0)")
    for _ in range(warmup):
        runner.run(batch)
    times: list[float] = []

    def timed_run() -> None:
        started = time.perf_counter()
        runner.run(batch)
        times.append((time.perf_counter() - started) * 1000)

    if seconds:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 3:
            timed_run()
    else:
        for _ in range(runs or 1):
            timed_run()
    t = np.asarray(times)
    return {"runs": len(t), "p50_ms": float(np.percentile(t, 50)), "p90_ms": float(np.percentile(t, 90)),
            "p99_ms": float(np.percentile(t, 99)), "mean_ms": float(t.mean()), "std_ms": float(t.std()),
            "throughput_ips": float(len(batch) / (t.mean() / 1000))}


@dataclass(frozen=True)
class InterleavedTiming:
    """How candidates are timed to choose between them by speed: ``warmup`` untimed runs of each, then ``rounds``
    rounds in which each candidate in turn runs ``runs`` timed runs (``time_runner``); a candidate's figure in a
    round is the p50 of that round's runs. Interleaved so that drift (clock, cache, other load) hits every
    candidate alike; comparisons are made round by round."""

    warmup: int
    rounds: int
    runs: int

    def describe(self, batch: int = 1) -> str:
        return f"batch {batch}, {self.rounds} interleaved rounds of {self.runs} runs after {self.warmup} warm-up"

    def p50_rounds(self, runners: Sequence[Any], batch: np.ndarray,
                   progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
        """Each runner's p50 (ms) in each round, runners in the given order; ``progress(round, runner)`` after each
        runner's turn."""
        for runner in runners:
            for _ in range(self.warmup):
                runner.run(batch)
        per_round: list[list[float]] = [[] for _ in runners]
        for r in range(self.rounds):
            for i, runner in enumerate(runners):
                per_round[i].append(time_runner(runner, batch, warmup=0, runs=self.runs)["p50_ms"])
                if progress:
                    progress(r, i)
        return [np.array(times) for times in per_round]


# Choosing between candidates by speed (INT8 candidates, bf16 float parts, the cost of a float layer): one method.
CANDIDATE_TIMING = InterleavedTiming(warmup=3, rounds=7, runs=10)


def benchmark(artifacts: list[str | Path], *, batches: tuple[int, ...] = (1,), threads: int | None = None,
              warmup: int = 10, runs: int | None = 50, seconds: float | None = None,
              weights: dict[str, str | Path] | None = None,
              source_options: dict[str, SourceOptions] | None = None) -> dict[str, Any]:
    """Time every artifact at every batch size; returns the ``coatnet-edge/benchmark/v1`` document.

    ``weights`` maps a ``timm:<name>`` source to its local weights file, ``source_options`` a model source
    to what ``load_model`` should read it with.
    """
    if not artifacts:
        raise CoatnetEdgeError("nothing to benchmark", fix="name at least one artifact")
    if any(b < 1 for b in batches):
        raise CoatnetEdgeError(f"batch sizes must be >= 1, got {list(batches)}", fix="e.g. --batch 1,8")
    results = []
    rng = np.random.default_rng(0)
    with progress_bar("benchmark") as bar:
        for done, item in enumerate(artifacts, 1):
            extra = {"weights": (weights or {}).get(str(item)), "source_options": (source_options or {}).get(str(item))}
            extra = {k: v for k, v in extra.items() if v is not None}
            pre, _ = artifact_profile(item, extra.get("weights"), extra.get("source_options"))
            runner = load_runner(item, threads=threads, **extra)
            for batch_size in batches:
                batch = rng.standard_normal((batch_size, *pre.input_shape)).astype(np.float32)
                stats = time_runner(runner, batch, warmup=warmup, runs=runs, seconds=seconds)
                results.append({"artifact": str(item), **runner.info.to_dict(), "batch": batch_size,
                                "role": artifact_role(item), "made_by": artifact_origin(item),
                                "size_bytes": artifact_size(item), **stats})
            bar(done, len(artifacts), Path(str(item)).name)
    return {"schema": SCHEMA, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "environment": environment(),
            "method": {"warmup": warmup, "runs": runs, "seconds": seconds, "threads": threads,
                       "timer": "time.perf_counter around runner.run(batch), host to host",
                       "inputs": "seeded N(0,1) batch of the model's input shape",
                       "statistics": "p50/p90/p99 percentiles, mean, std (ms); throughput = batch / mean"},
            "results": results}


def read_results(path: str | Path, *, schemas: tuple[str, ...]) -> dict[str, Any]:
    """Load a results file and check its schema version (one of ``schemas``)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise CoatnetEdgeError("results file not found", path=path, fix="check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CoatnetEdgeError(f"not a JSON results file ({err})", path=path,
                               fix="pass a file written by `coatnet-edge benchmark` or `compare`") from None
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if schema not in schemas:
        raise CoatnetEdgeError(f"results schema '{schema}' is not one this version reads ({', '.join(schemas)})",
                               path=path, fix="re-run `coatnet-edge benchmark`/`compare` with this version on that "
                                              "device")
    return doc
