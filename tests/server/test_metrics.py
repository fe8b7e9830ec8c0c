"""Server metrics on a fresh registry, fed the core's events and read back with get_sample_value."""

from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from candor.calibration.manifest import Reference
from candor.server.core.drift import DriftWindow
from candor.server.core.events import BatchRun
from candor.server.observability.collectors import TrafficCollector
from candor.server.observability.metrics import ServerMetrics


def collector_after(batches, names: list[str], multilabel: bool) -> CollectorRegistry:
    """A registry with the traffic view of one version (model "demo", version "1") whose drift window saw ``batches``."""
    k = len(names)
    reference = Reference(split="test", source="test split (10 rows)", sample=None, n_samples=10,
                          confidence_histogram=[1.0] + [0.0] * 99, class_frequencies=[1 / k] * k, mean_confidence=0.9,
                          accuracy=0.9, ece=0.0, ece_interval=None)  # fmt: skip
    window = DriftWindow(reference, k, multilabel, max_rows=100, max_age_s=3600)
    for probs in batches:
        window.add(np.asarray(probs))
    model = SimpleNamespace(name="demo", version="1", drift=window, manifest=SimpleNamespace(class_names=names))
    registry = CollectorRegistry()
    registry.register(TrafficCollector(lambda: [model]))
    return registry


def test_prediction_statistics_by_hand():
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]], np.float32)  # top-1 conf 0.9, 0.7, 0.5
    get = collector_after([probs, probs[:1]], ["cat", "dog"], multilabel=False).get_sample_value
    labels = {"model": "demo", "version": "1"}
    assert get("candor_predicted_rows_total", labels) == 4
    assert get("candor_predictions_total", labels | {"class_name": "cat"}) == 3  # argmax of the tie [0.5, 0.5] is class 0
    assert get("candor_predictions_total", labels | {"class_name": "dog"}) == 1
    assert get("candor_confidence_count", labels) == 4
    assert get("candor_confidence_sum", labels) == pytest.approx(0.9 + 0.7 + 0.5 + 0.9)
    assert get("candor_confidence_bucket", labels | {"le": "0.5"}) == 1  # le is inclusive
    assert get("candor_confidence_bucket", labels | {"le": "0.7"}) == 2
    assert get("candor_confidence_bucket", labels | {"le": "0.85"}) == 2
    assert get("candor_confidence_bucket", labels | {"le": "0.9"}) == 4
    assert get("candor_confidence_bucket", labels | {"le": "+Inf"}) == 4
    # Every class and every PSI bin has a series, zeros too, so that a window's increase sees their first rows.
    assert get("candor_reference_class_share", labels | {"class_name": "dog"}) == 0.5
    bins = [e for e in ("0.1000", "0.2000", "1.0000") if get("candor_live_confidence_rows_total", labels | {"bin": e})]
    assert sum(get("candor_live_confidence_rows_total", labels | {"bin": b}) for b in bins) == 4


def test_multilabel_statistics_count_every_entry():
    get = collector_after([np.array([[0.9, 0.8], [0.2, 0.6]])], ["a", "b"], multilabel=True).get_sample_value
    labels = {"model": "demo", "version": "1"}
    assert get("candor_predictions_total", labels | {"class_name": "b"}) == 2
    assert get("candor_confidence_count", labels) == 4
    assert get("candor_confidence_sum", labels) == pytest.approx(0.9 + 0.8 + 0.8 + 0.6)


def test_batch_statistics_come_from_the_batch_events():
    m = ServerMetrics(CollectorRegistry())
    probs = np.array([[0.9, 0.1], [0.3, 0.7]])
    m.on_event(BatchRun("demo", "1", 2, probs, ["a", "b"], False, (0.001, 0.001), 0.002))
    get, labels = m.registry.get_sample_value, {"model": "demo", "version": "1"}
    assert get("candor_batch_size_rows_count", labels) == 1 and get("candor_batch_size_rows_sum", labels) == 2
    assert get("candor_queue_duration_seconds_count", labels) == 2


def test_a_loaded_version_starts_its_counters_at_zero(server):
    """Rates of refusals, drops, feedback and load failures read 0 from the start, not "no data"."""
    text = server.metrics_text()
    for series in (
        'candor_rejected_requests_total{model="digits",version="1"} 0.0',
        'candor_dropped_requests_total{model="digits",reason="deadline",version="1"} 0.0',
        'candor_dropped_requests_total{model="digits",reason="cancelled",version="1"} 0.0',
        'candor_model_load_failures_total{model="digits"} 0.0',
    ):
        assert series in text
    for outcome in ("ACCEPTED", "DUPLICATE", "EXPIRED", "UNKNOWN_ID"):
        assert f'candor_feedback_total{{model="digits",outcome="{outcome}"}}' in text
