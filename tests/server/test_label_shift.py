"""Label shift on a real server: unlabeled traffic whose class mix moved (3 of 10 digits at 70%) is
estimated from the prediction log, corrected into a child that beats its parent on held-out shifted
rows, and unshifted traffic is refused; on two replicas sharing PostgreSQL the estimate uses both."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from candor.calibration.calibrators import fit_calibrator
from candor.calibration.label_shift import total_variation
from candor.calibration.lineage import Refit, publish_child
from candor.calibration.manifest import read_manifest
from candor.calibration.reference import read_sample
from candor.client import AsyncClient, FailedPrecondition
from candor.graph import set_calibrator
from candor.trainer.options import DataOptions
from candor.trainer.split import split_dataset
from tests.conftest import run_candor
from tests.server.conftest import start_server, wait_for

pytestmark = pytest.mark.slow
K = 10
SHIFTED = np.array([0.7 / 3] * 3 + [0.3 / 7] * 7)  # classes 0, 1, 2 together at 70%


@pytest.fixture(scope="module")
def pools():
    """Rows the network never trained on, per class: half the test split for traffic; the other half and the
    validation split (the temperature's fit rows, which no label-shift estimate sees) held out."""
    data = DataOptions()
    ds = data.load()
    split = split_dataset(ds, seed=data.split_seed)
    rng = np.random.default_rng(0)
    traffic, held = {}, {}
    for c in range(K):
        rows = rng.permutation(split.test[ds.y[split.test] == c])
        traffic[c] = rows[: len(rows) // 2]
        held[c] = np.concatenate([rows[len(rows) // 2 :], split.val[ds.y[split.val] == c]])
    return ds.X.astype(np.float32), ds.y, traffic, held


def draw(pools, priors: np.ndarray, n: int, seed: int, held: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows with class mix ``priors`` (with replacement within each class's pool)."""
    X, y, traffic, kept = pools
    pool = kept if held else traffic
    rng = np.random.default_rng(seed)
    classes = rng.choice(K, n, p=priors)
    rows = np.array([rng.choice(pool[c]) for c in classes])
    return X[rows], y[rows]


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1))))


def test_shifted_traffic_is_estimated_corrected_and_beats_the_parent_and_unshifted_traffic_is_refused(served_repo, pools):
    server = start_server(served_repo, "--poll-interval-seconds", "0", "--label-shift-interval-seconds", "0.5")
    try:
        with server.client() as client:
            with pytest.raises(FailedPrecondition, match=r"needs at least 200 \(20 per class\)"):
                client.recalibrate("digits", 1, method="label_shift")
            X, y = draw(pools, SHIFTED, 1200, seed=1)
            results = [client.predict(X[start : start + 100], model="digits") for start in range(0, len(X), 100)]
            wait_for(lambda: server.metric("candor_prediction_log_rows_total") >= len(X))
            sampled = np.bincount(y, minlength=K) / len(y)
            report = client.calibration("digits", 1)
            shift = report.prior_shift
            assert shift is not None, report.prior_shift_reason
            assert shift.rows == len(X) and shift.converged
            assert total_variation(shift.priors, sampled) < 0.05, (shift.priors, sampled)
            assert shift.p_value < 1e-6 and shift.total_variation > 0.3
            assert all(low <= p <= high for p, (low, high) in zip(shift.priors, shift.interval, strict=True))
            assert shift.labelled_rows == 0 and shift.observed_accuracy is None
            served = np.concatenate([r.top_k_indices[:, 0] for r in results])
            accuracy = float(np.mean(served == y))
            e, low, high = shift.expected_accuracy
            assert low < e < high and abs(e - accuracy) < 0.03  # label-free, as good as the calibration
            # Once labels arrive, the same report puts the estimate beside what they show.
            ids = [pid for r in results for pid in r.prediction_ids]
            assert client.feedback(ids, y, model="digits").accepted == len(y)
            later = client.calibration("digits", 1).prior_shift
            assert later.labelled_rows == len(y) and later.observed_accuracy == pytest.approx(accuracy)
            # The gauges behind the alert: the store-side estimate, and the summable posterior sums.
            wait_for(lambda: server.metric("candor_label_shift_rows", model="digits", version="1") > 0)
            assert server.metric("candor_label_shift_p_value", model="digits", version="1") < 1e-6
            assert server.metric("candor_label_shift_total_variation", model="digits", version="1") > 0.3
            posterior = server.metric("candor_posterior_sum_total", model="digits", version="1")
            assert posterior == pytest.approx(server.metric("candor_predicted_rows_total", model="digits", version="1"),
                                              rel=1e-4)  # each row's posteriors sum to 1
            shown = run_candor("calibration", "--target", server.target, "--model", "digits")
            assert shown.returncode == 0 and "class priors over" in shown.stdout and "no-shift test p =" in shown.stdout
            dry = run_candor("recalibrate", "--target", server.target, "--model", "digits", "--method", "label-shift",
                             "--dry-run")  # fmt: skip
            assert dry.returncode == 0 and "dry run" in dry.stdout and "estimated" in dry.stdout, dry.stdout + dry.stderr

            r = client.recalibrate("digits", 1, method="label_shift")
            assert r.published and r.new_version == "2" and r.method == "label_shift", r.message
            assert r.prior_shift is not None and r.prior_shift.rows >= len(X)
            held_X, held_y = draw(pools, SHIFTED, 3000, seed=2, held=True)
            parent = client.predict(held_X, model="digits", version=1, top_k=K)
            child = client.predict(held_X, model="digits", version=2, top_k=K)

            def full(result) -> np.ndarray:
                probs = np.zeros((len(held_y), K))
                np.put_along_axis(probs, result.top_k_indices, result.top_k_probabilities, axis=1)
                return probs

            assert nll(full(child), held_y) < nll(full(parent), held_y) - 0.01  # 0.094 vs 0.121 when written

            # The mix moves again (7, 8, 9 at 70%): correcting the corrected child composes.
            again, _ = draw(pools, SHIFTED[::-1].copy(), 1200, seed=4)
            client.predict(again, model="digits", version=2)
            wait_for(lambda: server.metric("candor_prediction_log_rows_total") >= len(X) + len(again) + 2 * len(held_X))
            r3 = client.recalibrate("digits", 2, method="label_shift", newest_rows=len(again))
            assert r3.published and r3.new_version == "3", r3.message
    finally:
        server.stop()
    m3 = read_manifest(served_repo / "digits/3/candor.json")
    m = read_manifest(served_repo / "digits/2/candor.json")
    assert m3.label_shift.training_priors == m.label_shift.training_priors  # pi_train: the original's, down the chain
    assert m3.label_shift.parent_priors == pytest.approx(m.label_shift.priors)
    assert total_variation(m3.label_shift.priors, SHIFTED[::-1]) < 0.08
    assert m.parent == "digits/1" and m.calibrator.method == "bcts" and m.label_shift is not None
    assert m.label_shift.parent_priors == m.label_shift.training_priors  # the parent was not corrected
    assert total_variation(m.label_shift.priors, SHIFTED) < 0.08
    assert m.reference.class_frequencies == pytest.approx(m.label_shift.priors)
    assert "reweighted to its corrected class priors" in m.reference.source


def test_unshifted_traffic_is_refused_with_the_numbers(served_repo, pools):
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    try:
        with server.client() as client:
            X, _ = draw(pools, np.full(K, 1 / K), 1000, seed=3)
            client.predict(X, model="digits")
            wait_for(lambda: server.metric("candor_prediction_log_rows_total") >= len(X))
            shift = client.calibration("digits", 1).prior_shift
            assert shift.p_value > 0.01 and shift.total_variation < 0.1

            async def both():
                async with AsyncClient(server.target) as aclient:
                    report = await aclient.calibration("digits", 1)
                    with pytest.raises(FailedPrecondition, match="no significant label shift"):
                        await aclient.recalibrate("digits", 1, method="label_shift")
                    return report.prior_shift

            from_async = asyncio.run(both())  # the async client gets the same estimate
            assert from_async.rows == shift.rows and from_async.priors == pytest.approx(shift.priors)
            with pytest.raises(FailedPrecondition, match=r"no significant label shift.*p = .* nothing published"):
                client.recalibrate("digits", 1, method="label_shift")
            refused = run_candor("recalibrate", "--target", server.target, "--model", "digits", "--method", "label-shift")
            assert refused.returncode != 0 and "no significant label shift" in refused.stderr
            assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    finally:
        server.stop()
    assert not (served_repo / "digits/2").exists()


def test_a_matrix_calibrated_version_is_refused_with_the_reason(served_repo, pools):
    parent = read_manifest(served_repo / "digits/1/candor.json")
    sample = read_sample(served_repo / "digits/1", parent.reference.sample)
    matrix = fit_calibrator("matrix", sample.val_logits, sample.val_labels)
    publish_child(served_repo, parent, write_model=lambda path: set_calibrator(served_repo / "digits/1/model.onnx", path, matrix),
                  refit=Refit(matrix, "validation rows"))  # fmt: skip
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    try:
        with server.client() as client:
            X, _ = draw(pools, SHIFTED, 400, seed=5)
            client.predict(X, model="digits", version=2)
            wait_for(lambda: server.metric("candor_prediction_log_rows_total") >= len(X))
            with pytest.raises(FailedPrecondition, match="does not commute"):
                client.recalibrate("digits", 2, method="label_shift")
            assert client.calibration("digits", 2).prior_shift is not None  # estimated all the same
    finally:
        server.stop()
    assert not (served_repo / "digits/3").exists()



def test_two_replicas_on_postgresql_estimate_from_both_replicas_rows(served_repo, pools, pg_url):
    a = start_server(served_repo, "--store", pg_url, "--data-dir", str(served_repo.parent / "data-a"),
                     "--poll-interval-seconds", "0",
                     "--label-shift-interval-seconds", "0.5")  # fmt: skip
    b = start_server(served_repo, "--store", pg_url, "--data-dir", str(served_repo.parent / "data-b"),
                     "--poll-interval-seconds", "0")
    try:
        X, y = draw(pools, SHIFTED, 1000, seed=6)
        with a.client() as ca, b.client() as cb:
            ca.predict(X[:300], model="digits")  # unequal shares: each replica alone holds too few of some classes
            cb.predict(X[300:], model="digits")
            wait_for(lambda: a.metric("candor_prediction_log_rows_total") >= 300
                     and b.metric("candor_prediction_log_rows_total") >= 700)  # fmt: skip
            sampled = np.bincount(y, minlength=K) / len(y)
            for client in (ca, cb):  # either replica reads the fleet's log
                shift = client.calibration("digits", 1).prior_shift
                assert shift.rows == len(X) and total_variation(shift.priors, sampled) < 0.05
            # the store-side gauge on replica a counts b's rows too
            wait_for(lambda: a.metric("candor_label_shift_rows", model="digits", version="1") == len(X))
            r = cb.recalibrate("digits", 1, method="label_shift")
            assert r.published and r.prior_shift.rows == len(X), r.message
    finally:
        a.stop()
        b.stop()
