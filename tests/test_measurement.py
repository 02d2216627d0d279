"""evaluate / benchmark / compare / report / predict on real ONNX Runtime and OpenVINO artifacts."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from coatnet_edge.measure.benchmark import SCHEMA_FILE
from coatnet_edge.metrics import compare_logits
from coatnet_edge.models.checkpoint import load_checkpoint
from coatnet_edge.pipeline.export import export_model
from coatnet_edge.stats import wilson
from tests.conftest import REPO, assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def artifacts(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("measure")
    fp32 = export_model("builtin:student", out=out, backend="onnx", log=lambda s: None).artifact
    proc = run_cli("export", "--model", "builtin:student", "--backend", "openvino", "--int8", "--calib-dir",
                   str(tiny_dataset / "train"), "--calib-size", "24", "--candidate", "hybrid",
                   "--openvino-candidate", "qdq", "--out", str(out))  # measurement is under test, not selection
    assert proc.returncode == 0, proc.stderr
    return {"fp32": fp32, "int8": out / "builtin_student.int8.onnx", "xml": out / "builtin_student.int8.xml"}


def test_metrics_on_constructed_cases() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((50, 10))
    same = compare_logits(ref, ref.copy())
    assert same.top1_agreement == 1.0 and same.cosine == pytest.approx(1.0) and same.sqnr_db == float("inf")
    noise = rng.standard_normal(ref.shape)
    noise *= np.sqrt(np.sum(ref**2) / np.sum(noise**2) / 100.0)  # exactly 20 dB below the signal
    perturbed = compare_logits(ref, ref + noise)
    assert perturbed.sqnr_db == pytest.approx(20.0, abs=1e-9)
    assert perturbed.max_abs == pytest.approx(np.abs(noise).max())
    flipped = ref.copy()
    flipped[:5] *= -1  # the top-1 of 5 of 50 rows changes (the argmax of -x is the argmin of x)
    assert compare_logits(ref, flipped).top1_agreement == pytest.approx(0.9)


def test_benchmark_json_validates_against_its_schema(artifacts: dict, tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    out = tmp_path / "bench.json"
    proc = run_cli("benchmark", str(artifacts["fp32"]), str(artifacts["xml"]), "--batch", "1,2", "--warmup", "1",
                   "--runs", "3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, json.loads(SCHEMA_FILE.read_text()))
    assert len(doc["results"]) == 4 and {r["batch"] for r in doc["results"]} == {1, 2}
    assert {r["backend"] for r in doc["results"]} == {"onnxruntime", "openvino"}
    assert doc["method"]["warmup"] == 1 and doc["method"]["runs"] == 3
    assert doc["environment"]["cpu"]["isa"] is not None and doc["environment"]["versions"]["onnxruntime"]
    for r in doc["results"]:  # throughput is images per second of the mean latency of that batch
        assert r["runs"] == 3 and r["throughput_ips"] == pytest.approx(r["batch"] * 1000 / r["mean_ms"]), r
    bad = dict(doc, results=[{**doc["results"][0], "p50_ms": -1}])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, json.loads(SCHEMA_FILE.read_text()))


def test_evaluate_labeled_and_unlabeled(artifacts: dict, tiny_dataset: Path, tmp_path: Path) -> None:
    from coatnet_edge.data.sampling import build_calibration_set
    from coatnet_edge.measure.evaluate import evaluate
    from coatnet_edge.runtime import load_runner

    rows = evaluate([artifacts["fp32"], artifacts["int8"]], data=tiny_dataset / "val", reference="builtin:student")
    assert [r["backend"] for r in rows] == ["pytorch", "onnxruntime", "onnxruntime"]
    assert rows[0]["vs_reference_top1_agreement"] == 1.0 and rows[1]["vs_reference_max_abs"] < 1e-4
    # top-1 / top-5 recomputed here from the labels and the INT8 model's own logits
    _, info = load_checkpoint("builtin:student")
    sample = build_calibration_set(tiny_dataset / "val", info.preprocess, size=10_000, seed=0, warn_short=False)
    logits = load_runner(artifacts["int8"]).run(sample.images)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert rows[2]["images"] == len(sample) == 240
    assert rows[2]["top1"] == pytest.approx(np.mean(top5[:, 0] == sample.labels))
    assert rows[2]["top5"] == pytest.approx(np.mean((top5 == sample.labels[:, None]).any(axis=1)))
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, path in enumerate(sorted((tiny_dataset / "val").rglob("*.png"))[:12]):
        (flat / f"{i}.png").write_bytes(path.read_bytes())
    rows = evaluate([artifacts["int8"]], data=flat, reference="builtin:student")
    assert "top1" not in rows[1] and rows[1]["vs_reference_top1_agreement"] >= 0.75


def _wilson_of(value: float, n: int) -> list[float]:
    """The Wilson bounds a reader recomputes from a proportion's counts (value x N hits of N)."""
    count = round(value * n)
    assert count == pytest.approx(value * n, abs=1e-6)  # a proportion of N images is a whole count
    ci = wilson(count, n)
    return [ci.low, ci.high]


