"""The fleet store: PostgreSQL through psycopg 3 and a psycopg-pool connection pool.

Every replica of a fleet points at the same database, so a label can reach any replica,
recalibration reads the whole fleet's feedback, and a pod's restart loses nothing.

* Writes are single transactions: feedback is committed before the caller is told ACCEPTED,
  and a failed batch leaves nothing behind.
* The schema carries a version (table ``candor_schema``); the first replica to start migrates
  it under a transaction-scoped advisory lock, so replicas starting together do not race.
* The recalibration lock is a session advisory lock on a connection held for the refit: if
  the replica dies, PostgreSQL ends the session and frees the lock.
* Lost connections are replaced by the pool (each borrowed connection is checked first), so
  the store recovers by itself when the database comes back.

Every psycopg and pool error leaves as :class:`~candor.server.core.store.StoreError`, naming
the database by host, port and name only (never the password).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

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
            probabilities BYTEA NOT NULL,        -- float32 [K], as served
            logits BYTEA,                        -- float32 [K], raw, or NULL when the caller sent only probabilities
            predicted_at DOUBLE PRECISION NOT NULL,
            received_at DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX IF NOT EXISTS feedback_by_version ON feedback (model, version, received_at)
    """,
    2: """
        CREATE TABLE prediction_log (
            request_id TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            version INTEGER NOT NULL,
            predicted_at DOUBLE PRECISION NOT NULL,
            num_rows INTEGER NOT NULL,
            num_classes INTEGER NOT NULL,
            probabilities BYTEA NOT NULL,        -- float32 [num_rows, num_classes], as served
            logits BYTEA NOT NULL                -- float32 [num_rows, num_classes], raw
        );
        CREATE INDEX prediction_log_by_time ON prediction_log (predicted_at);
        CREATE TABLE recalibration_runs (
            model TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            started_at DOUBLE PRECISION NOT NULL
        )
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
MIGRATION_LOCK = 0x63616E646F72  # "candor": the advisory lock key schema migrations serialise on
RECALIBRATION_KEY = "hashtextextended('candor.recalibrate:' || %s, 0)"


def describe_url(url: str) -> str:
    """host:port/dbname of a PostgreSQL URL, for messages; ValueError naming the setting when malformed."""
    expected = "expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError as e:
        raise ValueError(f"store: not a valid PostgreSQL URL ({str(e).splitlines()[0]}); {expected}") from None
    if not all(p.strip().isdigit() for p in str(parts.get("port", "5432")).split(",")):
        raise ValueError(f"store: the port of the PostgreSQL URL is not a number; {expected}")
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', parts.get('user', ''))}"


def _store_errors(method):
    """psycopg's and the pool's errors leave as the interface's StoreError."""

    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except PoolTimeout as e:
            raise StoreError(f"PostgreSQL {self.where} cannot be reached ({e})") from e
        except psycopg.Error as e:
            full = isinstance(e, psycopg.errors.DiskFull)  # SQLSTATE 53100: out of disk for the database
            raise (StoreFull if full else StoreError)(f"PostgreSQL {self.where}: {str(e).strip().splitlines()[0]}") from e

    return wrapped


