"""Prometheus metrics of the server, on a registry of their own.

Names follow DESIGN.md: prefix ``candor_``, seconds, ``_total`` counters,
labels ``model`` and ``version`` and never a per-request label.
"""

from __future__ import annotations

import threading

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
CONFIDENCE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
FEEDBACK_OUTCOMES = ("ACCEPTED", "DUPLICATE", "EXPIRED", "UNKNOWN_ID")  # what Feedback answers per item


class ServerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.children: dict[str, object] = {}  # per-RPC labelled children, filled by candor.server.instrument
        r = self.registry
        mv = ("model", "version")
        self.requests = Counter("candor_requests", "RPCs answered, by method and status code", ("rpc", "code"), registry=r)
        self.request_duration = Histogram(
            "candor_request_duration_seconds",
            "Time from receiving an RPC to answering it",
            ("rpc",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("candor_inflight_requests", "RPCs being handled now", registry=r)
        self.queue_duration = Histogram(
            "candor_queue_duration_seconds", "Time rows waited for a batch", mv, buckets=LATENCY_BUCKETS, registry=r
        )
        self.inference_duration = Histogram(
            "candor_inference_duration_seconds", "onnxruntime run time per batch", mv, buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram("candor_batch_size_rows", "Rows per onnxruntime run", mv, buckets=BATCH_BUCKETS, registry=r)
        self.queue_rows = Gauge("candor_queue_rows", "Rows waiting for a batch", mv, registry=r)
        self.dropped = Counter(
            "candor_dropped_requests",
            "Requests dropped before running: reason=deadline (passed while queued) or cancelled (the caller left)",
            (*mv, "reason"),
            registry=r,
        )
        self.rejected = Counter("candor_rejected_requests", "Requests refused because the queue was full", mv, registry=r)
        self.auth_refusals = Counter(
            "candor_auth_refusals",
            "Calls refused before any handler ran: reason=unauthenticated (no or unknown token) or permission_denied",
            ("reason",),
            registry=r,
        )
        self.limit_refusals = Counter(
            "candor_limit_refusals",
            "Calls refused or cut by a server limit: limit=inflight (max_inflight_requests) or deadline (default/max deadline)",
            ("limit",),
            registry=r,
        )
        self.prediction_store_rows = Gauge("candor_prediction_store_rows",
                                           "Recent predictions held for feedback to join (bounded by prediction_store_rows)",
                                           registry=r)  # fmt: skip
        self.store_errors = Counter("candor_feedback_store_errors", "Feedback batches the store failed to write", registry=r)
        self.store_up = Gauge("candor_feedback_store_up", "1 while the last feedback write succeeded, 0 after a failure",
                              registry=r)  # fmt: skip
        self.feedback = Counter("candor_feedback", "Feedback items by outcome", ("model", "outcome"), registry=r)
        self.load_failures = Counter("candor_model_load_failures", "Model versions that failed to load", ("model",), registry=r)
        self.model_info = Gauge(
            "candor_model_info", "1 for each loaded model version", ("model", "version", "provider", "task"), registry=r
        )
        self.model_ready = Gauge("candor_model_ready", "1 when the model version serves, else 0", mv, registry=r)
        self.prediction_stats = PredictionStats()
        r.register(self.prediction_stats)

    def start_series(self, model: str, version: str) -> None:
        """Create a loaded version's counters at 0, so that rates and dashboards read 0 rather than no data."""
        self.rejected.labels(model, version)
        for reason in ("deadline", "cancelled"):
            self.dropped.labels(model, version, reason)
        for outcome in FEEDBACK_OUTCOMES:
            self.feedback.labels(model, outcome)
        self.load_failures.labels(model)

    def observe_predictions(self, model: str, version: str, probs: np.ndarray, class_names: list[str], multilabel: bool) -> None:
        self.prediction_stats.observe(model, version, probs, class_names, multilabel)


class PredictionStats(Collector):
    """Rows, per-class predictions and the top-label confidence histogram per
    model version, kept as numpy counts so that a 256-row batch costs a few
    vector operations rather than 256 observe() calls.

    Exposed as ``candor_predicted_rows_total``, ``candor_predictions_total``
    (label ``class_name``) and the histogram ``candor_confidence``. For
    multi-label models a row's confidence is its mean max(p, 1 - p) and every
    class predicted present counts.
    """

    def __init__(self):
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
