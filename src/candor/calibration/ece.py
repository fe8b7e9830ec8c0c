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
    """Equal-mass ECE: rows sorted by top-label confidence and cut into
    ``n_bins`` groups of (nearly) equal size; same weighting as :func:`ece`.
    With fewer rows than bins, each row is its own bin.
    """
    p, y = as_probs_and_labels(probs, labels)
    conf = p.max(axis=1)
    hit = (p.argmax(axis=1) == y).astype(np.float64)
    order = np.argsort(conf, kind="stable")
    groups = [g for g in np.array_split(order, min(n_bins, len(order))) if len(g)]
    n = len(conf)
    return float(sum(len(g) / n * abs(hit[g].mean() - conf[g].mean()) for g in groups))


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
