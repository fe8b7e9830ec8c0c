"""Equal-width confidence binning and the reliability-diagram statistics built on it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from candor.calibration._inputs import as_probs_and_labels

DEFAULT_BINS = 15


def bin_edges(n_bins: int) -> np.ndarray:
    """``n_bins + 1`` edges from 0 to 1.

    Computed as ``i / n_bins`` rather than by ``linspace`` so that an edge such
    as 0.2 is the same double as the literal 0.2 and hand-made test cases land
    where a person expects.
    """
    if not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    return np.arange(n_bins + 1, dtype=np.float64) / n_bins


def bin_index(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Index of the bin ``(lo, hi]`` holding each value; 0 goes to the first bin.

    >>> bin_index(np.array([0.0, 0.2, 0.2000001, 1.0]), 5).tolist()
    [0, 0, 1, 4]
    """
    inner = bin_edges(n_bins)[1:-1]
    # side="left" counts the inner edges strictly below the value, which is
    # exactly the bin whose upper edge is the first edge >= value.
    return np.searchsorted(inner, values, side="left")


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics of a reliability diagram; empty bins have count 0 and NaN means."""

    edges: np.ndarray  # [B + 1]
    count: np.ndarray  # [B] samples per bin
    confidence: np.ndarray  # [B] mean predicted confidence
    accuracy: np.ndarray  # [B] observed frequency of the event

    @property
    def weight(self) -> np.ndarray:
        return self.count / self.count.sum()

    @property
    def gap(self) -> np.ndarray:
        """|accuracy - confidence| per bin, 0 where the bin is empty."""
        return np.where(self.count > 0, np.abs(self.accuracy - self.confidence), 0.0)

    def to_dict(self) -> dict[str, list[float]]:
        def clean(a: np.ndarray) -> list[float | None]:
            return [None if np.isnan(v) else float(v) for v in a]

        return {
            "edges": self.edges.tolist(),
            "count": self.count.astype(int).tolist(),
            "confidence": clean(self.confidence),
            "accuracy": clean(self.accuracy),
        }


def bin_statistics(confidence: np.ndarray, hit: np.ndarray, n_bins: int = DEFAULT_BINS) -> ReliabilityBins:
    """Bin ``confidence`` in equal-width ``(lo, hi]`` bins and average ``hit`` (0/1) in each."""
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(hit, dtype=np.float64)
    idx = bin_index(conf, n_bins)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
        mean_hit = np.bincount(idx, weights=hit, minlength=n_bins) / count
    return ReliabilityBins(bin_edges(n_bins), count, mean_conf, mean_hit)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS) -> ReliabilityBins:
    """Reliability-diagram data for top-label confidence.

    ``probs`` is ``[N, K]`` (or 1-D binary P(class 1)); ``labels`` are ints.
    Each bin ``(lo, hi]`` reports its sample count, mean top-label confidence
    and accuracy (share of rows whose argmax equals the label).
    """
    p, y = as_probs_and_labels(probs, labels)
    return bin_statistics(p.max(axis=1), p.argmax(axis=1) == y, n_bins)
