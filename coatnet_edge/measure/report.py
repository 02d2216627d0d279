"""``coatnet-edge compare`` and ``coatnet-edge report``: one table and one plot per comparison.

``compare`` evaluates and times the FP32 reference and every artifact in one run on one machine
(so speed-ups are ratios measured together) and writes ``compare.{md,csv,json,png}``. ``report``
merges such files from several machines (each ran ``compare`` or ``benchmark`` locally) into one
table and one plot, one colour per device.

Top-1, agreement, cosine and SQNR carry their 95 % interval: the CSV/JSON as ``<metric>_low`` /
``<metric>_high`` fields, the markdown and terminal tables as ``0.9858 [0.978, 0.992]`` cells (the value
first, so a reader of the cell's first token still gets the number), the plot as error bars.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coatnet_edge.atomic import atomic_path, ensure_output_dir, write_json_atomic
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.measure.benchmark import SCHEMA as BENCHMARK_SCHEMA
from coatnet_edge.measure.benchmark import benchmark, device_label, read_results
from coatnet_edge.measure.evaluate import INTERVALS, evaluate
from coatnet_edge.models.source_options import SourceOptions

COMPARISON_SCHEMA = "coatnet-edge/comparison/v1"
COLUMNS = ["device", "artifact", "backend", "precision", "top1", "agreement", "cosine", "sqnr_db", "size_mb",
           "batch", "p50_ms", "p90_ms", "speedup", "note"]
# metric column -> its interval in an ``evaluate`` row; the CSV appends the bounds after COLUMNS
INTERVAL_KEYS = {"top1": "top1_ci", "agreement": "agreement_ci", "cosine": "cosine_ci", "sqnr_db": "sqnr_db_ci"}
CSV_COLUMNS = [*COLUMNS, *(f"{m}_{end}" for m in INTERVAL_KEYS for end in ("low", "high")), "images"]
# every accuracy cell prints its interval, its bounds at the precision that tells them apart
INTERVAL_FORMATS = {"top1": ".3f", "agreement": ".3f", "cosine": ".5f", "sqnr_db": ".1f"}


@dataclass
class Report:
    rows: list[dict[str, Any]]
    files: dict[str, Path] = field(default_factory=dict)


def compare(reference: str | Path, artifacts: list[str | Path], *, data: str | Path, out: str | Path,
            batches: tuple[int, ...] = (1,), threads: int | None = None, warmup: int = 10, runs: int | None = 50,
            seconds: float | None = None, limit: int | None = None, labeled: bool | None = None,
            reference_weights: str | Path | None = None, reference_options: SourceOptions | None = None,
            skipped: list[dict[str, str]] | None = None) -> Report:
    """Evaluate + benchmark the reference and the artifacts; write the table (md/csv/json) and plot (png).

    ``skipped`` lists targets that could not be built here (``backend``, ``precision``, ``reason``):
    they appear in the table as "skipped: reason" rather than silently missing.
    """
    accuracy = evaluate(artifacts, data=data, reference=reference, limit=limit, threads=threads, labeled=labeled,
                        reference_weights=reference_weights, reference_options=reference_options)
    items = [reference] + [a for a in artifacts if a != reference]
    timing = benchmark(items, batches=batches, threads=threads, warmup=warmup, runs=runs, seconds=seconds,
                       weights={str(reference): reference_weights} if reference_weights else None,
                       source_options={str(reference): reference_options} if reference_options else None)
    doc = {"schema": COMPARISON_SCHEMA, "created": timing["created"], "environment": timing["environment"],
           "method": {**timing["method"], "accuracy": f"{accuracy[0]['images']} images of {data}",
                      "reference": str(reference), "speedup": "reference p50 / artifact p50, same batch, same run",
                      "intervals": INTERVALS},
           "accuracy": accuracy, "latency": timing["results"], "skipped": list(skipped or [])}
    return write_report(comparison_rows(doc), out, stem="compare", sources=[doc])


def comparison_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Join accuracy and latency of one comparison document into table rows (one per artifact x batch)."""
    device = device_label(doc["environment"])
    accuracy = {row["artifact"]: row for row in doc.get("accuracy", [])}
    latency = doc.get("latency") or doc.get("results") or []
    reference = doc.get("method", {}).get("reference")
    ref_p50 = {r["batch"]: r["p50_ms"] for r in latency if r["artifact"] == reference}
    rows = []
    for lat in latency:
        acc = accuracy.get(lat["artifact"], {})
        rows.append({
            "device": device, "artifact": Path(lat["artifact"]).name, "backend": lat["backend"],
            "precision": lat["precision"], "top1": acc.get("top1"), "agreement": acc.get("vs_reference_top1_agreement"),
            "cosine": acc.get("vs_reference_cosine"), "sqnr_db": acc.get("vs_reference_sqnr_db"),
            "size_mb": lat["size_bytes"] / 1e6 if lat.get("size_bytes") else None, "batch": lat["batch"],
            "p50_ms": lat["p50_ms"], "p90_ms": lat["p90_ms"],
            "speedup": ref_p50[lat["batch"]] / lat["p50_ms"] if lat["batch"] in ref_p50 else None,
            "note": "; ".join(n for n in (lat.get("made_by"), lat.get("role"), _fallback_note(lat)) if n),
            **_interval_fields(acc)})
    rows += [{"device": device, "artifact": "-", "backend": item["backend"], "precision": item["precision"],
              "batch": None, "note": f"skipped: {item['reason']}"} for item in doc.get("skipped", [])]
    return rows


