"""Label-based calibration signals on joined feedback.

Two views of the same rows:

* :func:`observed_report`: the signals of a set of rows (the newest of the fleet's feedback,
  read from the store for GetCalibration): observed accuracy, top-label ECE (the convention
  of candor.calibration), NLL, Brier, the reliability diagram, and the gap between the
  accuracy the confidences promised and the one observed;
* :class:`FeedbackTotals`: running sums per confidence bin of the rows this replica joined
  (rows, confidence, correct) plus NLL and Brier sums. Sums add up across replicas, so
  Prometheus recording rules recover the fleet's ECE, accuracy and gap over any window
  exactly, which per-replica ECE gauges cannot (ECE of a union is not a mean of ECEs).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from candor.calibration import brier, nll, reliability_bins
from candor.calibration.binning import ReliabilityBins, bin_edges, bin_index
from candor.calibration.ece import debiased_rms_ece
from candor.calibration.intervals import Interval, accuracy_gap_interval, ece_interval
from candor.calibration.metrics import EPS
from candor.server.core.sets import CoverageTotals, SetCoverage

ECE_BINS = 15  # candor.calibration's default: the live counters use the same bins


@dataclass(frozen=True)
class ObservedReport:
    rows: int
    accuracy: float
    ece: float
    nll: float
    brier: float
    expected_accuracy: float  # mean top-label confidence of the same rows
    accuracy_gap: float  # expected minus observed: > 0 means overconfident
    reliability: ReliabilityBins
    ece_interval: Interval  # 90% bootstrap (candor.calibration.intervals)
    accuracy_gap_interval: Interval
    debiased_rms_ece: float
    set_coverage: tuple[SetCoverage, ...] = ()  # where the version has prediction sets and is served here


def observed_report(probabilities: np.ndarray, labels: np.ndarray) -> ObservedReport:
    """The signals of joined rows ``probabilities`` [N, K] (as served) and ``labels`` [N]."""
    probs = np.asarray(probabilities, dtype=np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)  # float32 round-off in served rows
    labels = np.asarray(labels)
    confidence, hit = probs.max(axis=1), probs.argmax(axis=1) == labels
    accuracy, expected = float(np.mean(hit)), float(confidence.mean())
    interval = ece_interval(probs, labels, ECE_BINS)
    return ObservedReport(len(labels), accuracy, interval.value, nll(probs, labels), brier(probs, labels), expected,
                          expected - accuracy, reliability_bins(probs, labels, ECE_BINS), interval,
                          accuracy_gap_interval(confidence, hit), debiased_rms_ece(probs, labels, ECE_BINS))  # fmt: skip


@dataclass(frozen=True)
class TotalsSnapshot:
    rows: np.ndarray  # [ECE_BINS] rows per top-label confidence bin
    confidence: np.ndarray  # [ECE_BINS] sum of top-label confidence
    correct: np.ndarray  # [ECE_BINS] rows whose top label was the true one
    nll: float  # sum of -log p(true label)
    brier: float  # sum over rows of the squared error summed over classes


class FeedbackTotals:
    """Running sums of the rows one replica joined for one version (since it started)."""

    upper_edges = bin_edges(ECE_BINS)[1:]

    def __init__(self) -> None:
        self._rows = np.zeros(ECE_BINS, np.int64)
        self._confidence = np.zeros(ECE_BINS)
        self._correct = np.zeros(ECE_BINS, np.int64)
        self._nll = 0.0
        self._brier = 0.0
        self._lock = threading.Lock()
        self.coverage = CoverageTotals()  # the prediction sets' coverage of the same rows, where the version has sets

    def add(self, probabilities: np.ndarray, labels: np.ndarray) -> None:
        """Rows as served: no renormalising, so that the sums match the stored rows bit for bit."""
        p = np.asarray(probabilities, dtype=np.float64)
        y = np.asarray(labels, dtype=np.int64)
        finite = np.isfinite(p).all(axis=1)  # a NaN would stay in the running sums for good
        p, y = p[finite], y[finite]
        conf = p.max(axis=1)
        hit = (p.argmax(axis=1) == y).astype(np.int64)
        b = bin_index(conf, ECE_BINS)
        truth = p[np.arange(len(y)), y]
        onehot = np.zeros_like(p)
        onehot[np.arange(len(y)), y] = 1.0
        with self._lock:
            self._rows += np.bincount(b, minlength=ECE_BINS)
            self._confidence += np.bincount(b, weights=conf, minlength=ECE_BINS)
            self._correct += np.bincount(b, weights=hit, minlength=ECE_BINS).astype(np.int64)
            self._nll += float(-np.log(np.clip(truth, EPS, 1.0)).sum())
            self._brier += float(((p - onehot) ** 2).sum())

    def snapshot(self) -> TotalsSnapshot:
        with self._lock:
            return TotalsSnapshot(self._rows.copy(), self._confidence.copy(), self._correct.copy(), self._nll, self._brier)