def _inside(value: float, bounds: list[float]) -> bool:
    low, high = bounds
    return low <= high and low - 1e-9 <= value <= high + 1e-9


def test_evaluate_rows_carry_their_intervals(artifacts: dict, tiny_dataset: Path) -> None:
    from coatnet_edge.measure.evaluate import evaluate

    rows = evaluate([artifacts["int8"]], data=tiny_dataset / "val", reference="builtin:student", limit=120)
    for row in rows:
        n = row["images"]
        assert n == 120 and row["top1_ci"] == _wilson_of(row["top1"], n), row
        assert row["agreement_ci"] == _wilson_of(row["vs_reference_top1_agreement"], n), row
        for value, key in (("top1", "top1_ci"), ("vs_reference_top1_agreement", "agreement_ci"),
                           ("vs_reference_cosine", "cosine_ci")):
            assert _inside(row[value], row[key]), (key, row)
    reference, int8 = rows
    assert reference["top1_vs_reference"] == "tie" and reference["top1_vs_reference_points_ci"] == [0.0, 0.0]
    assert reference["sqnr_db_ci"] == [float("inf")] * 2 and reference["agreement_ci"][1] == 1.0
    assert _inside(int8["vs_reference_sqnr_db"], int8["sqnr_db_ci"]) and int8["sqnr_db_ci"][1] > int8["sqnr_db_ci"][0]
    assert int8["cosine_ci"][0] < int8["cosine_ci"][1] <= 1.0 + 1e-9
    assert _inside(100 * (int8["top1"] - reference["top1"]), int8["top1_vs_reference_points_ci"])


def test_evaluate_pair_carries_intervals_and_a_paired_drop(artifacts: dict, tiny_dataset: Path) -> None:
    from coatnet_edge.data.sampling import build_calibration_set
    from coatnet_edge.measure.evaluate import evaluate_pair

    _, info = load_checkpoint("builtin:student")
    sample = build_calibration_set(tiny_dataset / "val", info.preprocess, size=60, seed=0, warn_short=False)
    pair = evaluate_pair(artifacts["fp32"], artifacts["int8"], sample)
    for backend in ("onnxruntime", "openvino"):
        row = pair[backend]
        assert row["fp32_top1_ci"] == _wilson_of(row["fp32_top1"], 60) and row["int8_top1_ci"] == _wilson_of(
            row["int8_top1"], 60), row
        assert row["agreement_ci"] == _wilson_of(row["agreement_top1_agreement"], 60), row
        assert _inside(row["top1_drop_points"], row["top1_drop_points_ci"]), row
        low, high = row["top1_drop_points_ci"]
        assert row["int8_vs_fp32_top1"] == ("worse" if low > 0 else "better" if high < 0 else "tie"), row


