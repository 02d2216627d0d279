"""Every INT8 path over several calibration seeds: the toolkit's pick per target against each plain path, as
distributions, on models the defaults were tuned on and on freshly trained ones that took no part.

    python benchmarks/int8_seeds.py [--seeds 0,1,2,3] [--calib-size 300]
        [--case 'LABEL|ROLE|CHECKPOINT|DATA' ...] [--work runs/int8_seeds] [--render-only]

For each case (a model and its dataset folder with train/ and val/) and each calibration seed, the calibration
folder (train/) is split once into the calibration sample and the held-out score set exactly as `quantize` does
(`split_calibration_folder`, `score_images`). Every candidate of every target is built from the same FP32 ONNX and
calibration images, scored per image against the FP32 graph on the score set and on the validation split, clean
and corrupted (`coatnet-edge data corrupt`: four kinds cycled, severity 3), and each target's pick is made by the
toolkit's own engine (`calibration.selection.decide`) from the score-set scores, as `quantize` / `export` make it.
OpenVINO candidates are compiled with f32 float parts (the bf16 step after the pick is not part of this page).
Per-image arrays are saved under WORK, so `--render-only` rewrites the page without quantizing again.
Writes docs/int8_seeds.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from docpage import Machine, table, write_page  # the script folder is on sys.path

from coatnet_edge.calibration.candidates import quantize_candidate
from coatnet_edge.calibration.onnxruntime_int8 import ONNXRUNTIME_CANDIDATES, plain_graph, u8_graph
from coatnet_edge.calibration.openvino_int8 import OPENVINO_CANDIDATES, candidate_model
from coatnet_edge.calibration.options import QuantizeOptions
from coatnet_edge.calibration.ptq import PtqSettings
from coatnet_edge.calibration.selection import (
    MEASURES,
    Scored,
    badness,
    decide,
    interleaved_p50,
    score,
    score_set_of,
)
from coatnet_edge.calibration.sensitivity import onnx_logits
from coatnet_edge.data.corrupt import write_corrupted
from coatnet_edge.data.sampling import build_calibration_set, split_calibration_folder
from coatnet_edge.data.synth import SynthConfig, write_dataset
from coatnet_edge.export.onnx import export_fp32_onnx
from coatnet_edge.metrics import PerImage, per_image_fidelity
from coatnet_edge.models.source import load_model
from coatnet_edge.runtime.base import run_batches
from coatnet_edge.runtime.onnxruntime import InMemorySession
from coatnet_edge.runtime.openvino import CpuCompiled
from coatnet_edge.stats import bootstrap_mean, wilson

DEFAULT_CASES = (
    "shapes, shipped teacher|tuned on|builtin:teacher|{work}/shapes_seed0",
    "shapes, shipped student|tuned on|builtin:student|{work}/shapes_seed0",
    "shapes, fresh teacher|check|runs/fresh_shapes/teacher/best.safetensors|runs/fresh_shapes/data",
    "shapes, fresh student|check|runs/fresh_shapes/student/best.safetensors|runs/fresh_shapes/data",
    "glyphs, fresh teacher|check|runs/fresh_glyphs/teacher/best.safetensors|runs/fresh_glyphs/data",
    "glyphs, fresh student|check|runs/fresh_glyphs/student/best.safetensors|runs/fresh_glyphs/data",
)
TARGETS = ("tensorrt", "openvino", "onnxruntime")
TRT_CANDIDATES = QuantizeOptions.candidates
# the plain paths (what a user writes in three lines), per target; each target's baseline is its first candidate
PLAIN = {"tensorrt": ("cnn",), "openvino": ("nncf", "nncf-transformer", "nncf-unfused", "nncf-transformer-unfused"),
         "onnxruntime": ("plain",)}
SPLITS = ("score", "clean", "corrupted")


@dataclass
class Case:
    label: str
    role: str
    checkpoint: str
    data: Path

    @property
    def key(self) -> str:
        return self.label.replace(", ", "_").replace(" ", "_")


def parse_case(text: str, work: Path) -> Case:
    label, role, checkpoint, data = text.format(work=work).split("|")
    return Case(label, role, checkpoint, Path(data))


def ensure_data(case: Case) -> None:
    """The shipped models' dataset is generated here (seed 0); every case gets a corrupted copy of val."""
    if not (case.data / "train").is_dir():
        write_dataset(case.data, SynthConfig(seed=0), workers=2)
    if not (case.data / "val_corrupted").is_dir():
        write_corrupted(case.data / "val", case.data / "val_corrupted")


