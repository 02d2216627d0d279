"""The one scoring engine every INT8 target chooses with (``calibration/selection.py``): the baseline is kept unless
a candidate is more faithful beyond its paired interval with agreement not worse beyond its own; among ties only a
candidate faster beyond the margin, with its interval, replaces it; and the same inputs give the same choice.

Synthetic logits with controlled noise stand in for INT8 graphs, and fake runners on a fake clock for runtimes:
every case is known by construction, and nothing here needs NNCF.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import coatnet_edge.data.sampling as sampling
from coatnet_edge.calibration import layer_cost, selection
from coatnet_edge.calibration.selection import (
    MIN_SCORE_IMAGES,
    SPEED_MARGIN,
    Scored,
    ScoreSet,
    decide,
    score_images,
    select,
)
from coatnet_edge.data.corrupt import CorruptConfig, corrupted_batch
from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.data.sampling import build_calibration_set, split_calibration_folder
from coatnet_edge.measure import benchmark
from coatnet_edge.measure.benchmark import CANDIDATE_TIMING
from coatnet_edge.metrics import per_image_fidelity

N, CLASSES = 400, 10
REFERENCE = np.random.default_rng(0).normal(0.0, 3.0, (N, CLASSES))  # the "FP32 logits" of N score images


def _noisy(sigma: float, seed: int, reference: np.ndarray = REFERENCE) -> np.ndarray:
    return reference + np.random.default_rng(seed).normal(0.0, sigma, reference.shape)


def _scored(name: str, output: np.ndarray, p50_rounds: list[float] | np.ndarray | None = None,
            reference: np.ndarray = REFERENCE) -> Scored:
    rounds = None if p50_rounds is None else np.asarray(p50_rounds, dtype=np.float64)
    return Scored(name, None, None, per_image_fidelity(reference, output), 0.0, rounds)


def _tied_outputs() -> tuple[np.ndarray, np.ndarray]:
    """Two draws of the same noise: equal within noise. The candidate (second) is the draw with the lower mean KL,
    so a rule that compared means without an interval would replace the baseline."""
    a, b = _noisy(0.5, 3), _noisy(0.5, 4)
    kl = [per_image_fidelity(REFERENCE, x).kl.mean() for x in (a, b)]
    return (a, b) if kl[1] < kl[0] else (b, a)


def _tied_pair() -> tuple[Scored, Scored]:
    base, tie = _tied_outputs()
    return _scored("base", base), _scored("tie", tie)


def _verdicts(rows: list[dict]) -> dict[str, str]:
    return {row["candidate"]: row["verdict"] for row in rows}


def test_a_candidate_clearly_more_faithful_replaces_the_baseline() -> None:
    base, tie = _tied_pair()
    closer, closest = _scored("closer", _noisy(0.2, 5)), _scored("closest", _noisy(0.1, 6))
    decision = decide([base, closer, tie, closest])
    assert _verdicts(decision.rows) == {"base": "baseline", "closer": "better", "tie": "tie", "closest": "better"}
    assert decision.chosen == "closest"  # of two better ones, the most faithful, not the first listed
    assert [row["chosen"] for row in decision.rows] == [False, False, False, True]
    row = decision.rows[3]
    mean, low, high = row["kl_vs_baseline"]
    assert high < 0 and low <= mean <= high
    assert mean == pytest.approx(closest.fidelity.kl.mean() - base.fidelity.kl.mean(), abs=1e-7)
    assert row["agreement_vs_baseline"][2] >= 0 and "kl_vs_baseline" not in decision.rows[0]
    assert decision.reason.startswith("more faithful than the baseline base")


def test_a_candidate_equal_within_noise_is_a_tie_and_the_baseline_stays() -> None:
    base, tie = _tied_pair()
    assert tie.fidelity.kl.mean() < base.fidelity.kl.mean()  # lower by noise only
    decision = decide([base, tie])
    row = decision.rows[1]
    assert row["verdict"] == "tie" and row["kl_vs_baseline"][1] < 0 < row["kl_vs_baseline"][2]
    assert decision.chosen == "base" and decision.rows[0]["chosen"] and not row["chosen"]
    assert "speed_vs_baseline" not in row  # nothing timed: no speed claim
    assert decision.reason.startswith("no candidate more faithful")


def test_lower_kl_with_agreement_worse_beyond_its_interval_is_worse() -> None:
    """Agreement is a constraint, never traded for KL: a candidate that swaps the top two logits of near-tied
    images has a tiny KL but flips every one of them."""
    reference = REFERENCE.copy()
    rows, order = np.arange(N), np.argsort(-reference, axis=1)
    near = rows[rows % 3 == 0]  # a third of the images: the top two logits 0.02 apart
    top, second = order[near, 0], order[near, 1]
    reference[near, second] = reference[near, top] - 0.02
    swapped = reference.copy()
    swapped[near, top], swapped[near, second] = reference[near, second], reference[near, top]
    base = _scored("base", _noisy(0.3, 7, reference), reference=reference)
    cand = _scored("swap", swapped, reference=reference)
    decision = decide([base, cand])
    row = decision.rows[1]
    assert row["kl_vs_baseline"][2] < 0  # more faithful by KL beyond its interval: KL alone would keep it
    assert row["agreement_vs_baseline"][2] < 0 and row["verdict"] == "worse"
    assert decision.chosen == "base"


class _Clock:
    """A fake ``time`` module: runners advance it by their cost, optionally drifting (a CPU slowing down)."""

    def __init__(self, drift: float = 0.0) -> None:
        self.now, self.factor, self.drift = 0.0, 1.0, drift

    def perf_counter(self) -> float:
        return self.now


class _Runner:
    """Logits by index: the score-set 'images' are row indices into ``logits``; each run costs ``ms``."""

    def __init__(self, logits: np.ndarray, ms: float, clock: _Clock, jitter: float = 0.0) -> None:
        self.logits, self.ms, self.clock, self.jitter, self.calls = logits, ms, clock, jitter, 0

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        wobble = 1 + self.jitter * np.sin(self.calls)  # tight rounds: +-jitter, deterministic
        self.clock.now += self.ms * 1e-3 * wobble * self.clock.factor
        self.clock.factor *= 1 + self.clock.drift
        return self.logits[batch[:, 0].astype(int)]


def _select(monkeypatch: pytest.MonkeyPatch, outputs: dict[str, tuple[np.ndarray, float]], *, drift: float = 0.0,
            jitter: float = 0.01, timed: bool = True) -> selection.Selection:
    clock = _Clock(drift)
    for timed_here in (selection, benchmark):  # scoring seconds; the candidates' timing (CANDIDATE_TIMING)
        monkeypatch.setattr(timed_here, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    score_set = ScoreSet(np.arange(N, dtype=np.float32)[:, None], REFERENCE, "synthetic", {"images": N})
    return select("fake", list(outputs), lambda name: name,
                  lambda name: _Runner(outputs[name][0], outputs[name][1], clock, jitter), score_set,
                  timed=timed, log=lambda line: None)


def test_a_tied_candidate_replaces_the_baseline_only_if_faster_beyond_the_margin(monkeypatch) -> None:
    base, tied = _tied_outputs()
    same = {"base": (base, 1.0)}
    worse = _noisy(1.5, 8)

    five = _select(monkeypatch, {**same, "tie-5%": (tied, 0.95)})
    row = five.record["scoreboard"][1]
    assert row["verdict"] == "tie" and row["speed_vs_baseline"][0] == pytest.approx(0.95, abs=0.01)
    assert row["speed_vs_baseline"][2] >= SPEED_MARGIN and five.chosen == "base"  # 5 % faster: inside the margin

    thirty = _select(monkeypatch, {**same, "tie-5%": (tied, 0.95), "tie-30%": (tied, 0.70), "worse-50%": (worse, 0.5)})
    board = {row["candidate"]: row for row in thirty.record["scoreboard"]}
    assert board["worse-50%"]["verdict"] == "worse"  # the fastest, but speed never buys fidelity
    assert board["tie-30%"]["verdict"] == "tie" and board["tie-30%"]["speed_vs_baseline"][2] < SPEED_MARGIN
    assert thirty.chosen == "tie-30%" and board["tie-30%"]["chosen"] and thirty.built == "tie-30%"
    assert thirty.record["reason"].startswith("tied with the baseline base on fidelity and faster: p50 ratio 0.70")
    assert all(row["p50_ms_batch1"] > 0 for row in board.values())

    better = _select(monkeypatch, {**same, "tie-30%": (tied, 0.70), "closest": (_noisy(0.1, 6), 1.2)})
    assert better.chosen == "closest"  # a more faithful candidate wins over a faster tie, even if slower


def test_one_timing_method_for_every_choice_by_speed(monkeypatch) -> None:
    """Candidates and float-layer costs are timed by one definition, whose text is what the records say: each runner
    warmed up, then rounds in which every runner in turn runs ``runs`` times; one p50 per runner per round."""
    clock, calls = _Clock(), []
    monkeypatch.setattr(benchmark, "time", SimpleNamespace(perf_counter=clock.perf_counter))

    class Logged(_Runner):
        def __init__(self, name: str, ms: float) -> None:
            super().__init__(REFERENCE, ms, clock)
            self.name = name

        def run(self, batch: np.ndarray) -> np.ndarray:
            calls.append(self.name)
            return super().run(batch)

    seen: list[tuple[int, int]] = []
    rounds = CANDIDATE_TIMING.p50_rounds([Logged("a", 1.0), Logged("b", 3.0)], np.zeros((1, 1)),
                                         lambda r, i: seen.append((r, i)))
    warmup, turn = CANDIDATE_TIMING.warmup, CANDIDATE_TIMING.runs
    assert calls == ["a"] * warmup + ["b"] * warmup + (["a"] * turn + ["b"] * turn) * CANDIDATE_TIMING.rounds
    assert [len(r) for r in rounds] == [CANDIDATE_TIMING.rounds] * 2
    np.testing.assert_allclose(rounds[0], 1.0)  # p50 in ms
    np.testing.assert_allclose(rounds[1], 3.0)
    assert seen == [(r, i) for r in range(CANDIDATE_TIMING.rounds) for i in (0, 1)]
    text = CANDIDATE_TIMING.describe()
    assert f"{CANDIDATE_TIMING.rounds} interleaved rounds of {CANDIDATE_TIMING.runs} runs" in text
    assert text in selection.rule_text() and text in layer_cost.METHOD


def test_a_faster_tie_whose_rounds_spread_past_the_margin_stays_unchosen() -> None:
    base, tie = _tied_pair()
    base.p50_rounds = np.ones(7)
    tie.p50_rounds = np.array([0.35, 1.2, 0.4, 1.1, 0.5, 1.0, 0.6])  # 34 % faster on the geometric mean
    decision = decide([base, tie])
    value, _, high = decision.rows[1]["speed_vs_baseline"]
    assert value < 0.7 and high >= SPEED_MARGIN and decision.chosen == "base"


def test_interleaved_rounds_cancel_a_drifting_clock(monkeypatch) -> None:
    """The CPU slows 0.3 % per run (over 50 % across the timing): two equally fast candidates still time as equal,
    because every round runs each in turn. Timed one after the other, the second would look ~25 % slower."""
    base, tied = _tied_outputs()
    chosen = _select(monkeypatch, {"base": (base, 1.0), "same": (tied, 1.0)}, drift=0.003,
                     jitter=0.0)
    value, low, high = chosen.record["scoreboard"][1]["speed_vs_baseline"]
    assert 0.98 <= low <= value <= high <= 1.05 and chosen.chosen == "base"


def test_the_same_inputs_give_the_same_rows() -> None:
    base, tie = _tied_pair()
    rounds = np.random.default_rng(9)
    items = [base, tie, _scored("closer", _noisy(0.45, 10))]
    for item in items:
        item.p50_rounds = np.exp(rounds.normal(0.0, 0.1, 7))
    first, second = decide(items), decide(items)
    assert first.rows == second.rows and first.chosen == second.chosen and first.reason == second.reason
    assert first.rows[1]["kl_vs_baseline"][1] != first.rows[1]["kl_vs_baseline"][2]  # real intervals, not empty


def test_timing_noise_around_equal_speed_never_moves_the_choice() -> None:
    """200 draws of per-round p50s with 8 % noise around the same speed: the point estimate of a tied candidate's
    speed ratio falls below the margin in some draws, the interval never does, and the baseline is always kept."""
    few = REFERENCE[:120]  # fewer images: a faster bootstrap, and the fidelity still ties
    base, tie, other = (_scored(name, _noisy(0.5, seed, few), reference=few)
                        for name, seed in (("base", 3), ("tie", 4), ("other", 11)))
    rng = np.random.default_rng(12)
    kept, lowest_point = set(), 1.0
    for _ in range(200):
        for item in (base, tie, other):
            item.p50_rounds = np.exp(rng.normal(0.0, 0.08, 7))
        decision = decide([base, tie, other])
        assert _verdicts(decision.rows) == {"base": "baseline", "tie": "tie", "other": "tie"}
        kept.add(decision.chosen)
        lowest_point = min(lowest_point, *(row["speed_vs_baseline"][0] for row in decision.rows[1:]))
    assert kept == {"base"}
    assert lowest_point < SPEED_MARGIN  # a rule on the point estimate would have switched


def test_without_a_score_set_or_with_one_candidate_the_baseline_is_built_unscored() -> None:
    built: list[str] = []

    def build(name: str) -> str:
        built.append(name)
        return f"graph of {name}"

    def runner(model: str) -> None:
        raise AssertionError("nothing is run when nothing is scored")

    kept = select("fake", ["plain", "ours"], build, runner, None, log=lambda line: None)
    assert (kept.chosen, kept.built, built, kept.scored) == ("plain", "graph of plain", ["plain"], None)
    assert kept.record == {"engine": "fake", "baseline": "plain", "chosen": "plain", "scoreboard": [],
                           "reason": f"not measured: fewer than {MIN_SCORE_IMAGES} images to score on",
                           "method": f"not measured: fewer than {MIN_SCORE_IMAGES} images to score on"}
    score_set = ScoreSet(np.zeros((40, 1), np.float32), np.zeros((40, CLASSES)), "x")
    one = select("fake", ["plain"], build, runner, score_set, log=lambda line: None)
    assert one.chosen == "plain" and one.record["reason"] == "not measured: one candidate asked"


def test_the_record_says_what_was_scored_and_how(monkeypatch) -> None:
    chosen = _select(monkeypatch, {"base": (_noisy(0.5, 3), 1.0), "closest": (_noisy(0.1, 6), 1.0)}, timed=False)
    record = chosen.record
    assert set(record) == {"engine", "baseline", "measure", "chosen", "reason", "rule", "score_set", "method",
                           "scoreboard"}
    assert (record["engine"], record["baseline"], record["measure"], record["chosen"]) == ("fake", "base", "kl",
                                                                                           "closest")
    assert record["score_set"] == {"what": "synthetic", "images": N}
    assert f"on {N} images (synthetic)" in record["method"]
    assert record["rule"] in record["method"] and "paired-bootstrap 95 % interval" in record["rule"]
    assert all("p50_ms_batch1" not in row and "speed_vs_baseline" not in row for row in record["scoreboard"])
    closest = record["scoreboard"][1]
    expected = per_image_fidelity(REFERENCE, _noisy(0.1, 6))
    assert closest["kl"] == round(float(expected.kl.mean()), 6)
    assert closest["top1_agreement"] == round(float(expected.agree.mean()), 4)
    low, high = closest["agreement_ci"]
    assert low < closest["top1_agreement"] <= high  # Wilson bounds of a proportion below 1


# --- the split the score set comes from ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x 20 images, every fifth file unreadable: some of them fall inside the calibration sample."""
    root = tmp_path_factory.mktemp("split")
    rng = np.random.default_rng(0)
    for c in range(3):
        (root / f"c{c}").mkdir()
        for i in range(20):
            path = root / f"c{c}" / f"{i:02d}.png"
            if i % 5 == 4:
                path.write_bytes(b"not a png")
            else:
                Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(path)
    return root


