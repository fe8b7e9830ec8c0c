"""Prometheus metrics of the server, on a registry of their own, fed by the core's events.

Names follow DESIGN.md: prefix ``candor_``, seconds, ``_total`` counters,
labels ``model`` and ``version`` and never a per-request label. The per-call series carry
``model`` too, as Triton's do, bounded by the models this server has loaded: a call for any
other name (or for none: health, ListModels) counts under ``model=""``. The core never sees
this module: ``ServerMetrics.on_event`` subscribes to :class:`candor.server.core.events.Events`,
the gRPC edge reports each call through ``call_started``/``call_finished``, and the
collectors of :mod:`candor.server.observability.collectors` read core snapshots when scraped.

>>> metrics = ServerMetrics(CollectorRegistry())      # doctest: +SKIP
>>> events.subscribe(metrics.on_event)                # doctest: +SKIP
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from candor.server.core.events import (
    BatchRun,
    FeedbackAnswered,
    LoadFailed,
    NonFiniteRows,
    PredictionLogDropped,
    PredictionsLogged,
    RequestRejected,
    RowsDropped,
    StoreHealthChanged,
    StoreWriteFailed,
    VersionLoaded,
    VersionUnloaded,
)
from candor.server.core.feedback import FEEDBACK_OUTCOMES

# From 50 µs (an inline run of a small model, a queue wait that found the batch open) to the
# 600 s longest deadline: no observation should sit in the first bucket, nor past the last finite one.
LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)  # fmt: skip


def latency_buckets(max_seconds: float) -> tuple[float, ...]:
    """LATENCY_BUCKETS up to ``max_seconds`` (the server's longest deadline), which is a bucket of its own."""
    return (*(b for b in LATENCY_BUCKETS if b < max_seconds), float(max_seconds))

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
DROP_REASONS = ("deadline", "cancelled")


class ServerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, max_seconds: float = LATENCY_BUCKETS[-1]):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        mv = ("model", "version")
        buckets = latency_buckets(max_seconds)
        self.requests = Counter("candor_requests", "RPCs answered, by method, status code and model (\"\" for none or "
                                "a model not loaded here)", ("rpc", "code", "model"), registry=r)  # fmt: skip
        self.request_duration = Histogram(
            "candor_request_duration_seconds",
            "Time from receiving an RPC to answering it",
            ("rpc", "model"),
            buckets=buckets,
            registry=r,
        )
        self.in_flight = Gauge("candor_inflight_requests", "RPCs being handled now", registry=r)
        self.queue_duration = Histogram(
            "candor_queue_duration_seconds", "Time rows waited for a batch", mv, buckets=buckets, registry=r
        )
        self.inference_duration = Histogram(
            "candor_inference_duration_seconds", "onnxruntime run time per batch", mv, buckets=buckets, registry=r
        )
        self.batch_size = Histogram("candor_batch_size_rows", "Rows per onnxruntime run", mv, buckets=BATCH_BUCKETS, registry=r)
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
        self.collector_failures = Counter("candor_metrics_collector_failures", "Scrapes in which a collector raised "
                                          "and its series were left out (see the server log)", ("collector",),
                                          registry=r)  # fmt: skip
        for name in ("drift", "traffic", "feedback", "serving"):
            self.collector_failures.labels(name)
        self.nonfinite_rows = Counter("candor_nonfinite_rows", "Rows whose outputs were NaN or infinite: refused "
                                      "INVALID_ARGUMENT, kept out of drift, the prediction log and feedback", mv,
                                      registry=r)  # fmt: skip
        self.store_errors = Counter("candor_feedback_store_errors", "Feedback batches the store failed to write", registry=r)
        self.store_up = Gauge("candor_feedback_store_up", "1 while the store (prediction log and feedback) answers, "
                              "0 while it fails", registry=r)  # fmt: skip
        self.logged_rows = Counter("candor_prediction_log_rows", "Rows the prediction log committed to the store",
                                   registry=r)  # fmt: skip
        self.log_dropped = Counter("candor_prediction_log_dropped_rows", "Rows never logged: reason=buffer_full (the "
                                   "writer fell behind) or store_error", ("reason",), registry=r)  # fmt: skip
        for reason in ("buffer_full", "store_error"):
            self.log_dropped.labels(reason)
        self.feedback = Counter("candor_feedback", "Feedback items by outcome", ("model", "outcome"), registry=r)
        self.load_failures = Counter("candor_model_load_failures", "Model versions that failed to load", ("model",), registry=r)
        self.model_info = Gauge(
            "candor_model_info", "1 for each loaded model version", ("model", "version", "provider", "task"), registry=r
        )
        self.model_ready = Gauge("candor_model_ready", "1 when the model version serves, else 0", mv, registry=r)
        # Labelled children looked up once per key: labels() takes a lock on every call.
        self._calls: dict[tuple[str, str, str], Counter] = {}
        self._durations: dict[tuple[str, str], Histogram] = {}
        self._versions: dict[str, set[str]] = {}  # loaded versions per model: the values the per-call model label takes
        self._batch_series: dict[tuple[str, str], tuple[Histogram, Histogram, Histogram]] = {}

    # --- the gRPC edge --------------------------------------------------------------------

    def call_started(self) -> None:
        self.in_flight.inc()

    def call_finished(self, rpc: str, code: str, seconds: float | None, model: str = "") -> None:
        """One call (or one message of a stream) for ``model`` answered with status ``code``; ``seconds`` None: not timed."""
        if model not in self._versions:
            model = ""  # bounded: whatever a caller names, only loaded models become series
        key = (rpc, code, model)
        counter = self._calls.get(key)
        if counter is None:
            counter = self._calls[key] = self.requests.labels(*key)
        counter.inc()
        if seconds is not None:
            duration = self._durations.get((rpc, model))
            if duration is None:
                duration = self._durations[(rpc, model)] = self.request_duration.labels(rpc, model)
            duration.observe(seconds)

    def call_ended(self) -> None:
        self.in_flight.dec()

    def limit_refused(self, limit: str) -> None:
        self.limit_refusals.labels(limit).inc()

    def auth_refused(self, reason: str) -> None:
        self.auth_refusals.labels(reason).inc()

    def edge_refused(self, kind: str, reason: str) -> None:
        """The edge interceptor's refusals: kind ``auth`` or ``limit``."""
        (self.auth_refusals if kind == "auth" else self.limit_refusals).labels(reason).inc()

    def collector_failed(self, name: str) -> None:
        self.collector_failures.labels(name).inc()

    # --- the core's events ----------------------------------------------------------------

    def on_event(self, event: object) -> None:
        match event:
            case BatchRun():
                key = (event.model, event.version)
                children = self._batch_series.get(key)
                if children is None:
                    children = self._batch_series[key] = (self.batch_size.labels(*key), self.inference_duration.labels(*key),
                                                          self.queue_duration.labels(*key))  # fmt: skip
                batch_size, inference, queue = children
                batch_size.observe(event.rows)
                inference.observe(event.run_seconds)
                for waited in event.queue_seconds:
                    queue.observe(waited)
            case RowsDropped():
                self.dropped.labels(event.model, event.version, event.reason).inc(event.requests)
            case NonFiniteRows():
                self.nonfinite_rows.labels(event.model, event.version).inc(event.rows)
            case RequestRejected():
                self.rejected.labels(event.model, event.version).inc()
            case VersionLoaded():
                self._start_series(event)
            case VersionUnloaded():
                self.model_info.remove(event.model, event.version, event.provider, event.task)
                if event.removed:
                    self.model_ready.remove(event.model, event.version)
                versions = self._versions.get(event.model, set())
                versions.discard(event.version)
                if not versions:
                    self._versions.pop(event.model, None)
            case LoadFailed():
                self.load_failures.labels(event.model).inc()
                if not event.still_serving:
                    self.model_ready.labels(event.model, event.version).set(0)
            case FeedbackAnswered():
                for outcome, n in event.outcomes.items():
                    self.feedback.labels(event.model, outcome).inc(n)
            case StoreWriteFailed():
                self.store_errors.inc()
            case StoreHealthChanged():
                self.store_up.set(1 if event.ok else 0)
            case PredictionsLogged():
                self.logged_rows.inc(event.rows)
            case PredictionLogDropped():
                self.log_dropped.labels(event.reason).inc(event.rows)

    def _start_series(self, event: VersionLoaded) -> None:
        """A loaded version's gauges, and its counters at 0, so that rates and dashboards read 0 rather than no data."""
        model, version = event.model, event.version
        self._versions.setdefault(model, set()).add(version)
        self.model_info.labels(model, version, event.provider, event.task).set(1)
        self.model_ready.labels(model, version).set(1)
        self.rejected.labels(model, version)
        self.nonfinite_rows.labels(model, version)
        for reason in DROP_REASONS:
            self.dropped.labels(model, version, reason)
        for outcome in FEEDBACK_OUTCOMES:
            self.feedback.labels(model, outcome)
        self.load_failures.labels(model)
