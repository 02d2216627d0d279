"""The intervals every accuracy claim carries: known values, coverage, shrinking with N, paired ties, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from coatnet_edge.metrics import compare_logits
from coatnet_edge.stats import Interval, bootstrap_mean, bootstrap_sqnr_db, paired_difference, verdict, wilson


def test_wilson_matches_known_values() -> None:
    ci = wilson(95, 100)
    assert ci.value == 0.95 and ci.low == pytest.approx(0.8882, abs=1e-4) and ci.high == pytest.approx(0.9785, abs=1e-4)
    z2 = 1.959963984540054**2
    none = wilson(0, 10)  # closed form at p = 0: [0, z^2 / (n + z^2)]
    assert none.low == 0.0 and none.high == pytest.approx(z2 / (10 + z2), rel=1e-12)
    full = wilson(10, 10)
    assert full.low == pytest.approx(10 / (10 + z2), rel=1e-12) and full.high == pytest.approx(1.0)
    assert np.isnan(wilson(0, 0).value)


def test_wilson_narrows_with_n_and_is_not_the_normal_interval() -> None:
    small, large = wilson(49, 50), wilson(980, 1000)
    assert small.high - small.low > 2 * (large.high - large.low)
    normal_high = 0.98 + 1.959963984540054 * np.sqrt(0.98 * 0.02 / 50)
    assert small.high < 1.0 and small.high != pytest.approx(normal_high, abs=1e-3)  # Wilson is asymmetric near 1
    assert small.value - small.low > small.high - small.value


def test_bootstrap_mean_covers_the_mean_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for n in (50, 500, 5000):
        values = rng.normal(1.0, 1.0, n)
        ci = bootstrap_mean(values)
        assert ci.value == pytest.approx(values.mean()) and ci.low < ci.value < ci.high
        expected = 2 * 1.96 * values.std() / np.sqrt(n)  # the normal-theory width the bootstrap should approach
        assert ci.high - ci.low == pytest.approx(expected, rel=0.2), n
        widths.append(ci.high - ci.low)
    assert widths[0] > 2.5 * widths[1] > 2.5 * 2.5 * widths[2]  # ~ 1 / sqrt(n): sqrt(10) per step
    assert bootstrap_mean(np.full(7, 0.25)) == Interval(0.25, 0.25, 0.25)


def test_paired_difference_of_identical_scores_is_an_exact_tie() -> None:
    hits = (np.random.default_rng(2).random(300) < 0.9).astype(float)
    same = paired_difference(hits, hits.copy())
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0) and verdict(same) == "tie"


def test_paired_difference_says_better_and_worse_in_the_right_direction() -> None:
    rng = np.random.default_rng(3)
    base = (rng.random(400) < 0.8).astype(float)
    improved = base.copy()
    improved[np.flatnonzero(base == 0)[:40]] = 1.0  # 40 more hits of 400: +10 points
    gain = paired_difference(improved, base)
    assert gain.value == pytest.approx(0.1) and gain.low > 0 and verdict(gain) == "better"
    assert verdict(paired_difference(base, improved)) == "worse"
    assert verdict(gain, higher_is_better=False) == "worse"  # e.g. a KL or a drop: higher is worse
    noisy = base.copy()
    noisy[np.flatnonzero(base == 0)[:2]] = 1.0
    noisy[np.flatnonzero(base == 1)[:1]] = 0.0  # +2 -1 of 400: too little to tell
    assert verdict(paired_difference(noisy, base)) == "tie"
    with pytest.raises(ValueError, match="shape"):
        paired_difference(base, base[:-1])


def test_bootstrap_sqnr_matches_the_point_sqnr_and_covers_it() -> None:
    rng = np.random.default_rng(4)
    ref = rng.standard_normal((200, 10))
    noise = rng.standard_normal(ref.shape) * 0.1
    ci = bootstrap_sqnr_db(ref, ref + noise)
    assert ci.value == pytest.approx(compare_logits(ref, ref + noise).sqnr_db) and ci.low < ci.value < ci.high
    assert bootstrap_sqnr_db(ref, ref.copy()).low == float("inf")


def test_intervals_are_deterministic() -> None:
    rng = np.random.default_rng(5)
    values, other = rng.random(333), rng.random(333)
    assert bootstrap_mean(values) == bootstrap_mean(values.copy())
    assert paired_difference(values, other) == paired_difference(values.copy(), other.copy())
    ref = rng.standard_normal((50, 8))
    out = ref + rng.standard_normal(ref.shape) * 0.3
    assert bootstrap_sqnr_db(ref, out) == bootstrap_sqnr_db(ref.copy(), out.copy())
    assert wilson(37, 41) == wilson(37, 41)


def test_interval_text_and_list() -> None:
    ci = Interval(0.98583, 0.97812, 0.99234)
    assert ci.to_list(3) == [0.986, 0.978, 0.992] and ci.text(100, 1) == "98.6 [97.8, 99.2]"
    assert ci.excludes(0.5) and not ci.excludes(0.98)