PRE = PreprocessConfig(image_size=32)


def test_split_calibration_folder_is_the_calibration_set_and_a_disjoint_rest_from_one_scan(folder: Path,
                                                                                             monkeypatch) -> None:
    scans = []
    real_scan = sampling.scan_folder
    monkeypatch.setattr(sampling, "scan_folder", lambda *a, **k: scans.append(a) or real_scan(*a, **k))
    calib, held_out = split_calibration_folder(folder, PRE, calib_size=20, score_size=100, seed=3,
                                               min_score_images=10)
    assert len(scans) == 1  # one scan of the folder for both parts
    alone = build_calibration_set(folder, PRE, size=20, seed=3)
    assert calib.paths == alone.paths and np.array_equal(calib.images, alone.images) and calib.sha256 == alone.sha256
    broken = {p for p in folder.rglob("*.png") if p.read_bytes() == b"not a png"}
    assert {s.path for s in calib.skipped} & broken  # the calibration part read past unreadable files
    assert held_out is not None and len(held_out) == 48 - 20  # every other usable image, capped by none
    assert not set(held_out.paths) & set(calib.paths) and not set(held_out.paths) & broken
    rest = build_calibration_set(folder, PRE, size=100, seed=3, min_images=10, warn_short=False,
                                 exclude=frozenset(calib.paths))
    assert held_out.paths == rest.paths and np.array_equal(held_out.images, rest.images)  # same order, same pixels
    assert np.array_equal(held_out.labels, rest.labels)
    head = held_out.head(5)
    assert head.paths == held_out.paths[:5] and np.array_equal(head.images, held_out.images[:5])
    assert np.array_equal(head.labels, held_out.labels[:5])

    again = split_calibration_folder(folder, PRE, calib_size=20, score_size=100, seed=3, min_score_images=10)
    assert again[0].paths == calib.paths and again[1].paths == held_out.paths  # the same images every time


