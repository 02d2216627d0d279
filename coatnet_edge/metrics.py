"""Agreement between a backend's logits and the FP32 reference on the same images (NumPy only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from coatnet_edge.stats import bootstrap_mean, bootstrap_sqnr_db, wilson


@dataclass(frozen=True)
class Agreement:
    top1_agreement: float  # fraction of images whose argmax matches the reference
    cosine: float  # mean per-image cosine similarity of logit vectors
    sqnr_db: float  # 10 log10(|ref|^2 / |ref - out|^2) over all logits; inf when identical
    max_abs: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def compare_logits(reference: np.ndarray, output: np.ndarray) -> Agreement:
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"logit shapes differ: {ref.shape} vs {out.shape}")
    err = ref - out
    noise = float(np.sum(err**2))
    signal = float(np.sum(ref**2))
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cos = np.sum(ref * out, axis=1) / np.maximum(norms, 1e-30)
    return Agreement(
        top1_agreement=float(np.mean(ref.argmax(1) == out.argmax(1))),
        cosine=float(np.mean(cos)),
        sqnr_db=float("inf") if noise == 0 else float(10 * np.log10(max(signal, 1e-300) / noise)),
        max_abs=float(np.max(np.abs(err))) if err.size else 0.0,
    )


@dataclass(frozen=True)
class PerImage:
    """Per-image fidelity of logits against the reference: what paired comparisons resample."""

    kl: np.ndarray  # KL(softmax(ref) || softmax(out)), nats: lower is more faithful
    cosine: np.ndarray  # cosine of the logit vectors
    sqnr_db: np.ndarray  # per-image 10 log10(|ref|^2 / |ref - out|^2), capped at 100 dB
    agree: np.ndarray  # bool: top-1 equal to the reference's


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def per_image_fidelity(reference: np.ndarray, output: np.ndarray) -> PerImage:
    """Continuous per-image fidelity: a ranking by these moves with every image, where top-1 agreement moves
    only with the few images near a decision boundary."""
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"logit shapes differ: {ref.shape} vs {out.shape}")
    log_p, log_q = _log_softmax(ref), _log_softmax(out)
    kl = np.sum(np.exp(log_p) * (log_p - log_q), axis=1)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cos = np.sum(ref * out, axis=1) / np.maximum(norms, 1e-30)
    noise = np.sum((ref - out) ** 2, axis=1)
    with np.errstate(divide="ignore"):
        sqnr = np.minimum(10 * np.log10(np.maximum(np.sum(ref**2, axis=1), 1e-300) / noise), 100.0)
    return PerImage(kl=np.maximum(kl, 0.0), cosine=cos, sqnr_db=sqnr, agree=ref.argmax(1) == out.argmax(1))


def fidelity_intervals(reference: np.ndarray, output: np.ndarray) -> dict[str, list[float]]:
    """95 % intervals of agreement (Wilson), mean cosine and SQNR (image bootstrap) of ``output`` vs ``reference``,
    as ``[low, high]`` (unrounded: a cosine near 1 keeps its digits), beside ``compare_logits``' point values."""
    per_image = per_image_fidelity(reference, output)
    intervals = {"agreement_ci": wilson(int(per_image.agree.sum()), len(per_image.agree)),
                 "cosine_ci": bootstrap_mean(per_image.cosine), "sqnr_db_ci": bootstrap_sqnr_db(reference, output)}
    return {key: sorted([interval.low, interval.high]) for key, interval in intervals.items()}