def _interval_fields(accuracy: dict[str, Any]) -> dict[str, Any]:
    """``<metric>_low`` / ``<metric>_high`` and ``images`` of an ``evaluate`` row (None in older files)."""
    fields: dict[str, Any] = {"images": accuracy.get("images")}
    for metric, key in INTERVAL_KEYS.items():
        fields[f"{metric}_low"], fields[f"{metric}_high"] = accuracy.get(key) or (None, None)
    return fields


def _fallback_note(result: dict[str, Any]) -> str:
    """Say so when the runtime ran another precision than the artifact holds (FP16 IR run in bf16)."""
    held = result.get("artifact_precision")
    if not held or held == result["precision"]:
        return ""
    return f"{held} artifact, ran as {result['precision']} (the runtime's executed precision on this device)"


def report(results: list[str | Path], *, out: str | Path) -> Report:
    """Merge comparison/benchmark files from several devices into one table and one plot."""
    if not results:
        raise CoatnetEdgeError("no results files given", fix="pass the compare.json / benchmark JSON of each device")
    docs = [read_results(path, schemas=(COMPARISON_SCHEMA, BENCHMARK_SCHEMA)) for path in results]
    rows = [row for doc in docs for row in comparison_rows(doc)]
    return write_report(rows, out, stem="report", sources=docs)


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value == float("inf"):
        return "inf"
    return format(value, spec)


FORMATS = {"top1": ".4f", "agreement": ".4f", "cosine": ".5f", "sqnr_db": ".1f", "size_mb": ".2f", "p50_ms": ".3f",
           "p90_ms": ".3f", "speedup": ".2f"}


TERMINAL_COLUMNS = ["artifact", "backend", "precision", "top1", "agreement", "cosine", "size_mb", "batch", "p50_ms",
                    "p90_ms", "speedup", "note"]


def table_cells(row: dict[str, Any], columns: list[str] = COLUMNS) -> list[str]:
    return [_cell(row, c) for c in columns]


def _cell(row: dict[str, Any], column: str) -> str:
    """One table cell; an accuracy metric as ``value [low, high]`` where the row has the interval."""
    text = _fmt(row.get(column), FORMATS.get(column, ""))
    low, high = row.get(f"{column}_low"), row.get(f"{column}_high")
    if column not in INTERVAL_FORMATS or row.get(column) is None or low is None or high is None:
        return text
    return f"{text} [{_fmt(low, INTERVAL_FORMATS[column])}, {_fmt(high, INTERVAL_FORMATS[column])}]"