def test_split_calibration_folder_caps_the_rest_and_says_none_when_too_few(folder: Path) -> None:
    calib, held_out = split_calibration_folder(folder, PRE, calib_size=20, score_size=12, seed=3, min_score_images=10)
    assert held_out is not None and len(held_out) == 12 and not set(held_out.paths) & set(calib.paths)
    _, none = split_calibration_folder(folder, PRE, calib_size=40, score_size=100, seed=3, min_score_images=10)
    assert none is None  # 48 usable - 40 = 8 left, fewer than 10
    _, enough = split_calibration_folder(folder, PRE, calib_size=38, score_size=100, seed=3, min_score_images=10)
    assert enough is not None and len(enough) == 10
    _, unasked = split_calibration_folder(folder, PRE, calib_size=20, score_size=0, seed=3, min_score_images=10)
    assert unasked is None


def test_score_images_are_the_held_out_images_and_a_copy_corrupted_at_cycled_severities(folder: Path) -> None:
    _, held_out = split_calibration_folder(folder, PRE, calib_size=20, score_size=13, seed=3, min_score_images=10)
    images, what, record = score_images(held_out)
    n = len(held_out)
    assert images.shape == (2 * n, *held_out.images.shape[1:])
    assert np.array_equal(images[:n], held_out.images)
    per_level = {s: corrupted_batch(held_out.paths, PRE, CorruptConfig(severity=s)) for s in (2, 3, 4)}
    for i in range(n):  # the kind changes every image, the severity every four: 2, 3, 4, 2 ...
        assert np.array_equal(images[n + i], per_level[(2, 3, 4)[(i // 4) % 3]][i]), i
    assert record["images"] == n and record["sha256"] == held_out.sha256
    assert record["corrupted_copy"]["severities"] == [2, 3, 4] and f"{n} images of {folder}" in what


def test_score_batches_shrink_with_the_image_area() -> None:
    """64 images per batch at 64 px, 5 at 224 px: each candidate's runtime memory stays bounded at any size."""
    from coatnet_edge.calibration.selection import score_batch

    assert score_batch(np.zeros((2, 3, 64, 64), np.float32)) == 64
    assert score_batch(np.zeros((2, 3, 224, 224), np.float32)) == 5
    assert score_batch(np.zeros((2, 3, 1024, 1024), np.float32)) == 1