def _fidelity_arrays(fid: PerImage) -> dict[str, np.ndarray]:
    return {"kl": fid.kl.astype(np.float32), "cosine": fid.cosine.astype(np.float32),
            "sqnr_db": fid.sqnr_db.astype(np.float32), "agree": fid.agree}


def measure_case(case: Case, seeds: list[int], calib_size: int, work: Path) -> None:
    """Quantize every candidate for every seed; save per-image arrays (WORK/<case>/seed<k>.npz)."""
    ensure_data(case)
    folder = work / case.key
    folder.mkdir(parents=True, exist_ok=True)
    loaded = load_model(case.checkpoint)
    fp32_path, _ = export_fp32_onnx(loaded, folder, log=lambda line: None)
    fp32 = onnx.load(str(fp32_path))
    val = {split: build_calibration_set(case.data / name, loaded.preprocess, size=100_000, seed=0, warn_short=False)
           for split, name in (("clean", "val"), ("corrupted", "val_corrupted"))}
    val_ref = {split: onnx_logits(fp32, sample.images) for split, sample in val.items()}
    top1 = {split: float(np.mean(val_ref[split].argmax(1) == val[split].labels)) for split in val}
    (folder / "case.json").write_text(json.dumps({"label": case.label, "role": case.role, "fp32_top1": top1,
                                                  "val_images": len(val["clean"]), "variant": loaded.variant}))
    settings = PtqSettings(preset="tensorrt", scheme="hybrid", attention_stages=loaded.attention_stages)
    for seed in seeds:
        out = folder / f"seed{seed}.npz"
        if out.is_file():
            continue
        started = time.perf_counter()
        calib, held = split_calibration_folder(case.data / "train", loaded.preprocess, calib_size=calib_size,
                                               score_size=QuantizeOptions.score_size, seed=seed, min_score_images=32)
        score_set = score_set_of(held, fp32)
        arrays: dict[str, np.ndarray] = {}

        def record(target: str, item: Scored, *, target_arrays: dict[str, np.ndarray] = arrays) -> None:
            for key, value in _fidelity_arrays(item.fidelity).items():
                target_arrays[f"{target}/{item.name}/score/{key}"] = value
            for split, sample in val.items():
                fid = per_image_fidelity(val_ref[split], run_batches(item.runner, sample.images))
                for key, value in _fidelity_arrays(fid).items():
                    target_arrays[f"{target}/{item.name}/{split}/{key}"] = value
            if item.p50_rounds is not None:
                target_arrays[f"{target}/{item.name}/p50_rounds"] = item.p50_rounds

        trt = [score(name, result, InMemorySession(result.model), score_set, 0.0)
               for name in TRT_CANDIDATES
               for result in [quantize_candidate(fp32, calib, settings, name)]]
        trt_pick = decide(trt).chosen
        with tempfile.TemporaryDirectory() as tmp:
            qdq_path = Path(tmp) / "qdq.onnx"
            onnx.save(next(item.built for item in trt if item.name == trt_pick).model, str(qdq_path))
            ov = [score(name, model, CpuCompiled(model, "f32"), score_set, 0.0)
                  for name in OPENVINO_CANDIDATES
                  for model in [candidate_model(name, fp32_path, qdq_path, calib.images)]]
            ort_models = {"plain": plain_graph(fp32_path, calib.images), "u8": u8_graph(fp32_path, calib.images),
                          "qdq": onnx.load(str(qdq_path))}
        ort = [score(name, ort_models[name], InMemorySession(ort_models[name]), score_set, 0.0)
               for name in ONNXRUNTIME_CANDIDATES]
        interleaved_p50(ort, score_set.images[:1])
        interleaved_p50(ov, score_set.images[:1])
        for target, items in (("tensorrt", trt), ("openvino", ov), ("onnxruntime", ort)):
            for item in items:
                record(target, item)
        arrays["trt_pick"] = np.array(trt_pick)
        np.savez_compressed(out, **arrays)
        print(json.dumps({"case": case.label, "seed": seed, "trt_pick": trt_pick,
                          "seconds": round(time.perf_counter() - started, 1)}), flush=True)


