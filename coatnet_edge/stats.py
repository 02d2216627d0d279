"""Intervals for accuracy claims (NumPy only): a proportion's Wilson interval, a mean's bootstrap interval, and a
paired bootstrap of the difference between two artifacts scored on the same images.

Why: agreement on a few hundred images moves by one image = 0.2-0.3 points, and calibration sampling alone moves
an INT8 path by more; a difference is a claim only when its interval excludes zero. Bootstraps are seeded, so the
same numbers give the same interval (and the same decision) every time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # two-sided 95 %
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20261207


@dataclass(frozen=True)
class Interval:
    """A point estimate and its 95 % interval."""

    value: float
    low: float
    high: float

    def excludes(self, x: float = 0.0) -> bool:
        return not self.low <= x <= self.high

    def to_list(self, digits: int = 6) -> list[float]:
        return [round(self.value, digits), round(self.low, digits), round(self.high, digits)]

    def text(self, scale: float = 1.0, digits: int = 2) -> str:
        """'98.3 [97.4, 99.0]' style: value and interval, scaled (100 for percent points)."""
        return (f"{self.value * scale:.{digits}f} [{self.low * scale:.{digits}f}, "
                f"{self.high * scale:.{digits}f}]")


def wilson(successes: int, n: int) -> Interval:
    """The Wilson score interval of a proportion (good near 0 and 1, where agreement lives)."""
    if n <= 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    p = successes / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def _resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_mean(values: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
                   ) -> Interval:
    """The mean of per-image ``values`` and its percentile-bootstrap 95 % interval (seeded: reproducible)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    if values.size == 1 or np.all(values == values[0]):
        return Interval(float(values[0]), float(values[0]), float(values[0]))
    means = values[_resample_indices(values.size, resamples, seed)].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(float(values.mean()), float(low), float(high))


def paired_difference(a: np.ndarray, b: np.ndarray, **kwargs: int) -> Interval:
    """Mean of ``a - b`` over the same images, with its paired-bootstrap 95 % interval."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores differ in shape: {a.shape} vs {b.shape}")
    return bootstrap_mean(a - b, **kwargs)


def bootstrap_sqnr_db(reference: np.ndarray, output: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> Interval:
    """SQNR over all logits (signal and noise summed over the images) with an image-resampling bootstrap."""
    ref = np.asarray(reference, dtype=np.float64)
    err = ref - np.asarray(output, dtype=np.float64)
    signal, noise = np.sum(ref**2, axis=1), np.sum(err**2, axis=1)

    def db(s: np.ndarray, e: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return 10 * np.log10(np.maximum(s, 1e-300) / e)

    value = float(db(signal.sum(), noise.sum()))
    if noise.sum() == 0 or len(ref) < 2:
        return Interval(value, value, value)
    idx = _resample_indices(len(ref), resamples, seed)
    low, high = np.percentile(db(signal[idx].sum(axis=1), noise[idx].sum(axis=1)), [2.5, 97.5])
    return Interval(value, float(low), float(high))


def verdict(difference: Interval, *, higher_is_better: bool = True) -> str:
    """'better' / 'worse' only where the paired interval excludes zero; 'tie' otherwise."""
    if not difference.excludes(0.0):
        return "tie"
    return "better" if (difference.low > 0) == higher_is_better else "worse"
