"""Fleet metrics that add up: a real Prometheus, loading the repo's recording rules, scrapes two
real servers on one PostgreSQL database. Predictions land on both, every label goes through the
other replica, and the fleet series must equal the values of the pooled rows computed offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import psycopg
import pytest

from candor.calibration import ece, read_manifest, reliability_bins
from candor.calibration.conformal import score_of, threshold
from candor.calibration.conformal.split import read_split
from candor.calibration.drift import psi
from candor.calibration.reference import confidence_histogram
from candor.server.core.drift import psi_groups
from candor.trainer.options import DataOptions
from candor.trainer.split import split_dataset
from tests.deploy.test_prometheus_stack import start_prometheus
from tests.server.conftest import start_server

pytestmark = pytest.mark.slow
V1 = '{model="digits",version="1"}'


@pytest.fixture
def served_repo(digits_repo, tmp_path) -> Path:
    repo = tmp_path / "models"
    shutil.copytree(digits_repo, repo)
    return repo


def value(prom, expr: str) -> float:
    [series] = prom.query(expr)["data"]["result"]
    return float(series["value"][1])


def test_fleet_recording_rules_equal_the_pooled_rows(served_repo, pg_url, tmp_path):
    data = DataOptions()
    ds = data.load()
    rows = split_dataset(ds, seed=data.split_seed).val
    # Noisy inputs: about 80% accuracy, so ECE and the confidence histogram differ from the reference.
    X = np.clip(ds.X[rows] + np.random.default_rng(0).normal(0, 0.5, ds.X[rows].shape), 0, 16).astype(np.float32)
    y = ds.y[rows]
    a = start_server(served_repo, "--store", pg_url, "--poll-interval-seconds", "0")
    b = start_server(served_repo, "--store", pg_url, "--poll-interval-seconds", "0")
    prom = start_prometheus(tmp_path, a.metrics_port, b.metrics_port)
    try:
        # Every counter is scraped at 0 before the first row, so the window sees all of them.
        prom.wait_for(f"candor_feedback_rows_total{V1}", timeout=30, count=30)
        prom.wait_for(f"candor_live_confidence_rows_total{V1}", timeout=30, count=2)
        half = len(y) // 3  # unequal replicas: a mean of per-pod values would be off
        with a.client() as ca, b.client() as cb:
            on_a, on_b = ca.predict(X[:half], model="digits"), cb.predict(X[half:], model="digits")
            assert cb.feedback(on_a.prediction_ids, y[:half], model="digits").accepted == half  # A's rows, labelled on B
            assert ca.feedback(on_b.prediction_ids, y[half:], model="digits").accepted == len(y) - half
        prom.wait_for(f"candor:feedback_rows:fleet_1d{V1} == {len(y)}", timeout=30)
        prom.wait_for(f"candor:drift_rows:fleet_1h{V1} == {len(y)}", timeout=30)

        with psycopg.connect(pg_url) as conn:  # the pooled joined rows, as stored
            stored = conn.execute("SELECT probabilities, label FROM feedback").fetchall()
        probs = np.stack([np.frombuffer(p, "<f4") for p, _ in stored]).astype(np.float64)
        labels = np.array([label for _, label in stored])
        assert value(prom, f"candor:observed_ece:fleet_1d{V1}") == pytest.approx(ece(probs, labels), abs=1e-6)
        # The band from the same sums, recomputed here per bin from the stored rows.
        bins = reliability_bins(probs, labels)
        filled = bins.count > 0
        n, c = bins.count[filled], (bins.accuracy * bins.count)[filled]
        gap, noise = np.abs(bins.confidence * bins.count - bins.accuracy * bins.count)[filled], \
            1.645 * np.sqrt((c + 0.5) * (n - c + 0.5) / (n + 1))  # fmt: skip
        low, high = np.clip(gap - noise, 0, None).sum() / len(labels), (gap + noise).sum() / len(labels)
        assert value(prom, f"candor:observed_ece_low:fleet_1d{V1}") == pytest.approx(low, abs=1e-6)
        assert value(prom, f"candor:observed_ece_high:fleet_1d{V1}") == pytest.approx(high, abs=1e-6)
        assert low <= ece(probs, labels) <= high
        accuracy = np.mean(probs.argmax(axis=1) == labels)
        assert value(prom, f"candor:observed_accuracy:fleet_1d{V1}") == pytest.approx(accuracy, abs=1e-6)
        gap = probs.max(axis=1).mean() - accuracy
        assert value(prom, f"candor:observed_accuracy_gap:fleet_1d{V1}") == pytest.approx(gap, abs=1e-6)

        served = np.concatenate([on_a.probabilities, on_b.probabilities]).astype(np.float64)
        reference = read_manifest(served_repo / "digits/1/candor.json").reference
        groups = psi_groups(reference.confidence_histogram)
        live = np.bincount(groups, weights=confidence_histogram(served.max(axis=1)) * len(served))
        expected_psi = psi(np.bincount(groups, weights=reference.confidence_histogram), live)
        assert expected_psi > 0.05  # the noise moved the histogram: the check below compares something
        assert value(prom, f"candor:confidence_psi:fleet_1h{V1}") == pytest.approx(expected_psi, abs=1e-6)
        classes = np.bincount(served.argmax(axis=1), minlength=served.shape[1])
        expected_prediction_psi = psi(reference.class_frequencies, classes)
        assert value(prom, f"candor:prediction_psi:fleet_1h{V1}") == pytest.approx(expected_prediction_psi, abs=1e-6)
        # Prediction sets: every joined row's set recomputed at each promised level; the fleet's coverage is
        # the pooled rows' share whose label is in the set, through the version's stored thresholds.
        spec = read_manifest(served_repo / "digits/1/candor.json").conformal
        split = read_split(served_repo / "digits/1", spec)
        for method in spec.methods:
            sets = f'{{model="digits",version="1",method="{method}",coverage="0.9"}}'
            prom.wait_for(f"candor:set_rows:fleet_1d{sets} == {len(y)}", timeout=30)
            options = {"penalty_weight": spec.raps_penalty, "k_reg": spec.raps_k_reg} if method == "raps" else {}
            score = score_of(method, **options)
            member = score.sets(probs, threshold(split.scores[method], 0.9))
            covered = int(member[np.arange(len(labels)), labels].sum())
            assert value(prom, f"candor:set_coverage:fleet_1d{sets}") == pytest.approx(covered / len(labels), abs=1e-6)
            n = len(labels)
            top = (covered + 0.5) / (n + 1) + 1.645 * np.sqrt((covered + 0.5) * (n - covered + 0.5) / (n + 1)) / (n + 1)
            assert value(prom, f"candor:set_coverage_high:fleet_1d{sets}") == pytest.approx(min(top, 1.0), abs=1e-6)
            assert value(prom, f"candor:set_mean_size:fleet_1d{sets}") == pytest.approx(member.sum() / n, abs=1e-6)
        # Each replica's own gauge is its own window: A's PSI is not the fleet's.
        assert value(prom, f'candor_confidence_psi{{instance="127.0.0.1:{a.metrics_port}"}}') != pytest.approx(
            expected_psi, abs=1e-6)  # fmt: skip
    finally:
        prom.proc.terminate()
        prom.proc.wait(timeout=30)
        a.stop()
        b.stop()
