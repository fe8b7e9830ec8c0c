"""Expected calibration error and its relatives.

All take ``probs`` ``[N, K]`` (or 1-D binary P(class 1), expanded to
``[1 - p, p]``) and integer ``labels``. Binning is equal-width ``(lo, hi]``
with 0 in the first bin and 1.0 in the last, empty bins skipped and bins
weighted by sample share, unless a function says otherwise.
"""

from __future__ import annotations

import numpy as np

from candor.calibration._inputs import as_probs_and_labels
from candor.calibration.binning import DEFAULT_BINS, bin_statistics, reliability_bins


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS) -> float:
    """Top-label ECE: sum over bins of (bin share) * |accuracy - mean confidence|.

    >>> ece(np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([0, 1]))
    0.25
    """
    bins = reliability_bins(probs, labels, n_bins)
    return float(np.sum(bins.weight * bins.gap))


def rms_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS) -> float:
    """L2 (root-mean-square) ECE: sqrt of sum over bins of share * gap**2."""
    bins = reliability_bins(probs, labels, n_bins)
    return float(np.sqrt(np.sum(bins.weight * bins.gap**2)))


def mce(probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS) -> float:
    """Maximum calibration error: the largest gap over non-empty bins."""
    return float(np.max(reliability_bins(probs, labels, n_bins).gap))


def adaptive_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS) -> float:
    """Equal-mass ECE: rows sorted by top-label confidence and cut into ``n_bins`` groups
    of (nearly) equal size; same weighting as :func:`ece`. With fewer rows than bins,
    each distinct confidence is its own bin.

    Rows with the same confidence always share a group: a cut that would fall inside a
    run of tied confidences moves to the end of the run (so a group may be larger than
    N / n_bins, and there may be fewer groups). The result therefore depends only on
    the rows, never on their order.

    >>> adaptive_ece(np.array([[.6, .4]] * 4 + [[.9, .1]] * 2), np.array([0, 0, 1, 1, 0, 1]), 3)
    0.2
    """
    p, y = as_probs_and_labels(probs, labels)
    conf = p.max(axis=1)
    hit = (p.argmax(axis=1) == y).astype(np.float64)
    order = np.argsort(conf, kind="stable")
    conf, hit = conf[order], hit[order]
    n = len(conf)
    nominal = np.cumsum([len(g) for g in np.array_split(np.arange(n), min(n_bins, n))])[:-1]
    # The first index at or after each nominal cut where the confidence changes.
    change = np.flatnonzero(np.diff(conf) != 0) + 1
    moved = change[np.minimum(np.searchsorted(change, nominal), len(change) - 1)] if len(change) else np.array([], int)
    cuts = np.unique(moved[moved >= nominal]) if len(change) else moved
    total = 0.0
    for start, stop in zip(np.r_[0, cuts], np.r_[cuts, n], strict=True):
        total += (stop - start) / n * abs(hit[start:stop].mean() - conf[start:stop].mean())
    return round(float(total), 15)


def debiased_rms_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS) -> float:
    """Debiased L2 ECE (Kumar, Liang and Ma, 2019, "Verified uncertainty calibration").

    The plug-in squared L2 ECE, sum over bins of share * (accuracy - confidence)**2, is
    biased upward: even a perfectly calibrated model shows a positive value, because each
    bin's accuracy is a noisy mean. The debiased estimator subtracts each bin's variance
    estimate of that mean, accuracy * (1 - accuracy) / (count - 1); bins with one row are
    left out (no variance estimate). The squared estimate may fall below 0 when the
    calibration error is within noise; Candor reports ``sqrt(max(estimate, 0))`` so the
    number sits on the same scale as :func:`rms_ece` and reads 0 for "indistinguishable
    from calibrated". Same equal-width bins as :func:`ece`.
    """
    bins = reliability_bins(probs, labels, n_bins)
    used = bins.count > 1
    if not used.any():
        return 0.0
    n, acc, conf = bins.count[used], bins.accuracy[used], bins.confidence[used]
    squared = np.sum(n / bins.count.sum() * ((acc - conf) ** 2 - acc * (1 - acc) / (n - 1)))
    return float(np.sqrt(max(squared, 0.0)))


def classwise_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS) -> float:
    """Classwise ECE (Kull et al., 2019): for each class k, the ECE of
    P(class k) against the event "label is k", binned as :func:`ece`, then
    averaged over the K classes.
    """
    p, y = as_probs_and_labels(probs, labels)
    return float(np.mean(per_class_ece(p, np.eye(p.shape[1])[y], n_bins)))


def per_class_ece(probs: np.ndarray, targets: np.ndarray, n_bins: int = DEFAULT_BINS) -> np.ndarray:
    """ECE of each column of ``probs`` (P(event)) against 0/1 ``targets``, ``[K]``."""
    out = np.empty(probs.shape[1])
    for k in range(probs.shape[1]):
        bins = bin_statistics(probs[:, k], targets[:, k], n_bins)
        out[k] = np.sum(bins.weight * bins.gap)
    return out