class _AdvisoryLock:
    def __init__(self, pool: ConnectionPool, conn: psycopg.Connection, model: str):
        self._pool, self._conn, self._model = pool, conn, model

    def release(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute(f"SELECT pg_advisory_unlock({RECALIBRATION_KEY})", (self._model,))
        except psycopg.Error:
            pass  # a broken session has dropped its locks already; the pool discards the connection
        finally:
            self._pool.putconn(self._conn)
            self._conn = None


class PostgresStore:
    def __init__(self, url: str, *, timeout_s: float = 5.0, max_connections: int = 4, wait: bool = True):
        """``wait``: connect and migrate now (StoreError when that fails); else start degraded and
        migrate on the first operation that reaches the database."""
        self.where = describe_url(url)
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._pool = ConnectionPool(
            url, min_size=1, max_size=max_connections, open=False, timeout=timeout_s, name="candor-store",
            check=ConnectionPool.check_connection,  # a connection lost while idle is replaced before use
            kwargs={"autocommit": True, "connect_timeout": max(1, round(timeout_s)), "application_name": "candor",
                    # Notice a peer that vanished without closing (a killed node) in seconds, not hours.
                    "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3},
        )  # fmt: skip
        try:
            if wait:
                # One direct attempt first: its error says why (wrong password, no such database),
                # where the pool would only report that it timed out.
                psycopg.connect(url, connect_timeout=max(1, round(timeout_s))).close()
            self._pool.open(wait=wait, timeout=timeout_s)
            if wait:
                self._ensure_schema()
        except PoolTimeout:
            self._pool.close()
            raise StoreError(f"PostgreSQL {self.where} cannot be reached within {timeout_s:g} s "
                             "(check the host, the port, the credentials and that the database exists)") from None  # fmt: skip
        except (psycopg.Error, StoreError) as e:
            self._pool.close()
            raise StoreError(f"PostgreSQL {self.where}: {str(e).strip().splitlines()[0]}") from None

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock, self._pool.connection() as conn, conn.transaction():
            if self._schema_ready:
                return
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            if conn.execute("SELECT to_regclass('candor_schema')").fetchone()[0] is not None:
                found = conn.execute("SELECT version FROM candor_schema").fetchone()[0]
            else:
                found = 1 if conn.execute("SELECT to_regclass('feedback')").fetchone()[0] is not None else 0
                conn.execute("CREATE TABLE candor_schema (version INTEGER NOT NULL)")
                conn.execute("INSERT INTO candor_schema VALUES (%s)", (found,))
            for version in migrations_to_run(found, f"PostgreSQL store {self.where}"):
                for statement in MIGRATIONS[version].split(";"):
                    conn.execute(statement)
                conn.execute("UPDATE candor_schema SET version = %s", (version,))
            self._schema_ready = True

    def _connection(self):
        self._ensure_schema()
        return self._pool.connection()

    @_store_errors
    def log_predictions(self, requests: Sequence[LoggedRequest]) -> None:
        with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            # The log is best-effort (as in SQLite, sqlite.py): its commits need not wait for the WAL flush;
            # a server crash can lose only the newest ones, and feedback stays synchronous.
            cur.execute("SET LOCAL synchronous_commit = off")
            cur.executemany("INSERT INTO prediction_log VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                            [log_params(q) for q in requests])  # fmt: skip

    @_store_errors
    def logged(self, request_ids: Sequence[str]) -> dict[str, LoggedRequest]:
        if not request_ids:
            return {}
        with self._connection() as conn:
            rows = conn.execute(f"SELECT {LOG_COLUMNS} FROM prediction_log WHERE request_id = ANY(%s)",
                                (list(request_ids),)).fetchall()  # fmt: skip
        return {r[0]: logged_request(r) for r in rows}

    @_store_errors
    def recent(self, model: str, version: int, *, since: float = 0.0, rows: int | None = None) -> list[LoggedRequest]:
        with self._connection() as conn:
            found = conn.execute(RECENT_LOG.format(mark="%s"),
                                 (model, version, since, NO_ROW_LIMIT if rows is None else rows)).fetchall()  # fmt: skip
        return [logged_request(r) for r in found]

    @_store_errors
    def last_prediction(self, model: str, version: int) -> float | None:
        with self._connection() as conn:
            return conn.execute(LAST_PREDICTION.format(mark="%s"), (model, version)).fetchone()[0]

    @_store_errors
    def purge(self, before: float) -> int:
        with self._connection() as conn:
            return conn.execute("DELETE FROM prediction_log WHERE predicted_at < %s", (before,)).rowcount

    @_store_errors
    def insert(self, rows: Sequence[FeedbackRow]) -> list[bool]:
        if not rows:
            return []
        columns = list(zip(*(feedback_params(r) for r in rows), strict=True))
        with self._connection() as conn:
            # One statement for the batch: it commits whole or not at all.
            inserted = {r[0] for r in conn.execute(
                f"INSERT INTO feedback ({FEEDBACK_COLUMNS}) SELECT * FROM unnest(%s::text[], %s::text[], %s::int[], "
                "%s::int[], %s::bytea[], %s::bytea[], %s::float8[], %s::float8[], %s::bool[]) "
                "ON CONFLICT (prediction_id) DO NOTHING RETURNING prediction_id",
                [list(c) for c in columns],
            )}  # fmt: skip
        outcome = []
        for r in rows:  # an id twice in one batch: its first item is the one stored
            outcome.append(r.prediction_id in inserted)
            inserted.discard(r.prediction_id)
        return outcome

    @_store_errors
    def known(self, prediction_ids: Sequence[str]) -> set[str]:
        if not prediction_ids:
            return set()
        with self._connection() as conn:
            rows = conn.execute("SELECT prediction_id FROM feedback WHERE prediction_id = ANY(%s)", (list(prediction_ids),))
            return {r[0] for r in rows}

    @_store_errors
    def feedback(self, model: str, version: int, *, since: float = 0.0, limit: int | None = None,
                 served_only: bool = False) -> list[FeedbackRow]:  # fmt: skip
        served = " AND NOT client_recorded" if served_only else ""
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {FEEDBACK_COLUMNS} FROM feedback WHERE model = %s AND version = %s AND received_at >= %s{served} "
                "ORDER BY received_at DESC, prediction_id DESC LIMIT %s",
                (model, version, since, limit),
            ).fetchall()
        return [feedback_row(r) for r in reversed(rows)]

    @_store_errors
    def lock_recalibration(self, model: str, holder: str) -> _AdvisoryLock:
        self._ensure_schema()
        conn = self._pool.getconn()
        lock = _AdvisoryLock(self._pool, conn, model)
        try:
            if not conn.execute(f"SELECT pg_try_advisory_lock({RECALIBRATION_KEY})", (model,)).fetchone()[0]:
                row = conn.execute("SELECT holder, started_at FROM recalibration_runs WHERE model = %s", (model,)).fetchone()
                running = "" if row is None else f"{row[0]}, since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(row[1]))}"
                raise busy(model, running)
            conn.execute("INSERT INTO recalibration_runs VALUES (%s, %s, %s) ON CONFLICT (model) DO UPDATE SET "
                         "holder = excluded.holder, started_at = excluded.started_at", (model, holder, time.time()))  # fmt: skip
        except BaseException:
            lock.release()  # unlocking a lock this session does not hold is harmless
            raise
        return lock

    @_store_errors
    def ping(self) -> None:
        with self._connection() as conn:
            conn.execute("SELECT 1")

    @_store_errors
    def count(self) -> int:
        with self._connection() as conn:
            return conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]

    def close(self) -> None:
        self._pool.close()
