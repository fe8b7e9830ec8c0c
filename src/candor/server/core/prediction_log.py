"""The prediction log's writer: requests kept for feedback reach the store in batches, on a
thread of their own, never on the request path.

Predict only appends to a bounded buffer. When the store is slow or down the buffer fills,
and rows that do not fit, or whose batch the store refused, are dropped and counted rather
than slowing or failing Predict; the in-memory cache still joins them on this replica. While
the store fails, the writer pings it, so health recovers without traffic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from candor.server.core.events import PredictionLogDropped, PredictionsLogged
from candor.server.core.store import LoggedRequest, Store, StoreError, rows_of
from candor.server.core.store_health import LOG, PING, StoreHealth

log = logging.getLogger("candor.server")
FLUSH_ROWS = 8192  # a batch this large is written at once rather than at the next tick (fewer, larger transactions)
FLUSH_INTERVAL_S = 0.1  # otherwise the buffer is written this often
PING_INTERVAL_S = 1.0  # while the store fails
PURGE_INTERVAL_S = 60.0


class PredictionLog:
    def __init__(self, store: Store, health: StoreHealth, notify: Callable[[object], None], *, max_buffer_rows: int,
                 retention_s: float, flush_interval_s: float = FLUSH_INTERVAL_S):  # fmt: skip
        self.store = store
        self.health = health
        self.notify = notify
        self.max_buffer_rows = max_buffer_rows
        self.retention_s = retention_s
        self.flush_interval_s = flush_interval_s
        self._buffer: list[LoggedRequest] = []
        self._buffered = 0
        self._stopping = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="candor-prediction-log", daemon=True)
        self._thread.start()

    @property
    def buffered_rows(self) -> int:
        return self._buffered

    def add(self, request: LoggedRequest) -> None:
        """Queue one request for the log; never blocks on the store."""
        with self._cond:
            fits = self._buffered + request.rows <= self.max_buffer_rows and not self._stopping
            if fits:
                self._buffer.append(request)
                self._buffered += request.rows
                if self._buffered >= FLUSH_ROWS:
                    self._cond.notify()
        if not fits:
            self.notify(PredictionLogDropped(request.rows, "buffer_full"))

    def _take(self) -> list[LoggedRequest]:
        with self._cond:
            self._cond.wait_for(lambda: self._stopping or self._buffered >= FLUSH_ROWS, timeout=self.flush_interval_s)
            batch, self._buffer, self._buffered = self._buffer, [], 0
            return batch

    def _write(self, batch: list[LoggedRequest]) -> None:
        try:
            self.store.log_predictions(batch)
        except StoreError as e:
            self.health.failed(LOG, e)
            self.notify(PredictionLogDropped(rows_of(batch), "store_error"))
            return
        self.health.succeeded(LOG)
        self.notify(PredictionsLogged(rows_of(batch)))

    def _run(self) -> None:
        last_ping = last_purge = time.monotonic()
        while True:
            batch = self._take()
            if batch:
                self._write(batch)
            now = time.monotonic()
            if not self.health.ok and not batch and now - last_ping >= PING_INTERVAL_S:
                last_ping = now
                try:
                    self.store.ping()
                    self.health.succeeded(PING)
                except StoreError as e:
                    self.health.failed(PING, e)
            if self.health.ok and now - last_purge >= PURGE_INTERVAL_S:
                last_purge = now
                try:
                    self.store.purge(time.time() - self.retention_s)
                except StoreError as e:
                    log.warning("prediction log purge failed: %s", e)
            if self._stopping and not self._buffer:
                return

    def close(self) -> None:
        """Write what is buffered (one last try), then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()