def test_compare_table_cells_carry_intervals_and_stay_parseable(tmp_path: Path) -> None:
    """The md/terminal cell is ``value [low, high]`` with the value first; CSV keeps its columns first and appends
    the bounds; a file written before intervals existed still reads (plain cells, empty bounds)."""
    from coatnet_edge.measure.evaluate import INTERVALS
    from coatnet_edge.measure.report import COLUMNS, comparison_rows, write_report
    from coatnet_edge.measure.summary import report_table

    def lat(name: str, backend: str, precision: str, p50: float) -> dict:
        return {"artifact": f"/x/{name}", "backend": backend, "precision": precision, "batch": 1, "p50_ms": p50,
                "p90_ms": p50 * 1.1, "size_bytes": 10**6}

    top1, agreement = 0.9, 0.9858
    accuracy = [{"artifact": "/x/ref.pt", "images": 1200, "top1": 0.905, "vs_reference_top1_agreement": 1.0},
                {"artifact": "/x/m.int8.xml", "images": 1200, "top1": top1, "top1_ci": [0.882, 0.916],
                 "vs_reference_top1_agreement": agreement, "agreement_ci": [0.978123, 0.991456],
                 "vs_reference_cosine": 0.998, "cosine_ci": [0.9975, 0.9985], "vs_reference_sqnr_db": 20.5,
                 "sqnr_db_ci": [19.8, 21.1]}]
    doc = {"environment": {"gpu": "Test GPU"}, "method": {"reference": "/x/ref.pt", "intervals": INTERVALS},
           "accuracy": accuracy, "latency": [lat("ref.pt", "pytorch", "fp32", 4.0), lat("m.int8.xml", "openvino",
                                                                                    "int8", 1.0)]}
    files = write_report(comparison_rows(doc), tmp_path, stem="compare", sources=[doc]).files
    lines = files["md"].read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| device"))
    names = [c.strip() for c in lines[header].strip("|").split("|")]
    assert names == COLUMNS and lines[header + 1] == "|" + "---|" * len(COLUMNS)
    cells = {n: c.strip() for n, c in zip(names, lines[header + 3].strip("|").split("|"), strict=True)}
    assert cells["agreement"] == "0.9858 [0.978, 0.991]" and float(cells["agreement"].split()[0]) == agreement
    assert cells["top1"] == "0.9000 [0.882, 0.916]" and float(cells["top1"].split()[0]) == top1
    assert cells["cosine"] == "0.99800 [0.99750, 0.99850]" and cells["sqnr_db"] == "20.5 [19.8, 21.1]"
    old = {n: c.strip() for n, c in zip(names, lines[header + 2].strip("|").split("|"), strict=True)}
    assert old["top1"] == "0.9050" and old["agreement"] == "1.0000"  # no interval in the file: the plain value
    assert INTERVALS in files["md"].read_text()
    rows = list(csv.reader(files["csv"].read_text().splitlines()))
    assert rows[0][:len(COLUMNS)] == COLUMNS and rows[0][len(COLUMNS):] == [
        "top1_low", "top1_high", "agreement_low", "agreement_high", "cosine_low", "cosine_high", "sqnr_db_low",
        "sqnr_db_high", "images"]
    new = dict(zip(rows[0], rows[2], strict=True))
    assert float(new["agreement"]) == agreement and float(new["agreement_low"]) == 0.978123
    assert float(new["sqnr_db_high"]) == 21.1 and new["images"] == "1200"
    assert dict(zip(rows[0], rows[1], strict=True))["top1_low"] == ""
    table = report_table(comparison_rows(doc), "comparison")
    assert INTERVALS in table.title and table.rows[1][table.header.index("agreement")] == "0.9858 [0.978, 0.991]"


