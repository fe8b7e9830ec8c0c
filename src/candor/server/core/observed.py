"""Label-based calibration signals over a sliding window of joined feedback.

Per model version: observed accuracy, top-label ECE (the convention of
candor.calibration), NLL, Brier, the live reliability diagram (count, mean
confidence and accuracy per bin), and the gap between the accuracy the
confidences promised and the one observed.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from candor.calibration import brier, ece, nll, reliability_bins
from candor.calibration.binning import ReliabilityBins


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


class FeedbackWindow:
    """The newest joined rows of one model version, at most ``max_rows`` and ``max_age_s`` old."""

    def __init__(self, max_rows: int, max_age_s: float):
        self.max_age_s = max_age_s
        self._rows: deque[tuple[float, np.ndarray, int]] = deque(maxlen=max_rows)
        self._lock = threading.Lock()

    def add(self, probabilities: np.ndarray, label: int, at: float) -> None:
        with self._lock:
            self._rows.append((at, np.asarray(probabilities, dtype=np.float64), int(label)))

    def report(self, now: float | None = None) -> ObservedReport | None:
        now = time.time() if now is None else now
        with self._lock:
            while self._rows and now - self._rows[0][0] > self.max_age_s:
                self._rows.popleft()
            if not self._rows:
                return None
            probs = np.stack([r[1] for r in self._rows])
            labels = np.array([r[2] for r in self._rows])
        probs = probs / probs.sum(axis=1, keepdims=True)  # float32 round-off in served rows
        accuracy = float(np.mean(probs.argmax(axis=1) == labels))
        expected = float(probs.max(axis=1).mean())
        return ObservedReport(len(labels), accuracy, ece(probs, labels), nll(probs, labels), brier(probs, labels), expected,
                              expected - accuracy, reliability_bins(probs, labels))  # fmt: skip