# --- render -------------------------------------------------------------------------------------------

def _load(work: Path, case: Case, seeds: list[int]) -> tuple[dict[str, Any], list[dict[str, np.ndarray]]]:
    folder = work / case.key
    info = json.loads((folder / "case.json").read_text())
    present = [seed for seed in seeds if (folder / f"seed{seed}.npz").is_file()]  # a case may have fewer seeds
    info["seeds"] = present
    return info, [dict(np.load(folder / f"seed{seed}.npz")) for seed in present]


def _scored(data: dict[str, np.ndarray], target: str, names: tuple[str, ...], split: str = "score") -> list[Scored]:
    items = []
    for name in names:
        fid = PerImage(*(data[f"{target}/{name}/{split}/{key}"] for key in ("kl", "cosine", "sqnr_db", "agree")))
        items.append(Scored(name, None, None, fid, 0.0, data.get(f"{target}/{name}/p50_rounds")))
    return items


def candidates_of(target: str) -> tuple[str, ...]:
    return {"tensorrt": TRT_CANDIDATES, "openvino": OPENVINO_CANDIDATES, "onnxruntime": ONNXRUNTIME_CANDIDATES}[target]


def picks(seeds_data: list[dict[str, np.ndarray]], target: str, measure: str = "kl") -> list[str]:
    """Each seed's pick by the toolkit's engine from the score-set scores."""
    return [decide(_scored(data, target, candidates_of(target)), measure).chosen for data in seeds_data]


def _series(seeds_data: list[dict[str, np.ndarray]], target: str, chosen: list[str], split: str, key: str
            ) -> np.ndarray:
    """(seeds, images) array of one per-image measure of the chosen candidate in each seed."""
    return np.stack([data[f"{target}/{name}/{split}/{key}"].astype(np.float64)
                     for data, name in zip(seeds_data, chosen, strict=True)])


def _summary(values: np.ndarray) -> tuple[float, float, float]:
    means = values.mean(axis=1)
    return float(means.mean()), float(means.min()), float(means.max())


def _fmt_agree(values: np.ndarray) -> str:
    mean, low, high = _summary(values)
    n = values.shape[1]
    ci = wilson(round(mean * n), n)
    return f"{100 * mean:.2f} [{100 * low:.2f}, {100 * high:.2f}] (±{50 * (ci.high - ci.low):.2f})"


def _fmt_mean(values: np.ndarray, digits: int = 5) -> str:
    mean, low, high = _summary(values)
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _paired(a: np.ndarray, b: np.ndarray, scale: float = 100.0, higher_is_better: bool = True) -> str:
    """Mean per-image difference averaged over seeds, with the bootstrap interval over images."""
    diff = bootstrap_mean((a - b).mean(axis=0))
    if not diff.excludes(0.0):
        word = "tie"
    else:
        word = "higher" if diff.low > 0 else "lower"
        word = ("**" + word + "**") if (diff.low > 0) != higher_is_better else word
    return f"{scale * diff.value:+.2f} [{scale * diff.low:+.2f}, {scale * diff.high:+.2f}] {word}"


