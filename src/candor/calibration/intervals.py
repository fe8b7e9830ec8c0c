"""Bootstrap intervals for calibration numbers, and the paired test a refit must pass.

Conventions, used everywhere Candor shows an interval:

* percentile bootstrap over rows, :data:`RESAMPLES` resamples drawn with replacement from
  a generator seeded with :data:`SEED`, so the same rows always give the same interval;
* a two-sided :data:`LEVEL` interval. For means (an accuracy gap, an NLL decrease) it is
  the 5th to 95th percentile of the resampled means. A refit "improves significantly"
  when the lower end of the interval of its mean per-row NLL decrease is above 0 (a
  one-sided test at 5%).
* For ECE it is the *basic* (reverse-percentile) interval ``[2v - q95, 2v - q5]``, clipped
  at 0. Binned ECE is biased upward (noise in each bin's accuracy always adds to the
  gap) and a resample adds the same noise again, so the plain percentile interval sits
  above the estimate and would call a perfectly calibrated model miscalibrated; the basic
  interval cancels that bias to first order. On 360 rows of a calibrated model the
  percentile interval excludes 0 and the basic one does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from candor.calibration._inputs import as_probs_and_labels
from candor.calibration.binning import DEFAULT_BINS, bin_index

RESAMPLES = 1000
LEVEL = 0.90
SEED = 0


def coverage_interval(hits: int, rows: int, level: float = LEVEL) -> tuple[float, float]:
    """The exact (Clopper-Pearson) binomial interval of a coverage ``hits / rows``: prediction sets' coverage
    in reports, in GetCalibration and in a re-conformalisation's holdout all use it."""
    from scipy.stats import (
        binomtest,  # imported on first use: scipy.stats adds about 0.5 s to every `candor` command and server start
    )

    ci = binomtest(int(hits), int(rows)).proportion_ci(level, method="exact")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval ``[low, high]``."""

    value: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_list(self) -> list[float]:
        return [self.value, self.low, self.high]

    def __str__(self) -> str:
        return f"{self.value:.4f} [{self.low:.4f}, {self.high:.4f}]"


def resample_indices(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """``[resamples, n]`` row indices drawn with replacement."""
    if n < 1:
        raise ValueError("a bootstrap needs at least one row")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def percentile_interval(value: float, samples: np.ndarray, level: float = LEVEL) -> Interval:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(float(value), float(low), float(high))


def basic_interval(value: float, samples: np.ndarray, level: float = LEVEL) -> Interval:
    """Reverse-percentile interval, clipped at 0 (for non-negative, upward-biased statistics)."""
    p = percentile_interval(value, samples, level)
    return Interval(float(value), float(max(0.0, 2 * value - p.high)), float(max(0.0, 2 * value - p.low)))


def binned_gap_samples(confidence: np.ndarray, hit: np.ndarray, n_bins: int = DEFAULT_BINS, *,
                       resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:  # fmt: skip
    """ECE of (``confidence``, 0/1 ``hit``) in equal-width bins: ``[resamples + 1]``, the rows
    themselves first, then each resample (the same resamples for the same ``n`` and ``seed``).

    Vectorised: every resample's bins are counted in one ``bincount`` by giving resample r
    the bin numbers ``r * n_bins + b``.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(hit, dtype=np.float64)
    n = len(conf)
    b = bin_index(conf, n_bins)
    idx = np.vstack([np.arange(n), resample_indices(n, resamples, seed)])
    keys = (b[idx] + n_bins * np.arange(len(idx))[:, None]).ravel()
    size = len(idx) * n_bins
    gap = np.abs(np.bincount(keys, weights=conf[idx].ravel(), minlength=size)
                 - np.bincount(keys, weights=hit[idx].ravel(), minlength=size))  # fmt: skip
    return gap.reshape(len(idx), n_bins).sum(axis=1) / n


def binned_gap_interval(confidence: np.ndarray, hit: np.ndarray, n_bins: int = DEFAULT_BINS, **kw) -> Interval:
    """ECE of (``confidence``, 0/1 ``hit``) with its (basic) bootstrap interval."""
    samples = binned_gap_samples(confidence, hit, n_bins, **kw)
    return basic_interval(samples[0], samples[1:])


def multilabel_ece_interval(probs: np.ndarray, targets: np.ndarray, n_bins: int = DEFAULT_BINS, **kw) -> Interval:
    """Macro (per-class mean) ECE of P(present) with its interval; every class sees the same resampled rows."""
    p, y = np.asarray(probs, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    samples = np.mean([binned_gap_samples(p[:, k], y[:, k], n_bins, **kw) for k in range(p.shape[1])], axis=0)
    return basic_interval(samples[0], samples[1:])


def ece_interval(probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS, **kw) -> Interval:
    """Top-label ECE (as :func:`candor.calibration.ece.ece`) with its bootstrap interval."""
    p, y = as_probs_and_labels(probs, labels)
    return binned_gap_interval(p.max(axis=1), p.argmax(axis=1) == y, n_bins, **kw)


def mean_interval(values: np.ndarray, *, resamples: int = RESAMPLES, seed: int = SEED) -> Interval:
    """Mean of per-row ``values`` with its bootstrap interval."""
    v = np.asarray(values, dtype=np.float64)
    return percentile_interval(v.mean(), v[resample_indices(len(v), resamples, seed)].mean(axis=1))


def accuracy_gap_interval(confidence: np.ndarray, hit: np.ndarray, **kw) -> Interval:
    """Mean confidence minus accuracy (positive: over-confident), with its interval."""
    return mean_interval(np.asarray(confidence, dtype=np.float64) - np.asarray(hit, dtype=np.float64), **kw)


def paired_improvement(loss_before: np.ndarray, loss_after: np.ndarray, **kw) -> Interval:
    """Mean per-row decrease ``before - after`` on the same rows, with its paired interval.

    Resampling the differences (not the two losses apart) keeps each row's pairing, so
    the interval reflects the change alone and not how hard the rows happened to be.
    """
    return mean_interval(np.asarray(loss_before, dtype=np.float64) - np.asarray(loss_after, dtype=np.float64), **kw)
