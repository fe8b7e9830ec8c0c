"""Label-free drift signals: the window on its own, then on a real server."""

import numpy as np
import pytest

from candor.calibration.reference import build_reference
from candor.server.core.drift import DriftThresholds, DriftWindow, psi_groups
from candor.trainer.options import DataOptions
from candor.trainer.split import split_dataset
from tests.server.conftest import start_server


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def reference():
    rng = np.random.default_rng(0)
    probs = softmax(rng.normal(size=(2000, 4)) * 3)
    return build_reference(probs, probs.argmax(axis=1), "test"), rng


def test_same_distribution_stays_quiet_and_a_shift_is_seen(reference):
    ref, rng = reference
    same = DriftWindow(ref, 4, False, max_rows=10_000, max_age_s=60)
    same.add(softmax(rng.normal(size=(2000, 4)) * 3), now=0)
    quiet = same.report(now=1)
    assert quiet.rows == 2000 and quiet.confidence_psi < 0.1 and quiet.prediction_psi < 0.1
    assert quiet.expected_accuracy == pytest.approx(ref.mean_confidence, abs=0.02)

    flat = DriftWindow(ref, 4, False, max_rows=10_000, max_age_s=60)
    flat.add(softmax(rng.normal(size=(2000, 4)) * 0.5), now=0)  # far less confident
    loud = flat.report(now=1)
    assert loud.confidence_psi > 0.25 and loud.expected_accuracy < quiet.expected_accuracy
    assert loud.mean_entropy > quiet.mean_entropy
    skewed = DriftWindow(ref, 4, False, max_rows=10_000, max_age_s=60)
    z = rng.normal(size=(2000, 4)) * 3
    z[:, 0] += 3  # class 0 predicted far more often
    skewed.add(softmax(z), now=0)
    assert skewed.report(now=1).prediction_psi > 0.25
    assert DriftThresholds().state(loud.confidence_psi) == 2 and DriftThresholds().state(0.15) == 1


def test_window_evicts_by_count_and_by_age(reference):
    ref, rng = reference
    w = DriftWindow(ref, 4, False, max_rows=100, max_age_s=10)
    for t in range(3):
        w.add(softmax(rng.normal(size=(60, 4))), now=t)
    # 180 rows added; the window keeps the newest whole batches that cover 100 rows: 2 x 60.
    assert w.report(now=3).rows == 120
    assert w.report(now=11.5).rows == 60  # the batch from t=1 is now older than 10 s
    assert w.report(now=12.5) is None


def test_psi_groups_merge_to_ten_percent_of_the_reference():
    hist = np.zeros(100)
    hist[-1], hist[50:60] = 0.5, 0.05
    groups = psi_groups(hist)
    shares = np.bincount(groups, weights=hist)
    assert np.all(shares >= 0.1 - 1e-12) and shares[-1] == pytest.approx(0.5)


@pytest.mark.slow
def test_drift_gauges_on_a_real_server(served_repo):
    data = DataOptions()
    ds = data.load()
    held_out = ds.X[split_dataset(ds, seed=data.split_seed).val]  # not the reference sample, same distribution
    server = start_server(served_repo, "--drift-window-rows", str(len(held_out)), "--poll-interval-seconds", "0")
    try:
        with server.client() as c:
            c.predict(held_out, model="digits")
            labels = {"model": "digits", "version": "1"}
            assert server.metric("candor_drift_window_rows", **labels) == len(held_out)
            assert server.metric("candor_confidence_psi", **labels) < 0.1
            assert server.metric("candor_prediction_psi", **labels) < 0.1
            assert server.metric("candor_drift_state", signal="confidence", **labels) == 0
            noisy = np.clip(held_out + np.random.default_rng(0).normal(0, 4, held_out.shape), 0, 16)
            c.predict(noisy, model="digits")  # evicts the clean rows: the window is all noisy now
            assert server.metric("candor_drift_window_rows", **labels) == len(held_out)
            assert server.metric("candor_prediction_psi", **labels) > 0.25
            assert server.metric("candor_drift_state", signal="prediction", **labels) == 2
            assert server.metric("candor_expected_accuracy_gap", **labels) < 0
    finally:
        server.stop()
