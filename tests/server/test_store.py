"""The store contract, run against both backends: SQLite (a real file) and PostgreSQL (a real
cluster, one fresh database per test). Plus what only one backend has: SQLite's migration
of stores made before the prediction log, PostgreSQL's URL and connection errors."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest

from candor.server.core.predictions import new_request_id
from candor.server.core.store import SCHEMA_VERSION, FeedbackRow, LoggedRequest, StoreBusy, StoreError
from candor.server.store.postgres import PostgresStore
from candor.server.store.sqlite import SQLiteStore


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request, tmp_path):
    """A function opening the test's store (again, as another replica or after a restart)."""
    if request.param == "sqlite":
        path = tmp_path / "store.sqlite3"
        opened = lambda: SQLiteStore(path)  # noqa: E731
    else:
        url = request.getfixturevalue("pg_url")
        opened = lambda: PostgresStore(url)  # noqa: E731
    stores = []

    def make():
        stores.append(opened())
        return stores[-1]

    yield make
    for s in stores:
        s.close()


def request_of(n: int, k: int = 3, model: str = "m", version: int = 1, at: float | None = None) -> LoggedRequest:
    rng = np.random.default_rng(n)
    logits = rng.normal(size=(n, k)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    at = time.time() if at is None else at
    return LoggedRequest(new_request_id(at), model, version, at, probs.astype(np.float32), logits)


def row(pid: str, label: int = 0, version: int = 1, received: float = 1000.0, logits: bool = True) -> FeedbackRow:
    probs = np.array([0.7, 0.2, 0.1], np.float32)
    return FeedbackRow(pid, "m", version, label, probs, probs * 3 if logits else None, received - 5, received)


def test_the_prediction_log_keeps_requests_whole_and_purges_by_age(open_store):
    store = open_store()
    old, new = request_of(4, at=1000.0), request_of(2)
    store.log_predictions([old, new])
    store.log_predictions([new])  # a request logged twice keeps its first copy
    got = store.logged([old.request_id, new.request_id, "0" * 24])
    assert set(got) == {old.request_id, new.request_id}
    assert got[old.request_id].probabilities is None  # logits only (schema 4): the join re-derives what was served
    np.testing.assert_array_equal(got[old.request_id].logits, old.logits)
    assert got[old.request_id].rows == 4
    assert (got[old.request_id].model, got[old.request_id].version, got[old.request_id].at) == ("m", 1, 1000.0)
    assert store.purge(before=2000.0) == 1
    assert set(store.logged([old.request_id, new.request_id])) == {new.request_id}
    # Another replica (another connection) reads the same log.
    assert set(open_store().logged([new.request_id])) == {new.request_id}


def test_recent_reads_one_versions_newest_requests_up_to_a_row_count_oldest_first_and_the_last_ones_time(open_store):
    store = open_store()
    at = [request_of(3, at=1000.0 + i) for i in range(5)]
    other = dataclasses.replace(request_of(9, at=1010.0), version=2)
    store.log_predictions([*at, other])
    reader = open_store()  # another replica reads what this one logged
    assert [q.request_id for q in reader.recent("m", 1)] == [q.request_id for q in at]
    # 7 rows: the newest two requests hold 6, the third crosses the count and is kept
    assert [q.at for q in reader.recent("m", 1, rows=7)] == [1002.0, 1003.0, 1004.0]
    assert [q.at for q in reader.recent("m", 1, rows=6)] == [1003.0, 1004.0]
    assert [q.at for q in reader.recent("m", 1, since=1003.0)] == [1003.0, 1004.0]
    assert [q.rows for q in reader.recent("m", 2)] == [9] and reader.recent("n", 1) == []
    np.testing.assert_array_equal(reader.recent("m", 1, rows=1)[0].logits, at[-1].logits)
    # The newest request of a version, whichever replica logged it; None for a version with none.
    assert reader.last_prediction("m", 1) == 1004.0 and reader.last_prediction("m", 2) == 1010.0
    assert reader.last_prediction("m", 3) is None and reader.last_prediction("n", 1) is None


def test_feedback_insert_is_per_row_once_and_reads_back_newest_first_window(open_store):
    store = open_store()
    assert store.insert([row("a", received=1000), row("b", received=1001, logits=False), row("a", received=1002)]) == [
        True, True, False]  # fmt: skip
    assert store.insert([row("a"), row("c", received=1003)]) == [False, True]
    assert store.known(["a", "c", "zz"]) == {"a", "c"} and store.count() == 3
    rows = store.feedback("m", 1)
    assert [r.prediction_id for r in rows] == ["a", "b", "c"]
    assert rows[1].logits is None and rows[0].logits.tolist() == pytest.approx([2.1, 0.6, 0.3])
    assert [r.prediction_id for r in store.feedback("m", 1, since=1001)] == ["b", "c"]
    assert [r.prediction_id for r in store.feedback("m", 1, limit=2)] == ["b", "c"]  # the newest two, oldest first
    assert store.feedback("m", 2) == [] and store.feedback("other", 1) == []


def test_a_failed_batch_leaves_nothing_behind(open_store):
    store = open_store()
    bad = FeedbackRow("y", "m", 1, 0, np.zeros(3, np.float32), None, 1.0, None)  # received_at is NOT NULL
    with pytest.raises(StoreError):
        store.insert([row("x"), bad])
    assert store.known(["x"]) == set() and store.count() == 0


def test_one_recalibration_lock_per_model_across_replicas(open_store):
    a, b = open_store(), open_store()
    held = a.lock_recalibration("digits", "replica-a pid 1")
    with pytest.raises(StoreBusy, match=r"already running \(replica-a pid 1, since"):
        b.lock_recalibration("digits", "replica-b pid 2")
    other = b.lock_recalibration("other-model", "replica-b pid 2")  # per model
    held.release()
    held.release()  # twice is harmless
    b.lock_recalibration("digits", "replica-b pid 2").release()
    other.release()


def test_concurrent_lockers_get_exactly_one_lock(open_store):
    stores = [open_store() for _ in range(4)]
    results: list[str] = []
    held = []  # a lock is held while referenced: dropping it closes its connection, and PostgreSQL frees it
    barrier = threading.Barrier(len(stores))

    def take(store, i):
        barrier.wait()
        try:
            held.append(store.lock_recalibration("digits", f"caller {i}"))
            results.append("locked")
        except StoreBusy:
            results.append("busy")

    threads = [threading.Thread(target=take, args=(s, i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["busy"] * 3 + ["locked"]


def test_reopening_keeps_everything_and_a_newer_schema_is_refused(open_store, tmp_path, request):
    store = open_store()
    store.insert([row("a")])
    store.close()
    assert open_store().count() == 1  # migrations are idempotent: nothing re-created, nothing lost
    if request.node.callspec.params["open_store"] == "sqlite":
        with sqlite3.connect(tmp_path / "store.sqlite3") as db:
            db.execute("UPDATE candor_schema SET version = ?", (SCHEMA_VERSION + 1,))
    else:
        with psycopg.connect(request.getfixturevalue("pg_url"), autocommit=True) as conn:
            conn.execute("UPDATE candor_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this server understands"):
        open_store()


def test_client_recorded_rows_are_kept_apart_and_older_stores_are_backfilled(open_store, tmp_path, request):
    store = open_store()
    served, client = row("s", received=1000.0), FeedbackRow("client:c", "m", 1, 0, np.full(3, 1 / 3, np.float32), None,
                                                            1001.0, 1001.0, client_recorded=True)  # fmt: skip
    assert store.insert([served, client]) == [True, True]
    assert [(r.prediction_id, r.client_recorded) for r in store.feedback("m", 1)] == [("s", False), ("client:c", True)]
    assert [r.prediction_id for r in store.feedback("m", 1, served_only=True)] == ["s"]
    assert [r.prediction_id for r in store.feedback("m", 1, limit=1, served_only=True)] == ["s"]  # the limit counts served rows
    store.close()
    # A store as schema 2 left it: no client_recorded column; a client-recorded row had predicted_at == received_at.
    if request.node.callspec.params["open_store"] == "sqlite":
        with sqlite3.connect(tmp_path / "store.sqlite3") as db:
            db.execute("ALTER TABLE feedback DROP COLUMN client_recorded")
            db.execute("UPDATE candor_schema SET version = 2")
    else:
        with psycopg.connect(request.getfixturevalue("pg_url"), autocommit=True) as conn:
            conn.execute("ALTER TABLE feedback DROP COLUMN client_recorded")
            conn.execute("UPDATE candor_schema SET version = 2")
    again = open_store()
    assert [(r.prediction_id, r.client_recorded) for r in again.feedback("m", 1)] == [("s", False), ("client:c", True)]


def test_sqlite_stores_from_before_the_prediction_log_are_migrated(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # the version-1 layout: the feedback table alone
        db.execute("CREATE TABLE feedback (prediction_id TEXT PRIMARY KEY, model TEXT NOT NULL, version INTEGER NOT NULL, "
                   "label INTEGER NOT NULL, probabilities BLOB NOT NULL, logits BLOB, predicted_at REAL NOT NULL, "
                   "received_at REAL NOT NULL)")  # fmt: skip
        db.execute("INSERT INTO feedback VALUES ('old', 'm', 1, 2, ?, NULL, 1.0, 2.0)", (np.ones(3, "<f4").tobytes(),))
    store = SQLiteStore(path)
    try:
        assert [r.prediction_id for r in store.feedback("m", 1)] == ["old"]
        store.log_predictions([request_of(2)])
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT version FROM candor_schema").fetchone()[0] == SCHEMA_VERSION
    finally:
        store.close()


def test_postgres_url_and_connection_errors_are_one_clear_line(postgres):
    with pytest.raises(ValueError, match="store: the port of the PostgreSQL URL is not a number"):
        PostgresStore("postgresql://candor:x@127.0.0.1:notaport/db")
    with pytest.raises(ValueError, match="store: not a valid PostgreSQL URL"):
        PostgresStore("postgresql://candor:x@127.0.0.1:5432/db?nosuchoption=1")
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"PostgreSQL 127\.0\.0\.1:\d+/postgres") as wrong:
        PostgresStore(postgres.url(password="wrong"), timeout_s=2)
    assert "wrong" not in str(wrong.value) and time.monotonic() - started < 30
    with pytest.raises(StoreError, match="Connection refused"):
        PostgresStore("postgresql://candor:x@127.0.0.1:1/db", timeout_s=1)
    degraded = PostgresStore("postgresql://candor:x@127.0.0.1:1/db", timeout_s=1, wait=False)
    try:
        with pytest.raises(StoreError, match="cannot be reached"):
            degraded.ping()
    finally:
        degraded.close()


def _open_at_once(path: str, barrier, results) -> None:
    barrier.wait()
    try:
        SQLiteStore(Path(path)).close()
        results.put("ok")
    except StoreError as e:
        results.put(str(e))


def test_processes_opening_one_fresh_sqlite_store_at_once_all_open_it(tmp_path):
    """Workers of `--workers N` start together on one new store: switching a new file to WAL answers
    "database is locked" to all but one at once, without SQLite's busy timeout, so opening waits."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    for trial in range(4):
        path = tmp_path / str(trial) / "feedback.sqlite3"
        barrier, results = context.Barrier(6), context.Queue()
        procs = [context.Process(target=_open_at_once, args=(str(path), barrier, results)) for _ in range(6)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        assert [results.get(timeout=10) for _ in procs] == ["ok"] * 6
