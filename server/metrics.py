"""Prometheus metrics of the server, on a registry of their own.

Names follow DESIGN.md: prefix ``candor_``, seconds, ``_total`` counters,
labels ``model`` and ``version`` and never a per-request label.
"""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
CONFIDENCE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))


class ServerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
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
        self.load_failures = Counter("candor_model_load_failures", "Model versions that failed to load", ("model",), registry=r)
        self.model_info = Gauge(
            "candor_model_info", "1 for each loaded model version", ("model", "version", "provider", "task"), registry=r
        )
        self.model_ready = Gauge("candor_model_ready", "1 when the model version serves, else 0", mv, registry=r)
        self.rows = Counter("candor_predicted_rows", "Rows predicted", mv, registry=r)
        self.predictions = Counter("candor_predictions", "Predicted top class per row", (*mv, "class_name"), registry=r)
        self.confidence = Histogram(
            "candor_confidence", "Top-label confidence of each predicted row", mv, buckets=CONFIDENCE_BUCKETS, registry=r
        )

    def observe_predictions(self, model: str, version: str, probs: np.ndarray, class_names: list[str], multilabel: bool) -> None:
        """Per-class prediction counts and the confidence histogram for a batch of answered rows."""
        self.rows.labels(model, version).inc(len(probs))
        if multilabel:
            present = (probs > 0.5).sum(axis=0)
            conf = np.maximum(probs, 1 - probs).mean(axis=1)
        else:
            present = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
            conf = probs.max(axis=1)
        for k in np.flatnonzero(present):
            self.predictions.labels(model, version, class_names[k]).inc(int(present[k]))
        # Bucket counts in one pass instead of one observe() call per row.
        hist = self.confidence.labels(model, version)
        for value in conf:
            hist.observe(float(value))
