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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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


class ObservedCollector(Collector):
    """Prometheus view of the feedback windows, computed at scrape time."""

    SIGNALS = (
        ("candor_feedback_window_rows", "Joined feedback rows in the window", "rows"),
        ("candor_observed_accuracy", "Accuracy on joined feedback in the window", "accuracy"),
        ("candor_observed_ece", "Top-label ECE (15 equal-width bins) on joined feedback in the window", "ece"),
        ("candor_observed_nll", "NLL on joined feedback in the window", "nll"),
        ("candor_observed_brier", "Brier score (sum over classes) on joined feedback in the window", "brier"),
        ("candor_observed_accuracy_gap", "Mean confidence minus observed accuracy on the same rows", "accuracy_gap"),
    )

    def __init__(self, windows: Callable[[], dict[tuple[str, str], FeedbackWindow]]):
        self.windows = windows

    def collect(self):
        labels = ["model", "version"]
        families = {attr: GaugeMetricFamily(name, doc, labels=labels) for name, doc, attr in self.SIGNALS}
        bin_labels = [*labels, "le"]
        count = GaugeMetricFamily("candor_live_reliability_count", "Feedback rows per confidence bin (upper edge le)",
                                  labels=bin_labels)  # fmt: skip
        conf = GaugeMetricFamily("candor_live_reliability_confidence", "Mean confidence per bin", labels=bin_labels)
        acc = GaugeMetricFamily("candor_live_reliability_accuracy", "Observed accuracy per bin", labels=bin_labels)
        for (model, version), window in sorted(self.windows().items()):
            report = window.report()
            if report is None:
                continue
            for attr, family in families.items():
                family.add_metric([model, version], float(getattr(report, attr)))
            bins = report.reliability
            for hi, n, c, a in zip(bins.edges[1:], bins.count, bins.confidence, bins.accuracy, strict=True):
                if n:
                    edge = f"{hi:.4g}"
                    count.add_metric([model, version, edge], float(n))
                    conf.add_metric([model, version, edge], float(c))
                    acc.add_metric([model, version, edge], float(a))
        yield from (*families.values(), count, conf, acc)
