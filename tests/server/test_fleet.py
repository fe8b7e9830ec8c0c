"""A fleet: two real `candor serve` processes on one model repository and one real PostgreSQL
database. Labels reach either replica, recalibration sees the whole fleet's feedback and runs
once, and losing the database degrades feedback only, recovering by itself."""

from __future__ import annotations

import signal
import threading

import numpy as np
import psycopg
import pytest

from candor.calibration import read_manifest, write_manifest
from candor.calibration.manifest import sha256_file
from candor.client import Aborted, FailedPrecondition, Unavailable
from candor.graph import set_temperature
from candor.trainer.options import DataOptions
from candor.trainer.split import split_dataset
from tests.conftest import run_candor
from tests.server.conftest import RunningServer, start_server, wait_for

pytestmark = pytest.mark.slow
STORE_HEALTH = "candor.feedback_store"


@pytest.fixture(scope="module")
def labelled():
    data = DataOptions()
    ds = data.load()
    rows = split_dataset(ds, seed=data.split_seed).val
    return ds.X[rows], ds.y[rows]


def replica(repo, pg_url: str, name: str, *flags: str) -> RunningServer:
    return start_server(repo, "--store", pg_url, "--data-dir", str(repo.parent / f"data-{name}"), *flags)


def logged(server: RunningServer, rows: int) -> bool:
    return server.metric("candor_prediction_log_rows_total") >= rows


def test_labels_join_on_any_replica_and_survive_a_killed_one(served_repo, pg_url, labelled):
    X, y = labelled
    a = replica(served_repo, pg_url, "a", "--poll-interval-seconds", "0")
    b = replica(served_repo, pg_url, "b", "--poll-interval-seconds", "0")
    try:
        with a.client() as ca, b.client() as cb:
            first = ca.predict(X[:100], model="digits")
            wait_for(lambda: logged(a, 100))
            got = cb.feedback(first.prediction_ids, y[:100], model="digits")
            assert got.accepted == 100, got.outcomes
            assert cb.feedback(first.prediction_ids[:3], y[:3], model="digits").outcomes == ["DUPLICATE"] * 3
            assert ca.feedback(first.prediction_ids[3:6], y[3:6], model="digits").outcomes == ["DUPLICATE"] * 3
            # The fleet's report: B tells about feedback that B joined to A's predictions.
            assert ca.calibration("digits").observed.rows == 100

            second = ca.predict(X[100:200], model="digits")
            wait_for(lambda: logged(a, 200))
        assert a.stop(signal.SIGKILL) == -signal.SIGKILL
        with b.client() as cb:
            late = cb.feedback(second.prediction_ids, y[100:200], model="digits")
            assert late.accepted == 100, late.outcomes
            made_elsewhere = "00000001" + "0" * 24  # made in 1970: older than the log keeps anything
            assert cb.feedback([made_elsewhere], [1], model="digits").outcomes == ["EXPIRED"]
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 200
            stored = dict(conn.execute("SELECT prediction_id, probabilities FROM feedback").fetchall())
            # The log keeps logits only; B re-derived what A served through the version's calibrator.
            assert conn.execute("SELECT MAX(length(probabilities)) FROM prediction_log").fetchone()[0] == 0
        served = dict(zip(first.prediction_ids + second.prediction_ids,
                          np.vstack([first.probabilities, second.probabilities]), strict=True))  # fmt: skip
        for pid, blob in stored.items():
            np.testing.assert_allclose(np.frombuffer(blob, "<f4"), served[pid], atol=1e-6)
    finally:
        a.stop(signal.SIGKILL)
        b.stop()


def sharpen(repo) -> None:
    """Halve v1's fitted temperature in place: overconfident, so a refit on feedback must help."""
    v1 = repo / "digits/1"
    m = read_manifest(v1 / "candor.json")
    sharp = m.temperature.value[0] / 2
    set_temperature(v1 / "model.onnx", v1 / "sharp.onnx", sharp)
    (v1 / "sharp.onnx").replace(v1 / "model.onnx")
    t = m.temperature
    write_manifest(m.replace(temperature=type(t)([sharp], False, "test", False, t.bounds),
                             model_sha256=sha256_file(v1 / "model.onnx")), v1 / "candor.json")  # fmt: skip


