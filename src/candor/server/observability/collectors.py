"""Prometheus collectors computed at scrape time from the core's thread-safe snapshots.

They run on the metrics HTTP server's thread while the event loop keeps serving, so they
only read what the core publishes for that: the repository's immutable entry list, the
feedback service's window map, and windows that take their own locks.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from candor.server.core.drift import DriftThresholds, DriftWindow
from candor.server.core.feedback import FeedbackService
from candor.server.core.observed import FeedbackWindow
from candor.server.core.repository import ModelRepository

CONFIDENCE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))


class ServingCollector(Collector):
    """Rows queued per version and recent predictions held for feedback, read when scraped (no pushing on the hot path)."""

    def __init__(self, queues: Callable[[], Iterable[tuple[str, str, int]]], prediction_store_rows: Callable[[], int]):
        self.queues = queues
        self.prediction_store_rows = prediction_store_rows

    def collect(self):
        queue = GaugeMetricFamily("candor_queue_rows", "Rows waiting for a batch", labels=["model", "version"])
        for model, version, rows in self.queues():
            queue.add_metric([model, version], rows)
        held = GaugeMetricFamily("candor_prediction_store_rows",
                                 "Recent predictions held for feedback to join (bounded by prediction_store_rows)",
                                 value=self.prediction_store_rows())  # fmt: skip
        yield from (queue, held)


class DriftCollector(Collector):
    """Prometheus view of every loaded version's drift window, computed at scrape time.

    ``sources`` returns (model, version, window) for the versions loaded now: a snapshot the
    core keeps safe to read from this (the HTTP server's) thread.
    """

    SIGNALS = (
        ("candor_drift_window_rows", "Rows in the label-free drift window", "rows"),
        ("candor_confidence_psi", "PSI of the live top-label confidence histogram vs the reference", "confidence_psi"),
        ("candor_confidence_js_distance", "Jensen-Shannon distance (base 2) of live vs reference confidence", "confidence_js"),
        ("candor_prediction_psi", "PSI of the live predicted-class mix vs the reference", "prediction_psi"),
        (
            "candor_expected_accuracy",
            "Mean top-label confidence in the window (accuracy estimate without labels)",
            "expected_accuracy",
        ),
        ("candor_expected_accuracy_gap", "Expected accuracy minus the reference accuracy", "accuracy_gap"),
        ("candor_mean_entropy", "Mean entropy of the predicted distributions in the window (nats)", "mean_entropy"),
    )

    def __init__(self, sources: Callable[[], list[tuple[str, str, DriftWindow]]], thresholds: DriftThresholds):
        self.sources = sources
        self.thresholds = thresholds

    def collect(self):
        labels = ["model", "version"]
        families = {attr: GaugeMetricFamily(name, doc, labels=labels) for name, doc, attr in self.SIGNALS}
        state = GaugeMetricFamily("candor_drift_state", "0 ok, 1 warn, 2 drift, by signal", labels=[*labels, "signal"])
        ref_acc = GaugeMetricFamily("candor_reference_accuracy", "Test accuracy recorded at training time", labels=labels)
        ref_conf = GaugeMetricFamily("candor_reference_mean_confidence", "Test mean confidence recorded at training time",
                                     labels=labels)  # fmt: skip
        for model, version, window in self.sources():
            ref_acc.add_metric([model, version], window.reference.accuracy)
            ref_conf.add_metric([model, version], window.reference.mean_confidence)
            report = window.report()
            if report is None:
                continue
            for attr, family in families.items():
                family.add_metric([model, version], float(getattr(report, attr)))
            state.add_metric([model, version, "confidence"], self.thresholds.state(report.confidence_psi))
            if not math.isnan(report.prediction_psi):
                state.add_metric([model, version, "prediction"], self.thresholds.state(report.prediction_psi))
        yield from (*families.values(), state, ref_acc, ref_conf)


class ObservedCollector(Collector):
    """Prometheus view of the feedback windows, computed at scrape time from the core's snapshot of them."""

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


class PredictionStats(Collector):
    """Rows, per-class predictions and the top-label confidence histogram per
    model version, kept as numpy counts so that a 256-row batch costs a few
    vector operations rather than 256 observe() calls.

    Exposed as ``candor_predicted_rows_total``, ``candor_predictions_total``
    (label ``class_name``) and the histogram ``candor_confidence``. For
    multi-label models a row's confidence is its mean max(p, 1 - p) and every
    class predicted present counts.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._edges = np.asarray(CONFIDENCE_BUCKETS)
        self._state: dict[tuple[str, str], dict] = {}

    def observe(self, model: str, version: str, probs: np.ndarray, class_names: list[str], multilabel: bool) -> None:
        if multilabel:
            present = (probs > 0.5).sum(axis=0)
            conf = np.maximum(probs, 1 - probs).mean(axis=1)
        else:
            present = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
            conf = probs.max(axis=1)
        # Prometheus buckets are cumulative "<= le": index of the first edge >= value.
        buckets = np.bincount(np.searchsorted(self._edges, conf, side="left"), minlength=len(self._edges) + 1)
        with self._lock:
            s = self._state.get((model, version))
            if s is None:
                s = self._state[(model, version)] = {
                    "names": list(class_names), "classes": np.zeros(len(class_names), np.int64),
                    "buckets": np.zeros(len(self._edges) + 1, np.int64), "sum": 0.0, "rows": 0,
                }  # fmt: skip
            s["classes"] += present
            s["buckets"] += buckets
            s["sum"] += float(conf.sum())
            s["rows"] += len(probs)

    def forget(self, model: str, version: str) -> None:
        with self._lock:
            self._state.pop((model, version), None)

    def collect(self):
        rows = CounterMetricFamily("candor_predicted_rows", "Rows predicted", labels=["model", "version"])
        classes = CounterMetricFamily(
            "candor_predictions", "Predicted top class per row", labels=["model", "version", "class_name"]
        )
        hist = HistogramMetricFamily(
            "candor_confidence", "Top-label confidence of each predicted row", labels=["model", "version"]
        )
        with self._lock:
            for (model, version), s in self._state.items():
                rows.add_metric([model, version], s["rows"])
                for name, count in zip(s["names"], s["classes"], strict=True):
                    if count:
                        classes.add_metric([model, version, name], int(count))
                cumulative = np.cumsum(s["buckets"])
                bounds = [(f"{e:g}", int(c)) for e, c in zip(self._edges, cumulative[:-1], strict=True)]
                hist.add_metric([model, version], bounds + [("+Inf", int(cumulative[-1]))], s["sum"])
        yield from (rows, classes, hist)


def register_core_views(registry: CollectorRegistry, repository: ModelRepository, feedback: FeedbackService,
                        thresholds: DriftThresholds) -> None:  # fmt: skip
    """The scrape-time views of a running core: drift, feedback windows, queues and the prediction store."""
    registry.register(DriftCollector(lambda: [(m.name, m.version, m.drift) for m in repository.loaded()], thresholds))
    registry.register(ObservedCollector(feedback.windows))
    registry.register(ServingCollector(lambda: [(m.name, m.version, m.batcher.queued_rows) for m in repository.loaded()],
                                       lambda: len(feedback.predictions)))  # fmt: skip