def verdict_rows(cases: list[tuple[Case, dict[str, Any], list]], split: str) -> list[list[str]]:
    """Per case and target: the toolkit's pick vs the best plain path (highest mean agreement on ``split``)."""
    rows = []
    for case, _, seeds_data in cases:
        for target in TARGETS:
            chosen = picks(seeds_data, target)
            ours = _series(seeds_data, target, chosen, split, "agree")
            ours_cos = _series(seeds_data, target, chosen, split, "cosine")
            plain = {name: _series(seeds_data, target, [name] * len(seeds_data), split, "agree")
                     for name in PLAIN[target]}
            best = max(plain, key=lambda name: plain[name].mean())
            best_cos = _series(seeds_data, target, [best] * len(seeds_data), split, "cosine")
            rows.append([case.label, case.role, target, ", ".join(chosen), _fmt_agree(ours), _fmt_mean(ours_cos),
                         best, _fmt_agree(plain[best]), _fmt_mean(best_cos),
                         _paired(ours, plain[best]), _paired(ours_cos, best_cos, scale=1000.0)])
    return rows


def path_rows(cases: list[tuple[Case, dict[str, Any], list]], split: str) -> list[list[str]]:
    rows = []
    for case, _, seeds_data in cases:
        for target in TARGETS:
            for name in candidates_of(target):
                same = [name] * len(seeds_data)
                rows.append([case.label, target, name + (" (plain)" if name in PLAIN[target] else ""),
                             _fmt_agree(_series(seeds_data, target, same, split, "agree")),
                             _fmt_mean(_series(seeds_data, target, same, split, "cosine")),
                             _fmt_mean(_series(seeds_data, target, same, split, "kl"), 4)])
    return rows


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def measure_rows(cases: list[tuple[Case, dict[str, Any], list]]) -> list[list[str]]:
    """How well each score-set measure orders the candidates as the corrupted validation split does (by mean
    agreement): Spearman per (case, seed, target), averaged; and how often its best is the validation's best."""
    rows = []
    for measure in (*MEASURES, "agreement"):
        rhos, hits, total = [], 0, 0
        for _, _, seeds_data in cases:
            for data in seeds_data:
                for target in TARGETS:
                    items = _scored(data, target, candidates_of(target))
                    if measure == "agreement":
                        score_bad = np.array([-item.fidelity.agree.mean() for item in items])
                    else:
                        score_bad = np.array([badness(item.fidelity, measure).mean() for item in items])
                    val = np.array([data[f"{target}/{item.name}/corrupted/agree"].mean() for item in items])
                    rho = _spearman(-score_bad, val)
                    if not np.isnan(rho):
                        rhos.append(rho)
                    hits += bool(val[int(np.argmin(score_bad))] >= val.max())
                    total += 1
        rows.append([measure, f"{np.mean(rhos):.3f}", f"{np.median(rhos):.3f}", len(rhos), f"{hits}/{total}"])
    return rows


