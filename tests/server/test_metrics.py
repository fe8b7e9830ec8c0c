"""Server metrics on a fresh registry, fed the core's events and read back with get_sample_value."""

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from candor.server.core.events import BatchRun
from candor.server.observability.metrics import ServerMetrics


def ran(m: ServerMetrics, model: str, version: str, probs, names: list[str], multilabel: bool) -> None:
    """What a version's batcher reports after one run."""
    m.on_event(BatchRun(model, version, len(probs), np.asarray(probs), names, multilabel, (0.001,) * len(probs), 0.002))


def test_prediction_statistics_by_hand():
    m = ServerMetrics(CollectorRegistry())
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]], np.float32)  # top-1 conf 0.9, 0.7, 0.5
    ran(m, "demo", "1", probs, ["cat", "dog"], multilabel=False)
    ran(m, "demo", "1", probs[:1], ["cat", "dog"], multilabel=False)
    get = m.registry.get_sample_value
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
    assert get("candor_batch_size_rows_count", labels) == 2 and get("candor_batch_size_rows_sum", labels) == 4
    assert get("candor_queue_duration_seconds_count", labels) == 4


def test_multilabel_statistics():
    m = ServerMetrics(CollectorRegistry())
    ran(m, "ml", "2", np.array([[0.9, 0.8], [0.2, 0.6]]), ["a", "b"], multilabel=True)
    get = m.registry.get_sample_value
    labels = {"model": "ml", "version": "2"}
    assert get("candor_predictions_total", labels | {"class_name": "b"}) == 2
    assert get("candor_confidence_sum", labels) == pytest.approx((0.9 + 0.8) / 2 + (0.8 + 0.6) / 2)


def test_forgetting_a_version_removes_its_series():
    m = ServerMetrics(CollectorRegistry())
    ran(m, "demo", "1", np.array([[0.6, 0.4]]), ["a", "b"], multilabel=False)
    m.prediction_stats.forget("demo", "1")
    assert m.registry.get_sample_value("candor_predicted_rows_total", {"model": "demo", "version": "1"}) is None


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