def test_recalibration_fits_on_the_fleet_and_runs_once(served_repo, pg_url, labelled):
    X, y = labelled
    sharpen(served_repo)
    a = replica(served_repo, pg_url, "a", "--poll-interval-seconds", "1")
    b = replica(served_repo, pg_url, "b", "--poll-interval-seconds", "1")
    try:
        with a.client() as ca, b.client() as cb:
            for client, rows in ((ca, slice(0, 150)), (cb, slice(150, 300))):
                r = client.predict(X[rows], model="digits")
                assert client.feedback(r.prediction_ids, y[rows], model="digits").accepted == 150
            dry = cb.recalibrate("digits", 1, dry_run=True)
            assert dry.fit_rows + dry.holdout_rows == 300  # A's rows and B's

            outcomes: list[object] = []

            def call(client):
                try:
                    outcomes.append(client.recalibrate("digits", 1, min_rows=50, holdout_share=0.5))
                except (Aborted, FailedPrecondition) as e:
                    outcomes.append(e)

            threads = [threading.Thread(target=call, args=(c,)) for c in (ca, cb, ca, cb)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        published = [o for o in outcomes if not isinstance(o, Exception) and o.published]
        others = [o for o in outcomes if isinstance(o, Exception)]
        # One refit ran: an identical call on the same replica meanwhile shares its answer.
        assert {o.new_version for o in published} == {"2"} and len(published) + len(others) == 4, outcomes
        # A call that overlapped the running refit on the other replica is ABORTED naming it; one
        # that came after it is told that version 1 was already recalibrated.
        assert all("already running" in e.message if isinstance(e, Aborted) else "already recalibrated into version 2"
                   in e.message for e in others)  # fmt: skip
        assert sorted(p.name for p in (served_repo / "digits").iterdir()) == ["1", "2"]
        for server in (a, b):  # every replica serves it within its poll interval
            with server.client() as c:
                wait_for(lambda c=c: c.predict(X[:1], model="digits").version == "2", timeout=15)
    finally:
        a.stop()
        b.stop()


def test_losing_the_database_degrades_feedback_only_and_recovers(served_repo, postgres, labelled):
    X, y = labelled
    url = postgres.new_database()
    server = replica(served_repo, url, "a", "--poll-interval-seconds", "0", "--store-timeout-seconds", "2")
    try:
        with server.client() as c:
            before = c.predict(X[:20], model="digits")
            assert c.feedback(before.prediction_ids[:10], y[:10], model="digits").accepted == 10
            assert c.health(STORE_HEALTH) == "SERVING"
            postgres.stop()
            try:
                during = c.predict(X[20:40], model="digits")  # Predict goes on
                assert during.probabilities.shape == (20, 10)
                with pytest.raises(Unavailable, match="nothing from this batch was stored"):
                    c.feedback(before.prediction_ids[10:], y[10:20], model="digits")
                wait_for(lambda: c.health(STORE_HEALTH) == "NOT_SERVING")
                assert server.metric("candor_feedback_store_up") == 0
            finally:
                postgres.start()
            wait_for(lambda: c.health(STORE_HEALTH) == "SERVING", timeout=30)  # by itself, no traffic needed
            again = c.feedback(before.prediction_ids, y[:20], model="digits")  # the refused batch, resent
            assert again.outcomes == ["DUPLICATE"] * 10 + ["ACCEPTED"] * 10
            # Rows predicted while the database was down were cached here, so they still join.
            assert c.feedback(during.prediction_ids, y[20:40], model="digits").accepted == 20
            assert server.metric("candor_prediction_log_dropped_rows_total", reason="store_error") >= 0
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 40  # no acknowledged row lost
    finally:
        server.stop()


def test_store_setting_errors_stop_the_start_with_one_line(served_repo, postgres):
    cases = [
        ("mysql://x@y/z", "store must be empty (SQLite under data_dir), sqlite:///PATH or postgresql://"),
        ("postgresql://candor:pw@127.0.0.1:notaport/db", "store: the port of the PostgreSQL URL is not a number"),
        (postgres.url(password="wrong-password"), "password authentication failed"),
    ]
    for url, message in cases:
        done = run_candor("serve", "--model-repository", str(served_repo), "--grpc-port", "0", "--metrics-port", "0",
                          "--store", url, "--store-timeout-seconds", "2", timeout=60)  # fmt: skip
        errors = [line for line in done.stderr.splitlines() if "candor serve: error" in line]
        assert done.returncode == 2 and len(errors) == 1 and message in errors[0], done.stderr
        assert "wrong-password" not in done.stderr and "Traceback" not in done.stderr


def test_store_optional_starts_degraded_and_connects_when_the_database_appears(served_repo, postgres, labelled):
    X, y = labelled
    url = postgres.new_database()
    postgres.stop()
    try:
        server = replica(served_repo, url, "a", "--poll-interval-seconds", "0", "--store-optional",
                         "--store-timeout-seconds", "1")
    finally:
        postgres.start()
    try:
        with server.client() as c:
            result = c.predict(X[:5], model="digits")
            wait_for(lambda: c.health(STORE_HEALTH) == "SERVING", timeout=30)
            assert c.feedback(result.prediction_ids, y[:5], model="digits").accepted == 5
    finally:
        server.stop()
    assert np.isfinite(result.probabilities).all()
