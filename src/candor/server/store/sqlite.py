"""The embedded store: SQLite in WAL mode under the data directory, for one process.

Every write commits before the caller is told ACCEPTED, so a restart loses no acknowledged
row. One connection, guarded by a lock. The recalibration lock is a file lock next to the
database. Implements :class:`candor.server.core.store.Store`; every sqlite3 error leaves as
:class:`~candor.server.core.store.StoreError`.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from candor.server.core.store import FeedbackRow, LoggedRequest, StoreError, StoreFull, migrations_to_run
from candor.server.store.rows import (
    BACKFILL_CLIENT_RECORDED,
    FEEDBACK_COLUMNS,
    LAST_PREDICTION,
    LOG_COLUMNS,
    NO_ROW_LIMIT,
    RECENT_LOG,
    busy,
    feedback_params,
    feedback_row,
    log_params,
    logged_request,
)

MIGRATIONS = {
    1: """
        CREATE TABLE IF NOT EXISTS feedback (
            prediction_id TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            version INTEGER NOT NULL,
            label INTEGER NOT NULL,
            probabilities BLOB NOT NULL,   -- float32 [K], as served
            logits BLOB,                   -- float32 [K], raw, or NULL when the caller sent only probabilities
            predicted_at REAL NOT NULL,
            received_at REAL NOT NULL
        );
        CREATE INDEX IF NOT EXISTS feedback_by_version ON feedback (model, version, received_at);
    """,
    2: """
        CREATE TABLE prediction_log (
            request_id TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            version INTEGER NOT NULL,
            predicted_at REAL NOT NULL,
            num_rows INTEGER NOT NULL,
            num_classes INTEGER NOT NULL,
            probabilities BLOB NOT NULL,   -- float32 [num_rows, num_classes], as served
            logits BLOB NOT NULL           -- float32 [num_rows, num_classes], raw
        );
        CREATE INDEX prediction_log_by_time ON prediction_log (predicted_at);
    """,
    3: f"""
        ALTER TABLE feedback ADD COLUMN client_recorded BOOLEAN NOT NULL DEFAULT FALSE;
        {BACKFILL_CLIENT_RECORDED}
    """,
    # The prediction log keeps logits only from here on (rows.py); nothing to change in the tables.
    4: "",
    # A version's newest logged request (GetCalibration's idle mark) and its recent window (label shift)
    # without scanning the other versions' rows.
    5: "CREATE INDEX IF NOT EXISTS prediction_log_by_version ON prediction_log (model, version, predicted_at)",
}


def _store_errors(method):
    """sqlite3's errors leave as the interface's StoreError."""

    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as e:  # the message reaches callers: no server paths in it
            raise (StoreFull if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL else StoreError)(str(e)) from e

    return wrapped


LOG_INSERT = "INSERT INTO prediction_log VALUES {values} ON CONFLICT (request_id) DO NOTHING"
LOG_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?)"
LOG_ROWS_PER_STATEMENT = 256  # 2,048 parameters, well under SQLite's 32,766


OPEN_WAIT_S = 10.0  # how long opening waits for another process's switch to WAL


class _FileLock:
    def __init__(self, fd: int):
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the file drops the flock
            self._fd = -1


class SQLiteStore:
    def __init__(self, path: Path, max_bytes: int = 0):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._setup(max_bytes)
        except sqlite3.Error as e:
            raise StoreError(f"SQLite {path}: {e}") from e

    def _schema_version(self) -> int:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "candor_schema" in tables:
            return self._db.execute("SELECT version FROM candor_schema").fetchone()[0]
        return 1 if "feedback" in tables else 0  # stores from before the schema table held feedback alone

    def _use_wal(self) -> None:
        """Switch to WAL, waiting while another process does the same. On a new file the switch takes
        an exclusive lock and SQLite answers "database is locked" at once, without its busy timeout:
        two workers starting on one fresh store raced there."""
        deadline = time.monotonic() + OPEN_WAIT_S
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _setup(self, max_bytes: int) -> None:
        self._use_wal()
        self._db.execute("PRAGMA synchronous=FULL")  # an acknowledged row survives power loss too
        self._db.execute("BEGIN IMMEDIATE")  # one migrator at a time, all of a migration or none
        try:
            found = self._schema_version()
            todo = migrations_to_run(found, f"SQLite store {self.path.name}")  # refuses before writing anything
            if found < 2:
                self._db.execute("CREATE TABLE IF NOT EXISTS candor_schema (version INTEGER NOT NULL)")
                self._db.execute("INSERT INTO candor_schema VALUES (?)", (found,))
            for version in todo:
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute("UPDATE candor_schema SET version = ?", (version,))
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        if max_bytes:
            # A cap on the file: past it every write fails with SQLITE_FULL, exactly as on a full disk.
            page = self._db.execute("PRAGMA page_size").fetchone()[0]
            self._db.execute(f"PRAGMA max_page_count = {max(1, max_bytes // page)}")

    def _statements(self, statements: list[tuple[str, list]], durable: bool) -> None:
        """Run each (statement, parameters) once, all in one transaction."""
        with self._lock:
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement, params in statements:
                    self._db.execute(statement, params)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # see _transaction
                    self._db.execute("ROLLBACK")
                raise
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")

    def _transaction(self, statement: str, params: list[tuple], counts: bool = True, durable: bool = True) -> list[int]:
        """Run ``statement`` once per parameter tuple in one transaction; the rows each changed
        (``counts`` False: not counted, and run as one executemany). ``durable`` False: the commit is not
        synced to disk (WAL with synchronous=NORMAL): it survives the process dying, and only a power loss
        can take it back, with the newest such commits only; the database stays consistent either way."""
        changed = []
        with self._lock:
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if counts:
                    changed = [self._db.execute(statement, p).rowcount for p in params]
                else:
                    self._db.executemany(statement, params)
                self._db.execute("COMMIT")
            except BaseException:
                # SQLite rolls back by itself on some errors (SQLITE_FULL among them); a second
                # ROLLBACK would then fail and hide the real error.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")
        return changed

    @_store_errors
    def log_predictions(self, requests: Sequence[LoggedRequest]) -> None:
        # Multi-row INSERTs of up to LOG_ROWS_PER_STATEMENT requests: sqlite3 lets go of the GIL around each
        # statement's step and takes it back after, so per-request statements (executemany) made this thread
        # queue for the GIL behind the event loop once per request. Not synced: the log is best-effort already
        # (rows that do not fit the buffer are dropped and counted), and an fsync per flush cost more CPU than
        # the rows' own writing at 256-row requests (docs/benchmarks.md).
        params = [log_params(q) for q in requests]
        chunks = [params[i : i + LOG_ROWS_PER_STATEMENT] for i in range(0, len(params), LOG_ROWS_PER_STATEMENT)]
        statements = [(LOG_INSERT.format(values=", ".join([LOG_VALUES] * len(c))), [v for row in c for v in row])
                      for c in chunks]  # fmt: skip
        self._statements(statements, durable=False)

    def _select_in(self, sql: str, keys: Sequence[str]) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql.format(marks=",".join("?" * len(keys))), list(keys)).fetchall()

    @_store_errors
    def logged(self, request_ids: Sequence[str]) -> dict[str, LoggedRequest]:
        if not request_ids:
            return {}
        rows = self._select_in(f"SELECT {LOG_COLUMNS} FROM prediction_log WHERE request_id IN ({{marks}})", request_ids)
        return {r[0]: logged_request(r) for r in rows}

    @_store_errors
    def recent(self, model: str, version: int, *, since: float = 0.0, rows: int | None = None) -> list[LoggedRequest]:
        with self._lock:
            found = self._db.execute(RECENT_LOG.format(mark="?"),
                                     (model, version, since, NO_ROW_LIMIT if rows is None else rows)).fetchall()  # fmt: skip
        return [logged_request(r) for r in found]

    @_store_errors
    def last_prediction(self, model: str, version: int) -> float | None:
        with self._lock:
            return self._db.execute(LAST_PREDICTION.format(mark="?"), (model, version)).fetchone()[0]

    @_store_errors
    def purge(self, before: float) -> int:
        return self._transaction("DELETE FROM prediction_log WHERE predicted_at < ?", [(before,)])[0]

    @_store_errors
    def insert(self, rows: Sequence[FeedbackRow]) -> list[bool]:
        # ON CONFLICT on the key alone: OR IGNORE would also skip a row that breaks NOT NULL, and call it a duplicate.
        changed = self._transaction(f"INSERT INTO feedback ({FEEDBACK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                                    "ON CONFLICT (prediction_id) DO NOTHING",
                                    [feedback_params(r) for r in rows])  # fmt: skip
        return [n == 1 for n in changed]

    @_store_errors
    def known(self, prediction_ids: Sequence[str]) -> set[str]:
        if not prediction_ids:
            return set()
        rows = self._select_in("SELECT prediction_id FROM feedback WHERE prediction_id IN ({marks})", prediction_ids)
        return {r[0] for r in rows}

    @_store_errors
    def feedback(self, model: str, version: int, *, since: float = 0.0, limit: int | None = None,
                 served_only: bool = False) -> list[FeedbackRow]:  # fmt: skip
        served = " AND NOT client_recorded" if served_only else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM (SELECT {FEEDBACK_COLUMNS} FROM feedback WHERE model = ? AND version = ? "
                f"AND received_at >= ?{served} ORDER BY received_at DESC, prediction_id DESC LIMIT ?) "
                "ORDER BY received_at, prediction_id",
                (model, version, since, -1 if limit is None else limit),
            ).fetchall()
        return [feedback_row(r) for r in rows]

    def lock_recalibration(self, model: str, holder: str) -> _FileLock:
        name = hashlib.sha256(model.encode()).hexdigest()[:16]
        path = self.path.with_name(f"{self.path.name}.recalibrate-{name}.lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"cannot open the recalibration lock file: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            running = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise busy(model, running) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder}, since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}".encode(), 0)
        return _FileLock(fd)

    @_store_errors
    def ping(self) -> None:
        with self._lock:
            self._db.execute("SELECT 1").fetchone()

    @_store_errors
    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
