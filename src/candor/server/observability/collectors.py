"""Prometheus collectors computed at scrape time from the core's thread-safe snapshots.

They run on the metrics HTTP server's thread while the event loop keeps serving, so they
only read what the core publishes for that: the repository's immutable entry list, the
feedback service's totals map, windows and totals that take their own locks.

Two kinds of series, told apart in their help text:

* **fleet-ready counters** (``..._total``, reference shares): sums that add up across
  replicas; ``deploy/prometheus/recording.yml`` computes the fleet's ECE, accuracy, gaps and
  PSI from them (``candor:*:fleet_*``);
* **this replica's gauges** (``candor_confidence_psi`` and the other drift-window signals):
  what one process saw in its own recent window; for a per-pod breakdown, not for alerts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from candor.calibration.label_shift import PriorShift
from candor.calibration.reference import REFERENCE_BINS
from candor.server.core.drift import DriftThresholds, DriftWindow
from candor.server.core.feedback import FeedbackService
from candor.server.core.label_shift import LabelShiftWatch
from candor.server.core.model import LoadedModel
from candor.server.core.observed import FeedbackTotals
from candor.server.core.repository import ModelRepository
from candor.server.core.sets import SIZE_BUCKETS, PredictionSets, watched_levels

CONFIDENCE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
log = logging.getLogger("candor.server")


class GuardedCollector(Collector):
    """A collector whose failure costs only its own series for one scrape: the rest of ``/metrics``
    still answers, the failure is logged and counted through ``on_failure(name)``."""

    def __init__(self, name: str, inner: Collector, on_failure: Callable[[str], None]):
        self.name = name
        self.inner = inner
        self.on_failure = on_failure

    def collect(self):
        try:
            families = list(self.inner.collect())
        except Exception:
            log.exception("metrics collector %s failed; its series are left out of this scrape", self.name)
            self.on_failure(self.name)
            return []
        return families


class ServingCollector(Collector):
    """Rows queued per version, recent predictions cached for feedback and rows waiting for the
    prediction log, read when scraped (no pushing on the hot path)."""

    def __init__(self, queues: Callable[[], Iterable[tuple[str, str, int]]], prediction_store_rows: Callable[[], int],
                 log_buffer_rows: Callable[[], int]):  # fmt: skip
        self.queues = queues
        self.prediction_store_rows = prediction_store_rows
        self.log_buffer_rows = log_buffer_rows

    def collect(self):
        queue = GaugeMetricFamily("candor_queue_rows", "Rows waiting for a batch", labels=["model", "version"])
        for model, version, rows in self.queues():
            queue.add_metric([model, version], rows)
        held = GaugeMetricFamily("candor_prediction_store_rows",
                                 "Recent predictions cached in memory for feedback (bounded by prediction_store_rows)",
                                 value=self.prediction_store_rows())  # fmt: skip
        waiting = GaugeMetricFamily("candor_prediction_log_buffer_rows", "Rows waiting for the prediction log writer",
                                    value=self.log_buffer_rows())  # fmt: skip
        yield from (queue, held, waiting)


class DriftCollector(Collector):
    """Prometheus view of every loaded version's drift window, computed at scrape time.

    ``sources`` returns (model, version, window) for the versions loaded now: a snapshot the
    core keeps safe to read from this (the HTTP server's) thread.
    """

    SIGNALS = (
        ("candor_drift_window_rows", "Rows in this replica's label-free drift window", "rows"),
        ("candor_confidence_psi", "PSI of this replica's live top-label confidence histogram vs the reference "
         "(fleet: candor:confidence_psi:fleet_1h)", "confidence_psi"),
        ("candor_confidence_js_distance", "Jensen-Shannon distance (base 2) of live vs reference confidence", "confidence_js"),
        ("candor_prediction_psi", "PSI of this replica's live predicted-class mix vs the reference "
         "(fleet: candor:prediction_psi:fleet_1h)", "prediction_psi"),
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


def _edge(value: float) -> str:
    """A bin's upper edge as a label value."""
    return f"{value:.4f}"


class TrafficCollector(Collector):
    """What each loaded version predicted on this replica since it loaded, as counters that add up
    across replicas, and the reference they are compared with, as gauges.

    * ``candor_predicted_rows_total``, ``candor_predictions_total{class_name}`` (every class,
      zeros too) and the histogram ``candor_confidence``;
    * ``candor_live_confidence_rows_total{bin}``: entries per PSI bin of the reference (label
      ``bin``: the bin's upper edge), next to ``candor_reference_confidence_share{bin}``;
    * ``candor_reference_class_share{class_name}``: the reference's predicted-class mix;
    * ``candor_posterior_sum_total{class_name}`` (multiclass): each class's calibrated probability
      summed over rows, over ``candor_predicted_rows_total`` the mean posterior (EM's first step),
      next to ``candor_reference_prior{class_name}``, the priors the version's posteriors assume.

    The recording rules in ``deploy/prometheus/recording.yml`` turn these into the fleet's PSI.
    Every series exists from the moment a version loads (at 0), so an increase over a window
    never misses a series' first rows. For multi-label models every (row, class) entry counts
    in the confidence series, as in the drift window.
    """

    def __init__(self, models: Callable[[], Iterable[LoadedModel]]):
        self.models = models

    def collect(self):
        mv = ["model", "version"]
        rows = CounterMetricFamily("candor_predicted_rows", "Rows predicted since the version loaded", labels=mv)
        classes = CounterMetricFamily("candor_predictions", "Predicted top class per row (multi-label: each class "
                                      "predicted present)", labels=[*mv, "class_name"])  # fmt: skip
        hist = HistogramMetricFamily("candor_confidence", "Top-label confidence of each predicted row (multi-label: "
                                     "of each entry, max(p, 1 - p))", labels=mv)  # fmt: skip
        live = CounterMetricFamily("candor_live_confidence_rows", "Predicted rows per PSI bin of the reference "
                                   "(bin: upper edge of the bin); fleet-ready", labels=[*mv, "bin"])  # fmt: skip
        ref_share = GaugeMetricFamily("candor_reference_confidence_share", "Reference share of each PSI bin",
                                      labels=[*mv, "bin"])  # fmt: skip
        ref_class = GaugeMetricFamily("candor_reference_class_share", "Reference share of each predicted class",
                                      labels=[*mv, "class_name"])  # fmt: skip
        posterior = CounterMetricFamily("candor_posterior_sum", "Calibrated probability of each class summed over the "
                                        "rows predicted (multiclass); fleet-ready", labels=[*mv, "class_name"])  # fmt: skip
        ref_prior = GaugeMetricFamily("candor_reference_prior", "Class priors the version's calibrated posteriors assume "
                                      "(training label mix, or the priors a label-shift correction moved them to)",
                                      labels=[*mv, "class_name"])  # fmt: skip
        fine_at = np.rint(np.asarray(CONFIDENCE_BUCKETS) * REFERENCE_BINS).astype(int)  # fine bins at or below each edge
        for model in self.models():
            labels = [model.name, model.version]
            window = model.drift
            t = window.totals()
            rows.add_metric(labels, t.rows)
            names = model.manifest.class_names
            for name, count in zip(names, t.classes, strict=True):
                classes.add_metric([*labels, name], int(count))
            cumulative = np.concatenate([[0.0], np.cumsum(t.confidence_fine)])
            bounds = [(f"{e:g}", float(cumulative[i])) for e, i in zip(CONFIDENCE_BUCKETS, fine_at, strict=True)]
            hist.add_metric(labels, bounds + [("+Inf", float(cumulative[-1]))], t.confidence_sum)
            for edge, count, share in zip(window.group_upper_edges, t.confidence_bins, window.reference_group_shares,
                                          strict=True):  # fmt: skip
                live.add_metric([*labels, _edge(edge)], float(count))
                ref_share.add_metric([*labels, _edge(edge)], float(share))
            mix = np.asarray(window.reference.class_frequencies, dtype=np.float64)
            if mix.sum() > 0:
                for name, share in zip(names, mix / mix.sum(), strict=True):
                    ref_class.add_metric([*labels, name], float(share))
            if not window.multilabel:
                for name, total in zip(names, t.posterior_sums, strict=True):
                    posterior.add_metric([*labels, name], float(total))
            priors = model.opened.priors
            if priors is not None:
                for name, share in zip(names, priors.assumed, strict=True):
                    ref_prior.add_metric([*labels, name], float(share))
        yield from (rows, classes, hist, live, ref_share, ref_class, posterior, ref_prior)


class LabelShiftCollector(Collector):
    """The store-side EM estimate per version (:class:`~candor.server.core.label_shift.LabelShiftWatch`): the
    same on every replica of a fleet, since each reads the fleet's prediction log. No series for a version
    without an estimate (too few logged rows in the window, or none made yet)."""

    def __init__(self, latest: Callable[[], Mapping[tuple[str, str], PriorShift]],
                 models: Callable[[], Iterable[LoadedModel]]):  # fmt: skip
        self.latest = latest
        self.models = models

    def collect(self):
        mv = ["model", "version"]
        p_value = GaugeMetricFamily("candor_label_shift_p_value", "p-value of the likelihood-ratio test of no label "
                                    "shift on the fleet's logged window (EM priors vs the assumed ones)", labels=mv)  # fmt: skip
        distance = GaugeMetricFamily("candor_label_shift_total_variation", "Total-variation distance between the EM "
                                     "priors of the logged window and the assumed ones", labels=mv)  # fmt: skip
        rows = GaugeMetricFamily("candor_label_shift_rows", "Logged rows the label-shift estimate used", labels=mv)
        prior = GaugeMetricFamily("candor_label_shift_prior", "EM estimate of each class's prior on the logged window",
                                  labels=[*mv, "class_name"])  # fmt: skip
        names = {(m.name, m.version): m.manifest.class_names for m in self.models()}
        for key, shift in dict(self.latest()).items():
            if key not in names:
                continue
            p_value.add_metric(list(key), shift.p_value)
            distance.add_metric(list(key), shift.total_variation)
            rows.add_metric(list(key), shift.rows)
            for name, share in zip(names[key], shift.priors, strict=True):
                prior.add_metric([*key, name], float(share))
        yield from (p_value, distance, rows, prior)


class FeedbackCollector(Collector):
    """The label-based running sums of the rows this replica joined, per version and confidence bin.

    Counters that add up across replicas: the recording rules compute the fleet's ECE, observed
    accuracy, gap, NLL and Brier over a window from them, equal to those of the pooled rows.
    Loaded multiclass versions without feedback yet show zeros, so that their series exist
    before their first label.
    """

    def __init__(self, totals: Callable[[], Mapping[tuple[str, str], FeedbackTotals]],
                 models: Callable[[], Iterable[LoadedModel]]):  # fmt: skip
        self.totals = totals
        self.models = models

    def collect(self):
        mv, bins = ["model", "version"], ["model", "version", "bin"]
        rows = CounterMetricFamily("candor_feedback_rows", "Joined feedback rows per top-label confidence bin "
                                   "(bin: upper edge; 15 equal-width bins); fleet-ready", labels=bins)  # fmt: skip
        conf = CounterMetricFamily("candor_feedback_confidence", "Sum of top-label confidence of joined rows, per bin",
                                   labels=bins)  # fmt: skip
        correct = CounterMetricFamily("candor_feedback_correct", "Joined rows whose top label was right, per bin",
                                      labels=bins)  # fmt: skip
        nll = CounterMetricFamily("candor_feedback_nll", "Sum of -log p(true label) over joined rows", labels=mv)
        brier = CounterMetricFamily("candor_feedback_brier", "Sum of the Brier score over joined rows", labels=mv)
        totals: dict[tuple[str, str], FeedbackTotals | None] = dict(self.totals())
        for model in self.models():
            if not model.multilabel:
                totals.setdefault((model.name, model.version), None)
        edges = [_edge(e) for e in FeedbackTotals.upper_edges]
        for (name, version), running in sorted(totals.items()):
            snap = (running or FeedbackTotals()).snapshot()
            for edge, n, c, k in zip(edges, snap.rows, snap.confidence, snap.correct, strict=True):
                rows.add_metric([name, version, edge], float(n))
                conf.add_metric([name, version, edge], float(c))
                correct.add_metric([name, version, edge], float(k))
            nll.add_metric([name, version], snap.nll)
            brier.add_metric([name, version], snap.brier)
        yield from (rows, conf, correct, nll, brier)
        yield from self._coverage(totals)

    def _coverage(self, totals: Mapping[tuple[str, str], FeedbackTotals | None]):
        """Per (model, version, method, coverage level): joined rows, rows whose label was in the set, and
        the classes in those sets, as counters; and the promised level itself as a gauge, which the alert
        compares the fleet's coverage with (PromQL cannot read a number out of a label)."""
        keys = ["model", "version", "method", "coverage"]
        set_rows = CounterMetricFamily("candor_feedback_set_rows", "Joined feedback rows whose prediction set was "
                                       "recomputed, per conformal method and level; fleet-ready", labels=keys)  # fmt: skip
        covered = CounterMetricFamily("candor_feedback_set_covered", "Joined rows whose label was in their prediction "
                                      "set", labels=keys)  # fmt: skip
        classes = CounterMetricFamily("candor_feedback_set_classes", "Sum of the prediction sets' sizes over joined rows",
                                      labels=keys)  # fmt: skip
        level = GaugeMetricFamily("candor_prediction_set_level", "The coverage a version's prediction sets promise at "
                                  "this level (the coverage label as a number)", labels=keys)  # fmt: skip
        sets = {(m.name, m.version): m.opened.sets for m in self.models() if m.opened.sets is not None}
        for (name, version), set_of in sorted(sets.items()):
            running = totals.get((name, version))
            counts = running.coverage.snapshot() if running is not None else {}
            for method in set_of.spec.methods:
                for promised in watched_levels(set_of.spec):
                    n, hit, size = counts.get((method, promised), (0, 0, 0))
                    labels = [name, version, method, f"{promised:g}"]
                    set_rows.add_metric(labels, float(n))
                    covered.add_metric(labels, float(hit))
                    classes.add_metric(labels, float(size))
                    level.add_metric(labels, promised)
        yield from (set_rows, covered, classes, level)
        yield self._served_sizes(sets)

    @staticmethod
    def _served_sizes(sets: Mapping[tuple[str, str], PredictionSets]) -> HistogramMetricFamily:
        """Label-free: the sizes of the sets served, per method and level asked (growing sets: rising uncertainty)."""
        family = HistogramMetricFamily("candor_prediction_set_size", "Classes in each served prediction set, per "
                                       "conformal method and coverage level (other: a level outside 0.8, 0.9, 0.95 "
                                       "and the version's default)",
                                       labels=["model", "version", "method", "coverage"])  # fmt: skip
        for (name, version), set_of in sorted(sets.items()):
            for (method, level), counts in sorted(set_of.served.items()):
                buckets, total, _ = counts.snapshot()
                cumulative = np.cumsum(buckets).tolist()
                pairs = [(f"{bound:g}", float(c)) for bound, c in zip(SIZE_BUCKETS, cumulative, strict=False)]
                family.add_metric([name, version, method, level], [*pairs, ("+Inf", float(cumulative[-1]))], float(total))
        return family


def register_core_views(registry: CollectorRegistry, repository: ModelRepository, feedback: FeedbackService,
                        thresholds: DriftThresholds, on_failure: Callable[[str], None],
                        label_shift: LabelShiftWatch) -> None:  # fmt: skip
    """The scrape-time views of a running core: drift, traffic and feedback totals, queues and the prediction cache,
    each guarded (``on_failure(name)`` counts a collector that raised)."""
    views = {
        "drift": DriftCollector(lambda: [(m.name, m.version, m.drift) for m in repository.loaded()], thresholds),
        "traffic": TrafficCollector(repository.loaded),
        "feedback": FeedbackCollector(feedback.totals, repository.loaded),
        "label_shift": LabelShiftCollector(lambda: label_shift.latest, repository.loaded),
        "serving": ServingCollector(lambda: [(m.name, m.version, m.batcher.queued_rows) for m in repository.loaded()],
                                    lambda: len(feedback.cache), lambda: feedback.log.buffered_rows),
    }  # fmt: skip
    for name, collector in views.items():
        registry.register(GuardedCollector(name, collector, on_failure))
