"""The embedded feedback store: SQLite in WAL mode under the data directory.

Every write commits before the caller is told ACCEPTED, so a restart loses no
acknowledged row. One connection, guarded by a lock. Implements
:class:`candor.server.core.store.FeedbackStore`; every sqlite3 error leaves as
:class:`~candor.server.core.store.StoreError`.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from pathlib import Path

import numpy as np

from candor.server.core.store import FeedbackRow, StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    prediction_id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    label INTEGER NOT NULL,
    probabilities BLOB NOT NULL,   -- float32 [K], as served
    logits BLOB,                   -- float32 [K], raw; NULL when the caller sent only probabilities
    predicted_at REAL NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_by_version ON feedback (model, version, received_at);
"""


def _store_errors(method):
    """sqlite3's errors leave as the interface's StoreError, naming the database."""

    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as e:
            raise StoreError(str(e)) from e  # the message reaches callers: no server paths in it

    return wrapped


class SQLiteFeedbackStore:
    def __init__(self, path: Path, max_bytes: int = 0):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._setup(max_bytes)
        except sqlite3.Error as e:
            raise StoreError(f"SQLite {path}: {e}") from e
        self._lock = threading.Lock()

    def _setup(self, max_bytes: int) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an acknowledged row survives power loss too
        self._db.executescript(SCHEMA)
        if max_bytes:
            # A cap on the file: past it every write fails with SQLITE_FULL, exactly as on a full disk.
            page = self._db.execute("PRAGMA page_size").fetchone()[0]
            self._db.execute(f"PRAGMA max_page_count = {max(1, max_bytes // page)}")

    @_store_errors
    def insert(self, rows: list[FeedbackRow]) -> list[bool]:
        """Insert in one transaction; per row, False if the id already had feedback."""
        inserted = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for r in rows:
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO feedback VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (r.prediction_id, r.model, r.version, r.label, r.probabilities.astype("<f4").tobytes(),
                         None if r.logits is None else r.logits.astype("<f4").tobytes(), r.predicted_at, r.received_at),
                    )  # fmt: skip
                    inserted.append(cur.rowcount == 1)
                self._db.execute("COMMIT")
            except BaseException:
                # SQLite rolls back by itself on some errors (SQLITE_FULL among them); a second
                # ROLLBACK would then fail and hide the real error.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return inserted

    @_store_errors
    def known(self, prediction_ids: list[str]) -> set[str]:
        """The ids among ``prediction_ids`` that already have feedback."""
        if not prediction_ids:
            return set()
        with self._lock:
            marks = ",".join("?" * len(prediction_ids))
            rows = self._db.execute(f"SELECT prediction_id FROM feedback WHERE prediction_id IN ({marks})", prediction_ids)
            return {r[0] for r in rows}

    @_store_errors
    def recent(self, limit: int, since: float) -> list[FeedbackRow]:
        """The newest ``limit`` rows per (model, version) received after ``since``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY model, version ORDER BY received_at DESC) AS n "
                "FROM feedback WHERE received_at >= ?) WHERE n <= ? ORDER BY received_at",
                (since, limit),
            ).fetchall()
        return [self._row(r) for r in rows]

    @_store_errors
    def rows_for(self, model: str, version: int) -> list[FeedbackRow]:
        """Every stored row of one model version, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM feedback WHERE model = ? AND version = ? ORDER BY received_at", (model, version)
            ).fetchall()
        return [self._row(r) for r in rows]

    @staticmethod
    def _row(r) -> FeedbackRow:
        logits = None if r[5] is None else np.frombuffer(r[5], "<f4")
        return FeedbackRow(r[0], r[1], r[2], r[3], np.frombuffer(r[4], "<f4"), logits, r[6], r[7])

    @_store_errors
    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
