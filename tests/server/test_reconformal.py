"""Re-conformalising from feedback: under drift the sets stop keeping their promise, and scores from
a window of drifted feedback restore it on the next drifted traffic; a window that matches the
calibration rows publishes nothing."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from candor.calibration.manifest import read_manifest
from candor.client import FailedPrecondition
from tests.conftest import run_candor
from tests.server.conftest import start_server

pytestmark = pytest.mark.slow


def drifted(X: np.ndarray, seed: int, noise: float = 1.0) -> np.ndarray:
    """What `candor simulate --drift-noise` does to rows: Gaussian noise of ``noise`` data standard deviations."""
    return (X + np.random.default_rng(seed).normal(0, noise * X.std(), X.shape)).astype(np.float32)


def coverage(result, labels: np.ndarray) -> float:
    return float(np.mean([int(y) in s for s, y in zip(result.sets, labels, strict=True)]))


def test_drift_breaks_coverage_and_reconformalising_on_the_drifted_window_restores_it(served_repo):
    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    window, later = order[:900], order[900:]
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    try:
        with server.client() as client:
            level = client.model("digits").default_coverage
            clean = client.predict(X[later].astype(np.float32), model="digits", coverage=level)
            served = client.predict(drifted(X[window], 1), model="digits", coverage=level)
            before = coverage(served, y[window])
            assert coverage(clean, y[later]) > before + 0.1 and before < level - 0.1  # the promise broke under drift
            with pytest.raises(FailedPrecondition, match="re-conformalising needs at least 2000"):
                client.recalibrate("digits", 1, method="conformal", min_rows=2000)
            assert client.feedback(served.prediction_ids, y[window], model="digits").accepted == len(window)
            r = client.recalibrate("digits", 1, method="conformal")
            assert r.published and r.new_version == "2" and r.method == "conformal", r.message
            assert r.coverage_target == level and r.holdout_coverage_before[2] < level
            assert abs(r.holdout_coverage_after[0] - level) < abs(r.holdout_coverage_before[0] - level)
            # The next drifted traffic, on rows neither window saw: v2's sets keep the promise again, v1's do not.
            next_rows = drifted(X[later], 2)
            v1 = coverage(client.predict(next_rows, model="digits", version=1, coverage=level), y[later])
            v2 = coverage(client.predict(next_rows, model="digits", version=2, coverage=level), y[later])
            assert v2 > v1 + 0.1 and v2 >= level - 0.05, (v1, v2)
    finally:
        server.stop()
    child = read_manifest(served_repo / "digits/2/candor.json")
    parent = read_manifest(served_repo / "digits/1/candor.json")
    assert child.calibrator == parent.calibrator and child.temperature == parent.temperature  # only the scores changed
    assert "feedback window of digits/1" in child.conformal.split and child.conformal.rows == r.fit_rows
    assert (served_repo / "digits/2/model.onnx").read_bytes() == (served_repo / "digits/1/model.onnx").read_bytes()


def test_a_window_like_the_calibration_rows_publishes_nothing(served_repo):
    X, y = load_digits(return_X_y=True)
    rows = np.random.default_rng(3).permutation(len(y))[:600]
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    try:
        with server.client() as client:
            served = client.predict(X[rows].astype(np.float32), model="digits")
            client.feedback(served.prediction_ids, y[rows], model="digits")
            r = client.recalibrate("digits", 1, method="conformal")
        assert not r.published and r.holdout_coverage_before[1] > 0
        assert "nothing published" in r.message
        shown = run_candor("recalibrate", "--target", server.target, "--model", "digits", "--method", "conformal",
                           "--dry-run")  # fmt: skip
        assert shown.returncode == 0 and "coverage at 0.9" in shown.stdout and "Clopper-Pearson" in shown.stdout
    finally:
        server.stop()
