"""One scoring engine for every INT8 target: the plain path is the baseline, a candidate of ours replaces it only
on evidence.

Each target (the TensorRT Q/DQ graph, the OpenVINO IR, the ONNX Runtime graph) hands this module its candidate
names (the first is the baseline: the path a user writes in three lines), a way to build each and a way to run
it. Every candidate is scored per image against the FP32 logits of one held-out score set; a candidate replaces
the baseline only when the paired bootstrap interval of its per-image difference in the ranking measure (logit KL
by default) excludes zero in its favour, and its top-1 agreement is not worse beyond its own paired interval.
Otherwise it is a tie, and a tie keeps the baseline unless a tied candidate is faster beyond a margin, timed in
interleaved rounds with an interval. Bootstraps are seeded, so the same inputs give the same choice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from coatnet_edge.calibration.sensitivity import onnx_logits
from coatnet_edge.data.corrupt import CORRUPTIONS, corrupted_batch
from coatnet_edge.data.sampling import ImageSample
from coatnet_edge.measure.benchmark import CANDIDATE_TIMING
from coatnet_edge.metrics import PerImage, per_image_fidelity
from coatnet_edge.runtime.base import run_batches
from coatnet_edge.stats import Interval, bootstrap_mean, paired_difference, wilson

Measure = Literal["kl", "sqnr", "cosine"]
MEASURES: tuple[str, ...] = ("kl", "sqnr", "cosine")
DEFAULT_MEASURE: Measure = "kl"
MIN_SCORE_IMAGES = 32  # fewer held-out images than this cannot tell candidates apart: the baseline is kept
SCORE_SEVERITIES = (2, 3, 4)  # the corrupted half of the score set cycles these with the four corruption kinds
SPEED_MARGIN = 0.90  # a tied candidate replaces the baseline only if its p50 ratio's whole interval is below this
SCORE_PIXELS = 64 * 64 * 64  # images x pixels per scoring batch (see score_batch)
Log = Callable[[str], None]


@dataclass
class ScoreSet:
    """Images held apart from calibration, their FP32 logits, and what they are (recorded in the manifest)."""

    images: np.ndarray
    reference: np.ndarray
    what: str
    record: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)


def score_images(sample: ImageSample, clean: str | None = None) -> tuple[np.ndarray, str, dict[str, Any]]:
    """The images and a corrupted copy of them (four kinds x severities 2-4 cycled): INT8 flips happen near decision
    boundaries, and shifted inputs have more of them. ``clean`` describes the uncorrupted half (default: held out)."""
    corrupted = corrupted_batch(sample.paths, sample.preprocess, severities=SCORE_SEVERITIES)
    clean = clean or f"{len(sample)} images of {sample.root} beyond the calibration sample"
    what = (f"{clean}, and the same images corrupted ({', '.join(CORRUPTIONS)} x severities "
            f"{', '.join(map(str, SCORE_SEVERITIES))}, cycled)")
    record = {"root": str(sample.root), "images": len(sample), "sha256": sample.sha256,
              "corrupted_copy": {"kinds": list(CORRUPTIONS), "severities": list(SCORE_SEVERITIES)}}
    return np.concatenate([sample.images, corrupted]), what, record


def score_set_of(held_out: ImageSample, fp32_model: Any) -> ScoreSet:
    """The score set of a held-out sample: its images, their corrupted copy, and the FP32 graph's logits on them."""
    return _with_reference(*score_images(held_out), fp32_model)


def in_sample_score_set(calib: ImageSample, fp32_model: Any) -> ScoreSet | None:
    """Without held-out images, the calibration images themselves (and their corrupted copy): in-sample, so a check
    that catches a broken candidate more than a ranking of close ones, and the record says so. None when even the
    calibration sample is smaller than MIN_SCORE_IMAGES."""
    if len(calib) < MIN_SCORE_IMAGES:
        return None
    images, what, record = score_images(calib, f"no images beyond the calibration sample: the {len(calib)} "
                                               "calibration images themselves (in-sample)")
    return _with_reference(images, what, {**record, "in_sample": True}, fp32_model)


def _with_reference(images: np.ndarray, what: str, record: dict[str, Any], fp32_model: Any) -> ScoreSet:
    return ScoreSet(images, onnx_logits(fp32_model, images, batch_size=score_batch(images)), what, record)