METHOD = """Every INT8 path of the toolkit's three targets over up to {nseeds} calibration seeds ({seeds}; the
cases table says which each case ran), per case. A
case is a model and its dataset: the shipped built-in teacher and student (the models the defaults were tuned on,
dataset seed 0) and a fresh teacher and distilled student per family (`benchmarks/train_builtin.py --data-seed 1
--seed 1 --teacher-epochs 12 --student-epochs 15`, dataset seed 1: they took no part in choosing any default).
For each seed, `train/` is split once into {calib} calibration images and up to 1,000 held-out images, as
`quantize` does; the score set is the held-out images plus a corrupted copy (four kinds x severities 2-4
cycled). Each candidate is built from the same FP32 ONNX and calibration images and scored per image against
the FP32 graph on the score set and on the whole validation split, clean and corrupted (the four kinds cycled,
severity 3). The toolkit's pick per target and seed is made by its own engine (`calibration.selection.decide`:
the baseline, the first candidate, unless another is more faithful by mean per-image logit KL beyond the paired
bootstrap 95 % interval with agreement not worse beyond its own; ties keep the baseline unless faster beyond a
0.90 p50 ratio, timed in interleaved rounds — ONNX Runtime and OpenVINO only). TensorRT-target graphs are run in
ONNX Runtime (the graph TensorRT builds from); OpenVINO candidates with f32 float parts. Agreement = share of
images whose top-1 equals FP32's, in %: mean over seeds [min, max] (± half the Wilson 95 % interval of one
seed's mean); cosine = mean logit cosine, mean [min, max]. "vs best plain" is the toolkit's pick minus the plain
path with the highest mean agreement on that split (chosen in hindsight): the mean per-image difference over
seeds, with its bootstrap 95 % interval over images; "tie" when the interval includes zero, bold where the
toolkit is below."""


def render(cases: list[tuple[Case, dict[str, Any], list]], seeds: list[int], calib: int, machine: Machine,
           wall: float | None) -> None:
    header = ["case", "role", "target", "picks (per seed)", "toolkit agreement %", "toolkit cosine",
              "best plain", "plain agreement %", "plain cosine", "agreement diff (points)", "cosine diff (x1e-3)"]
    info_rows = [[case.label, case.role, info["variant"], f"{100 * info['fp32_top1']['clean']:.2f}",
                  f"{100 * info['fp32_top1']['corrupted']:.2f}", info["val_images"],
                  ", ".join(map(str, info["seeds"]))] for case, info, _ in cases]
    sections = [
        "## Cases\n\n" + table(["case", "role", "variant", "FP32 top-1 clean %", "FP32 top-1 corrupted %",
                                "val images", "calibration seeds"], info_rows),
        "## The toolkit's pick vs the best plain path: corrupted split\n\n" + table(header, verdict_rows(
            cases, "corrupted")),
        "## The same on the clean split\n\n" + table(header, verdict_rows(cases, "clean")),
        "## Which score-set measure predicts the corrupted split\n\nFor every case, seed and target, the "
        "candidates ordered by a measure on the score set against their order by mean agreement on the corrupted "
        "validation split: Spearman rank correlation (mean and median over the rankings), and how often the "
        "candidate the measure ranks first is the most faithful (or tied most faithful) on the corrupted "
        "split.\n\n" + table(["score-set measure", "mean Spearman", "median Spearman", "rankings", "first = best"],
                             measure_rows(cases)),
        "## Every path over the seeds: corrupted split\n\n" + table(
            ["case", "target", "candidate", "agreement %", "cosine", "KL"], path_rows(cases, "corrupted")),
    ]
    write_page("int8_seeds.md", title="INT8 over calibration seeds: the toolkit's pick vs the plain paths",
               method=METHOD.format(nseeds=len(seeds), seeds=", ".join(map(str, seeds)), calib=calib),
               machine=machine, sections=sections, wall_s=wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--calib-size", type=int, default=300)
    parser.add_argument("--case", action="append", help="'LABEL|ROLE|CHECKPOINT|DATA' (repeatable)")
    parser.add_argument("--work", type=Path, default=Path("runs/int8_seeds"))
    parser.add_argument("--render-only", action="store_true", help="rewrite the page from WORK's saved arrays")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    cases = [parse_case(text, args.work) for text in (args.case or DEFAULT_CASES)]
    machine, started = Machine(timed=False), time.perf_counter()
    if not args.render_only:
        for case in cases:
            measure_case(case, seeds, args.calib_size, args.work)
    loaded = [(case, *_load(args.work, case, seeds)) for case in cases]
    render(loaded, seeds, args.calib_size, machine, None if args.render_only else time.perf_counter() - started)


if __name__ == "__main__":
    main()