def test_compare_writes_table_in_three_formats_and_a_real_plot(artifacts: dict, tiny_dataset: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = run_cli("compare", "--reference", "builtin:student", str(artifacts["fp32"]), str(artifacts["int8"]),
                   str(artifacts["xml"]), "--data", str(tiny_dataset / "val"), "--runs", "3", "--warmup", "1",
                   "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    for suffix in ("md", "csv", "json", "png"):
        assert (out / f"compare.{suffix}").is_file(), suffix
    doc = json.loads((out / "compare.json").read_text())
    assert doc["schema"] == "coatnet-edge/comparison/v1" and len(doc["latency"]) == 4
    rows = (out / "compare.csv").read_text().splitlines()
    assert rows[0].startswith("device,artifact,backend,precision,top1,agreement") and len(rows) == 5
    reference = next(r for r in doc["latency"] if r["backend"] == "pytorch")
    for row in csv.DictReader(rows):  # each speed-up: the reference's p50 over the row's, same batch
        assert float(row["speedup"]) == pytest.approx(reference["p50_ms"] / float(row["p50_ms"]), rel=1e-6), row
    assert "| builtin_student.int8.xml | openvino | int8 |" in (out / "compare.md").read_text()
    for row in csv.DictReader(rows):  # the CSV's interval columns bracket the value beside them
        for metric in ("top1", "agreement", "cosine"):
            assert _inside(float(row[metric]), [float(row[f"{metric}_low"]), float(row[f"{metric}_high"])]), row
    assert all(r["agreement_ci"] and r["top1_ci"] for r in doc["accuracy"])
    with Image.open(out / "compare.png") as png:
        assert png.format == "PNG" and png.size[0] >= 600


def test_report_merges_devices(artifacts: dict, tiny_dataset: Path, tmp_path: Path) -> None:
    from coatnet_edge.measure.report import compare, report

    cpu = compare("builtin:student", [artifacts["int8"]], data=tiny_dataset / "val", out=tmp_path / "cpu", runs=2,
                  warmup=0).files["json"]
    jetson_doc = json.loads(cpu.read_text())
    jetson_doc["environment"]["gpu"] = "Orin (nvgpu)"
    jetson = tmp_path / "jetson.json"
    jetson.write_text(json.dumps(jetson_doc))
    merged = report([cpu, jetson], out=tmp_path / "merged")
    assert len({r["device"] for r in merged.rows}) == 2 and len(merged.rows) == 4
    assert "Orin (nvgpu)" in merged.files["md"].read_text()
    with Image.open(merged.files["png"]) as png:
        assert png.format == "PNG"


def test_pareto_front() -> None:
    from coatnet_edge.measure.report import pareto_front

    points = [(1.0, 0.90), (2.0, 0.95), (3.0, 0.93), (0.5, 0.80), (2.0, 0.90)]
    assert pareto_front(points) == [0, 1, 3]


def test_predict_runs_without_torch(artifacts: dict, tiny_dataset: Path) -> None:
    """The edge predictor never even tries to import torch: an import hook records every attempt
    (a caught ImportError with a torch fallback would pass a plain "torch is absent" check)."""
    image = sorted((tiny_dataset / "val").rglob("*.png"))[0]
    code = (
        "import importlib.abc, sys\n"
        "tried = []\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            tried.append(name)\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from coatnet_edge.cli import main\n"
        f"code = main(['predict', '--model', {str(artifacts['xml'])!r}, {str(image)!r}, '--top-k', '3'])\n"
        "print('torch imports tried:', tried)\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "torch imports tried: []", proc.stdout
    line = proc.stdout.strip().splitlines()[-2]
    assert line.startswith(str(image)) and line.count(",") == 2  # three labels with probabilities


def test_bad_measurement_inputs(artifacts: dict, tiny_dataset: Path, tmp_path: Path) -> None:
    unknown = tmp_path / "model.tflite"
    unknown.write_bytes(b"\0" * 16)
    assert_one_line_error(run_cli("benchmark", str(unknown), "--out", str(tmp_path / "b.json")),
                          "unknown artifact type '.tflite'", str(unknown))
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema": "coatnet-edge/benchmark/v0", "results": []}))
    assert_one_line_error(run_cli("report", str(old), "--out", str(tmp_path / "r")), "v0", str(old))
    assert not (tmp_path / "r").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run_cli("evaluate", str(artifacts["fp32"]), "--data", str(empty)), str(empty))
    other = tmp_path / "other"
    for cls in ("cat", "dog"):
        (other / cls).mkdir(parents=True)
        Image.new("RGB", (80, 80), (10, 20, 30)).save(other / cls / "a.png")
    assert_one_line_error(run_cli("evaluate", str(artifacts["fp32"]), "--data", str(other)), str(other), "classes")
    assert_one_line_error(run_cli("compare", "--reference", "builtin:student", str(artifacts["fp32"]), "--data",
                                  str(tiny_dataset / "val"), "--batch", "0", "--out", str(tmp_path / "c")), "--batch")
    assert not (tmp_path / "c").exists()