def has_intervals(rows: list[dict[str, Any]]) -> bool:
    """Whether any table cell shows an interval (then the table's title says what the intervals are)."""
    return any(r.get(f"{m}_low") is not None for r in rows for m in INTERVAL_FORMATS)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(table_cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_report(rows: list[dict[str, Any]], out: str | Path, *, stem: str, sources: list[dict]) -> Report:
    out = ensure_output_dir(out)
    files = {"md": out / f"{stem}.md", "csv": out / f"{stem}.csv", "json": out / f"{stem}.json",
             "png": out / f"{stem}.png"}
    methods = sorted({json.dumps(s.get("method", {}), sort_keys=True) for s in sources})
    header = f"# coatnet-edge {stem}\n\nDevices: {', '.join(sorted({r['device'] for r in rows}))}\n\n"
    footer = "\nMethod: " + "; ".join(methods) + "\n"
    with atomic_path(files["md"]) as tmp:
        tmp.write_text(header + markdown_table(rows) + footer)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    writer.writerows([["" if r.get(c) is None else r.get(c) for c in CSV_COLUMNS] for r in rows])
    with atomic_path(files["csv"]) as tmp:
        tmp.write_text(buffer.getvalue())
    write_json_atomic(files["json"], sources[0] if len(sources) == 1 and stem == "compare"
                      else {"schema": "coatnet-edge/report/v1", "rows": rows, "sources": sources})
    plot(rows, files["png"], title=f"coatnet-edge {stem}: accuracy vs latency")
    return Report(rows, files)


def _point_label(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """'backend precision', plus the artifact's name where two points would read the same (teacher, student)."""
    label = f"{row['backend']} {row['precision']}"
    twins = [r for r in rows if r["backend"] == row["backend"] and r["precision"] == row["precision"]]
    return f"{label} ({row['artifact'].split('.')[0]})" if len(twins) > 1 else label


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (lower latency and higher accuracy is better)."""
    front = []
    for i, (lat, acc) in enumerate(points):
        if not any((l2 <= lat and a2 >= acc) and (l2 < lat or a2 > acc) for j, (l2, a2) in enumerate(points) if j != i):
            front.append(i)
    return front


def _error_bars(ax: Any, rows: list[dict[str, Any]], metric: str, colour: Any) -> None:
    """Each point's 95 % interval as a vertical bar: two points whose bars overlap are not told apart."""
    rows = [r for r in rows if r.get(f"{metric}_low") is not None and r.get(f"{metric}_high") is not None]
    if rows:
        below = [max(r[metric] - r[f"{metric}_low"], 0.0) for r in rows]
        above = [max(r[f"{metric}_high"] - r[metric], 0.0) for r in rows]
        ax.errorbar([r["p50_ms"] for r in rows], [r[metric] for r in rows], yerr=[below, above], fmt="none",
                    ecolor=colour, elinewidth=1, capsize=2, alpha=0.6, zorder=2)


def plot(rows: list[dict[str, Any]], path: Path, *, title: str) -> Path:
    """Accuracy (top-1, else agreement) vs p50 latency, one point per backend x precision, colour per
    device, Pareto front of each device drawn as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = [r for r in rows if r.get("p50_ms") is not None]  # skipped targets have no point
    metric = "top1" if any(r.get("top1") is not None for r in rows) else "agreement"
    fig, ax = plt.subplots(figsize=(8, 5.5))
    devices = sorted({r["device"] for r in rows})
    colours = plt.get_cmap("tab10")
    batch = min(r["batch"] for r in rows)
    for k, device in enumerate(devices):
        chosen = [r for r in rows if r["device"] == device and r["batch"] == batch and r.get(metric) is not None]
        points = [(r["p50_ms"], r[metric]) for r in chosen]
        ax.scatter([p[0] for p in points], [p[1] for p in points], color=colours(k), label=device, zorder=3)
        _error_bars(ax, chosen, metric, colours(k))
        for i, (r, (x, y)) in enumerate(sorted(zip(chosen, points, strict=True), key=lambda rp: rp[1][0])):
            ax.annotate(_point_label(r, chosen), (x, y), fontsize=7, xytext=(4, 4 if i % 2 else -10),
                        textcoords="offset points")  # alternate above/below so neighbours don't overlap
        front = sorted(points[i] for i in pareto_front(points))
        ax.scatter([p[0] for p in front], [p[1] for p in front], s=160, facecolors="none", edgecolors=colours(k),
                   linewidths=1.5, zorder=4, label=f"Pareto front ({device})")
        if len(front) > 1:
            ax.plot([p[0] for p in front], [p[1] for p in front], color=colours(k), linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.margins(x=0.12, y=0.12)
    ax.set_xlabel(f"p50 latency, batch {batch} (ms, log scale)")
    ax.set_ylabel("top-1 accuracy" if metric == "top1" else "top-1 agreement with FP32")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