def badness(fidelity: PerImage, measure: str) -> np.ndarray:
    """Per-image score where lower is more faithful (what the paired comparison resamples)."""
    if measure == "kl":
        return fidelity.kl
    if measure == "sqnr":
        return -fidelity.sqnr_db
    if measure == "cosine":
        return 1.0 - fidelity.cosine
    raise ValueError(f"unknown ranking measure {measure!r}")


@dataclass
class Scored:
    """One candidate built and run on the score set."""

    name: str
    built: Any
    runner: Any
    fidelity: PerImage
    seconds: float
    p50_rounds: np.ndarray | None = None  # batch-1 p50 of each interleaved round, ms


def score_batch(images: np.ndarray) -> int:
    """Images per scoring batch: 64 at 64 px, 5 at 224 px. Every candidate's runner stays alive until the decision
    (the speed tie-break times them) and a runtime keeps memory for the largest batch it ran; scoring CoAtNet-0's
    candidates at 224 px in batches of 64 drove a 24 GB machine into swap."""
    pixels = int(np.prod(images.shape[2:])) if images.ndim >= 4 else 1
    return max(1, SCORE_PIXELS // max(pixels, 1))


def score(name: str, built: Any, runner: Any, score_set: ScoreSet, seconds: float) -> Scored:
    outputs = run_batches(runner, score_set.images, score_batch(score_set.images))
    return Scored(name, built, runner, per_image_fidelity(score_set.reference, outputs), seconds)


def interleaved_p50(scored: Sequence[Scored], image: np.ndarray) -> None:
    """Batch-1 p50 of each candidate in each round (``CANDIDATE_TIMING``), candidates in turn within a round."""
    for item, rounds in zip(scored, CANDIDATE_TIMING.p50_rounds([item.runner for item in scored], image), strict=True):
        item.p50_rounds = rounds


def speed_ratio(candidate: Scored, baseline: Scored) -> Interval | None:
    """p50 of ``candidate`` over the baseline's: geometric mean of the per-round ratios, bootstrap over rounds."""
    if candidate.p50_rounds is None or baseline.p50_rounds is None:
        return None
    logs = bootstrap_mean(np.log(candidate.p50_rounds / baseline.p50_rounds))
    return Interval(float(np.exp(logs.value)), float(np.exp(logs.low)), float(np.exp(logs.high)))


def _row(item: Scored, base: Scored, measure: str) -> dict[str, Any]:
    fid = item.fidelity
    agreement = wilson(int(fid.agree.sum()), len(fid.agree))
    row: dict[str, Any] = {
        "candidate": item.name, "top1_agreement": round(agreement.value, 4),
        "agreement_ci": [round(agreement.low, 4), round(agreement.high, 4)],
        "cosine": round(float(fid.cosine.mean()), 6), "kl": round(float(fid.kl.mean()), 6),
        "sqnr_db": round(float(np.median(fid.sqnr_db)), 2), "seconds": round(item.seconds, 1)}
    if item.p50_rounds is not None:
        row["p50_ms_batch1"] = round(float(np.median(item.p50_rounds)), 3)
    if item is base:
        row["verdict"] = "baseline"
        return row
    diff = paired_difference(badness(fid, measure), badness(base.fidelity, measure))
    agree = paired_difference(fid.agree.astype(float), base.fidelity.agree.astype(float))
    row[f"{measure}_vs_baseline"] = diff.to_list(8)
    row["agreement_vs_baseline"] = agree.to_list(4)
    if agree.high < 0:
        row["verdict"] = "worse"  # agreement is a constraint: never traded for the ranking measure
    else:
        row["verdict"] = "better" if diff.high < 0 else "worse" if diff.low > 0 else "tie"
    ratio = speed_ratio(item, base)
    if ratio is not None:
        row["speed_vs_baseline"] = ratio.to_list(3)
    return row


@dataclass
class Decision:
    chosen: str
    rows: list[dict[str, Any]]
    reason: str


def decide(scored: Sequence[Scored], measure: str = DEFAULT_MEASURE) -> Decision:
    """The baseline (``scored[0]``), unless a candidate is more faithful beyond its paired interval (the most
    faithful of those is kept), or, among ties, faster beyond ``SPEED_MARGIN`` with its interval."""
    base = scored[0]
    rows = [_row(item, base, measure) for item in scored]
    better = [(row, item) for row, item in zip(rows, scored, strict=True) if row["verdict"] == "better"]
    if better:
        row, item = min(better, key=lambda pair: float(badness(pair[1].fidelity, measure).mean()))
        reason = (f"more faithful than the baseline {base.name} beyond the paired 95 % interval "
                  f"(mean {measure} difference {row[f'{measure}_vs_baseline'][0]:.3g})")
    else:
        fast = [(row, item) for row, item in zip(rows, scored, strict=True)
                if row["verdict"] == "tie" and row.get("speed_vs_baseline", [1, 1, 1])[2] < SPEED_MARGIN]
        if fast:
            row, item = min(fast, key=lambda pair: pair[0]["speed_vs_baseline"][0])
            reason = (f"tied with the baseline {base.name} on fidelity and faster: p50 ratio "
                      f"{row['speed_vs_baseline'][0]:.2f} (95 % interval up to {row['speed_vs_baseline'][2]:.2f})")
        else:
            row, item = rows[0], base
            reason = "no candidate more faithful than the baseline beyond its interval: the baseline is kept"
    for other in rows:
        other["chosen"] = other is row
    return Decision(item.name, rows, reason)


def rule_text(measure: str = DEFAULT_MEASURE) -> str:
    return (f"the baseline (the first candidate, the plain path) unless a candidate's per-image {measure} vs FP32 is "
            f"lower beyond the paired-bootstrap 95 % interval of the difference, with top-1 agreement not lower "
            f"beyond its own paired interval (then the most faithful such candidate); among ties, a candidate "
            f"replaces the baseline only if faster with its p50-ratio interval below {SPEED_MARGIN} "
            f"({CANDIDATE_TIMING.describe()})")


@dataclass
class Selection:
    chosen: str
    built: Any
    runner: Any
    record: dict[str, Any]
    scored: Scored | None = None  # the kept candidate's scores (None when nothing was measured)


def select(target: str, names: Sequence[str], build: Callable[[str], Any], runner: Callable[[Any], Any],
           score_set: ScoreSet | None, *, measure: str = DEFAULT_MEASURE, timed: bool = True, log: Log = print
           ) -> Selection:
    """Build, run and score each of ``names`` (``names[0]`` is the baseline) on ``score_set``; decide; record.

    With one name, or no score set (fewer than MIN_SCORE_IMAGES images to score on), the baseline is built unscored
    and the record says why."""
    if len(names) == 1 or score_set is None:
        why = ("one candidate asked" if len(names) == 1 else
               f"fewer than {MIN_SCORE_IMAGES} images to score on")
        log(f"{target}: {names[0]} without scoring ({why})")
        return Selection(names[0], build(names[0]), None, not_measured(target, names[0], why))
    scored = []
    for name in names:
        started = time.perf_counter()
        built = build(name)
        item = score(name, built, runner(built), score_set, time.perf_counter() - started)
        log(f"{target} candidate {name}: top-1 agreement {item.fidelity.agree.mean():.4f}, mean KL "
            f"{item.fidelity.kl.mean():.2e}, cosine {item.fidelity.cosine.mean():.5f} on {len(score_set)} "
            f"score images ({item.seconds:.1f} s)")
        scored.append(item)
    if timed and len(scored) > 1:
        interleaved_p50(scored, score_set.images[:1])
    decision = decide(scored, measure)
    kept = next(item for item in scored if item.name == decision.chosen)
    log(f"{target}: kept {decision.chosen} ({decision.reason})")
    record = {"engine": target, "baseline": names[0], "measure": measure, "chosen": decision.chosen,
              "reason": decision.reason, "rule": rule_text(measure), "score_set": {"what": score_set.what,
                                                                                  **score_set.record},
              "method": f"each candidate scored against the FP32 graph on {len(score_set)} images "
                        f"({score_set.what}); kept: {rule_text(measure)}",
              "scoreboard": decision.rows}
    return Selection(decision.chosen, kept.built, kept.runner, record, kept)


def not_measured(target: str, baseline: str, why: str) -> dict[str, Any]:
    """The record of a selection that could not be measured: the baseline, and why."""
    return {"engine": target, "baseline": baseline, "chosen": baseline, "reason": f"not measured: {why}",
            "method": f"not measured: {why}", "scoreboard": []}
