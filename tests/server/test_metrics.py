"""Server metrics on a fresh registry, fed the core's events and read back with get_sample_value."""

from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from candor.calibration.manifest import Reference
from candor.client import CandorError
from candor.server.core.drift import DriftWindow
from candor.server.core.events import BatchRun, VersionLoaded, VersionUnloaded
from candor.server.observability.collectors import TrafficCollector
from candor.server.observability.metrics import ServerMetrics
from tests.server.conftest import wait_for


def collector_after(batches, names: list[str], multilabel: bool) -> CollectorRegistry:
    """A registry with the traffic view of one version (model "demo", version "1") whose drift window saw ``batches``."""
    k = len(names)
    reference = Reference(split="test", source="test split (10 rows)", sample=None, n_samples=10,
                          confidence_histogram=[1.0] + [0.0] * 99, class_frequencies=[1 / k] * k, mean_confidence=0.9,
                          accuracy=0.9, ece=0.0, ece_interval=None)  # fmt: skip
    window = DriftWindow(reference, k, multilabel, max_rows=100, max_age_s=3600)
    for probs in batches:
        window.add(np.asarray(probs))
    priors = SimpleNamespace(assumed=np.full(k, 1 / k))
    model = SimpleNamespace(name="demo", version="1", drift=window, manifest=SimpleNamespace(class_names=names),
                            opened=SimpleNamespace(priors=None if multilabel else priors))  # fmt: skip
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
    # summed posteriors (EM's first step across replicas), beside the priors the version assumes
    assert get("candor_posterior_sum_total", labels | {"class_name": "cat"}) == pytest.approx(0.9 + 0.3 + 0.5 + 0.9)
    assert get("candor_posterior_sum_total", labels | {"class_name": "dog"}) == pytest.approx(0.1 + 0.7 + 0.5 + 0.1)
    assert get("candor_reference_prior", labels | {"class_name": "dog"}) == 0.5
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
    # sigmoid outputs are no distribution over classes: no posterior sums, no priors
    assert get("candor_posterior_sum_total", labels | {"class_name": "a"}) is None
    assert get("candor_reference_prior", labels | {"class_name": "a"}) is None


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


def bucket_edges(registry: CollectorRegistry, name: str) -> list[float]:
    (family,) = [f for f in registry.collect() if f.name == name]
    return sorted({float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")})


def test_latency_buckets_run_from_50_microseconds_to_the_longest_deadline():
    """A 70 µs run must not share the first bucket with a 30 µs wait, nor a 400 s call sit in +Inf."""
    m = ServerMetrics(CollectorRegistry(), max_seconds=600)
    m.on_event(BatchRun("demo", "1", 1, np.array([[0.9, 0.1]]), ["a", "b"], False, (0.00003,), 0.00007))
    m.call_finished("Predict", "OK", 400.0)
    for name in ("candor_request_duration_seconds", "candor_queue_duration_seconds", "candor_inference_duration_seconds"):
        edges = bucket_edges(m.registry, name)
        assert edges[0] == 0.00005 and edges[-2] == 600 and edges[-1] == float("inf"), (name, edges)
    get, labels = m.registry.get_sample_value, {"model": "demo", "version": "1"}
    assert get("candor_inference_duration_seconds_bucket", labels | {"le": "5e-05"}) == 0  # 70 µs is past the first edge
    assert get("candor_queue_duration_seconds_bucket", labels | {"le": "5e-05"}) == 1
    assert get("candor_request_duration_seconds_bucket", {"rpc": "Predict", "model": "", "le": "600.0"}) == 1
    # A server whose longest deadline is 45 s ends its buckets there.
    short = ServerMetrics(CollectorRegistry(), max_seconds=45)
    short.call_finished("Predict", "OK", 1.0)
    assert bucket_edges(short.registry, "candor_request_duration_seconds")[-3:] == [30, 45, float("inf")]


def test_per_call_series_carry_the_model_bounded_by_the_loaded_ones():
    m = ServerMetrics(CollectorRegistry())
    m.on_event(VersionLoaded("digits", "1", "CPUExecutionProvider", "multiclass"))
    m.call_finished("Predict", "OK", 0.001, "digits")
    for name in ("nosuch", "x" * 1000, "digits2"):  # what a caller names never becomes a series of its own
        m.call_finished("Predict", "NOT_FOUND", 0.001, name)
    m.call_finished("ListModels", "OK", 0.001)
    get = m.registry.get_sample_value
    assert get("candor_requests_total", {"rpc": "Predict", "code": "OK", "model": "digits"}) == 1
    assert get("candor_requests_total", {"rpc": "Predict", "code": "NOT_FOUND", "model": ""}) == 3
    assert get("candor_request_duration_seconds_count", {"rpc": "Predict", "model": "digits"}) == 1
    assert get("candor_request_duration_seconds_count", {"rpc": "ListModels", "model": ""}) == 1
    models = {s.labels["model"] for f in m.registry.collect() if f.name == "candor_requests" for s in f.samples}
    assert models == {"digits", ""}
    m.on_event(VersionUnloaded("digits", "1", "CPUExecutionProvider", "multiclass", removed=True))
    m.call_finished("Predict", "OK", 0.001, "digits")
    assert get("candor_requests_total", {"rpc": "Predict", "code": "OK", "model": ""}) == 1


def test_a_live_server_labels_calls_by_model(server, digits_rows):
    with server.client() as client:
        client.predict(digits_rows[:2], model="digits")
        with pytest.raises(CandorError):
            client.predict(digits_rows[:2], model="nosuch")
    wait_for(lambda: server.metric("candor_requests_total", rpc="Predict", model="digits", code="OK") >= 1)
    assert server.metric("candor_requests_total", rpc="Predict", model="", code="NOT_FOUND") >= 1
    assert server.metric("candor_request_duration_seconds_count", rpc="Predict", model="digits") >= 1
    assert 'model="nosuch"' not in server.metrics_text()
