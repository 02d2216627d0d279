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
from coatnet_edge.pipeline.export import export
from tests.conftest import REPO, assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def artifacts(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("measure")
    fp32 = export("builtin:student", out=out, backend="onnx", log=lambda s: None).artifact
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
