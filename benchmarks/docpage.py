"""Shared by the benchmark scripts: write a docs/ page whose tables are the script's own output.

A page is: title, method paragraph, the machine (CPU model, ISA flags, cores, load, library versions
from ``coatnet_edge.environment.describe_environment``), the line "Written by `python benchmarks/...`
on <date>", then the script's sections (tables, generated summaries, plot links). It is written to a
temporary file and renamed into place (``coatnet_edge.atomic.atomic_path``), so a run that fails
half-way leaves the previous page intact. Nothing on a page is edited by hand: re-run the script.
"""

from __future__ import annotations

import datetime as _dt
import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coatnet_edge.atomic import atomic_path
from coatnet_edge.environment import describe_environment
from coatnet_edge.metrics import per_image_fidelity
from coatnet_edge.stats import bootstrap_mean, paired_difference, verdict, wilson

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as a reader would type it: ``python benchmarks/<script>.py [args]``."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve()
    try:
        shown = script.relative_to(REPO).as_posix()
    except ValueError:
        shown = script.name
    return " ".join(["python", shown, *(shlex.quote(a) for a in argv[1:])])


def load_average() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} (1 min) / {five:.2f} (5 min)"


class Machine:
    """The environment, read once at the start of a run (load average included)."""

    def __init__(self, *, timed: bool = True) -> None:
        self.timed = timed  # False: the page has no timings, so competing load needs no warning
        self.env = describe_environment()
        self.load = load_average()
        self.started = _dt.datetime.now(_dt.timezone.utc)

    def lines(self) -> list[str]:
        """Read at the end of the run too: the load average then says whether others shared the cores."""
        cpu = self.env["cpu"]
        versions = ", ".join(f"{name} {version}" for name, version in self.env["versions"].items())
        return [
            f"- CPU: {cpu['model']} ({cpu['arch']}), {cpu['logical_cores']} logical cores; "
            f"ISA flags: {', '.join(cpu['isa']) or 'none of the listed ones'}",
            f"- OS: {self.env['os']}",
            f"- Load average when the run started: {self.load}; when it ended (this run's own threads included): "
            f"{load_average()}",
            f"- Libraries: {versions}",
            *(self._shared_warning() if self.timed else []),
        ]

    def _shared_warning(self) -> list[str]:
        """Said when other processes competed for the cores: at the start (before this run's own threads
        count) the load exceeded half the cores, or at the end it exceeded what this run alone can add."""
        try:
            start, end = float(self.load.split()[0]), os.getloadavg()[0]
        except (OSError, ValueError):
            return []
        cores = self.env["cpu"]["logical_cores"] or 1
        if start <= cores / 2 and end <= cores + 0.5:
            return []
        return [f"- Note: other processes competed for the {cores} cores during this run (load average above), so "
                "latencies are higher and noisier than on an idle machine, and ratios less stable."]


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


INTERVALS_NOTE = ("Every accuracy cell is `value [low, high]`, its 95 % interval: Wilson for a share of images "
                  "(top-1, agreement), image bootstrap for a mean (cosine), paired image bootstrap for a difference "
                  "on the same images (drop, change), where 'tie' means the interval includes zero.")


def _percent(share: Any) -> str:
    return f"{100 * share.value:.2f} [{100 * share.low:.1f}, {100 * share.high:.1f}]"


def share_text(hits: Any) -> str:
    """A share of images in %, with its Wilson interval: '98.58 [97.7, 99.1]'."""
    import numpy as np

    hits = np.asarray(hits, dtype=bool)
    return _percent(wilson(int(hits.sum()), hits.size))


def fraction_text(fraction: float, images: int) -> str:
    """A share given as a fraction of ``images`` (e.g. a library's top-1 agreement), with its Wilson interval."""
    return _percent(wilson(round(fraction * images), images))


def fidelity_fields(reference: Any, output: Any, prefix: str = "") -> dict[str, Any]:
    """``<prefix>agree`` (%) and ``<prefix>cos`` as numbers for a script's logic, ``..._text`` cells with their
    intervals for its tables, and ``<prefix>hits`` / ``<prefix>cosines`` (per image) for paired comparisons."""
    per_image = per_image_fidelity(reference, output)
    return {f"{prefix}agree": round(100 * float(per_image.agree.mean()), 2),
            f"{prefix}cos": round(float(per_image.cosine.mean()), 5),
            f"{prefix}agree_text": share_text(per_image.agree), f"{prefix}cos_text": mean_text(per_image.cosine),
            f"{prefix}hits": per_image.agree, f"{prefix}cosines": per_image.cosine}


def printable(row: dict[str, Any]) -> dict[str, Any]:
    """A row without its per-image arrays, for a JSON progress line."""
    return {k: v for k, v in row.items() if not hasattr(v, "shape")}


def agreement_text(reference: Any, output: Any) -> str:
    """Top-1 agreement of ``output`` with ``reference`` logits in %, with its Wilson interval."""
    return share_text(per_image_fidelity(reference, output).agree)


def mean_text(per_image: Any, digits: int = 5) -> str:
    """The mean of per-image scores with its image-bootstrap interval: '0.99846 [0.99821, 0.99867]'."""
    mean = bootstrap_mean(per_image)
    return f"{mean.value:.{digits}f} [{mean.low:.{digits}f}, {mean.high:.{digits}f}]"


def cosine_text(reference: Any, output: Any) -> str:
    """Mean logit cosine of ``output`` vs ``reference`` with its image-bootstrap interval."""
    return mean_text(per_image_fidelity(reference, output).cosine)


def change_text(hits: Any, baseline_hits: Any, *, say: bool = True) -> str:
    """``hits`` minus ``baseline_hits`` on the same images in points, paired interval, and (``say``) whether that
    is better / worse / a tie."""
    import numpy as np

    diff = paired_difference(np.asarray(hits, dtype=np.float64), np.asarray(baseline_hits, dtype=np.float64))
    text = f"{100 * diff.value:+.2f} [{100 * diff.low:+.2f}, {100 * diff.high:+.2f}]"
    return f"{text} {verdict(diff)}" if say else text


def plot_link(name: str) -> str:
    """The Markdown image line for docs/<name> (the file itself is copied by ``write_page``)."""
    return f"![{Path(name).stem.replace('_', ' ')}]({name})"


def write_page(name: str, *, title: str, method: str, machine: Machine, sections: Sequence[str],
               plots: dict[str, Path] | None = None, command: str | None = None, wall_s: float | None = None) -> Path:
    """Write docs/<name> atomically and return its path.

    ``plots`` maps a docs/ file name to the PNG to copy there; they are copied (each atomically) only
    here, at the end of a run, so a run that dies earlier leaves the page and its plots as they were.
    """
    written = f"Written by `{command or command_line()}` on {machine.started.date().isoformat()}"
    if wall_s is not None:
        written += f" (wall time {_duration(wall_s)})"
    parts = [f"# {title}\n", _wrap(method) + "\n", "Machine:\n\n" + "\n".join(machine.lines()) + "\n",
             written + ".\n", *(s.rstrip("\n") + "\n" for s in sections if s),
             "This page is the script's output; to update it, re-run the command above.\n"]
    for plot, source in (plots or {}).items():
        with atomic_path(DOCS / plot) as tmp:
            shutil.copyfile(source, tmp)
    path = DOCS / name
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts))
    print(f"wrote {path}", flush=True)
    return path


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _wrap(text: str, width: int = 100) -> str:
    import textwrap

    return "\n\n".join(textwrap.fill(" ".join(p.split()), width) for p in text.strip().split("\n\n"))
