"""The store interface: what the core needs from durable storage.

A store holds two things for every replica that shares it:

* the **prediction log**: one entry per Predict request that kept ids for feedback (model,
  version, time and the raw logits of every row; the probabilities served are the version's
  calibrator applied to them, re-derived when a label arrives), written in batches off the
  request path, kept for the retention the server is configured with;
* the **joined feedback**: one row per labelled prediction, durable before ACCEPTED.

Backends live in :mod:`candor.server.store`: SQLite (embedded, one process) and PostgreSQL
(a fleet of replicas). A backend raises :class:`StoreError` for any failure to read or write,
so the core handles every backend's faults the same way; nothing of a failed write is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

# Version 1: the feedback table alone (SQLite stores made before the prediction log).
# Version 2: the prediction log and the recalibration runs table.
# Version 3: feedback.client_recorded (rows whose outputs the caller sent rather than the server served).
# Version 4: the prediction log keeps the logits only (its probabilities column holds an empty value); no DDL,
# but a server of version 3 would misread such entries, so it must refuse the store.
# Version 5: an index of the prediction log by (model, version, predicted_at).
SCHEMA_VERSION = 5


class StoreError(Exception):
    """The store could not complete an operation; nothing of a failed write was kept."""


class StoreFull(StoreError):
    """The store refused a write for lack of room: a full disk or database file, or a cap on it."""


class StoreBusy(StoreError):
    """A lock is held elsewhere; the message names who holds it."""


@dataclass(frozen=True)
class FeedbackRow:
    prediction_id: str
    model: str
    version: int
    label: int
    probabilities: np.ndarray  # [K] as served
    logits: np.ndarray | None  # [K] raw; None when the caller sent only probabilities
    predicted_at: float  # unix seconds
    received_at: float
    client_recorded: bool = False  # the caller sent the outputs; no served prediction stands behind the row

    @property
    def finite(self) -> bool:
        return bool(np.isfinite(self.probabilities).all() and (self.logits is None or np.isfinite(self.logits).all()))


def finite_rows(rows: Sequence[FeedbackRow]) -> list[FeedbackRow]:
    """``rows`` without those whose outputs are NaN or infinite (stored by servers older than the check)."""
    return [r for r in rows if r.finite]


@dataclass(frozen=True)
class LoggedRequest:
    """One Predict request's outputs, as the prediction log keeps them."""

    request_id: str  # the first 24 hex digits every prediction id of the request shares
    model: str
    version: int
    at: float  # unix seconds
    probabilities: np.ndarray | None  # [N, K] float32, as served; None as read from the store (re-derived from logits)
    logits: np.ndarray  # [N, K] float32, raw

    @property
    def rows(self) -> int:
        return len(self.logits)


class RecalibrationLock(Protocol):
    def release(self) -> None: ...


class Store(Protocol):
    def log_predictions(self, requests: Sequence[LoggedRequest]) -> None:
        """Append requests to the prediction log in one transaction (an id logged twice keeps the first)."""

    def logged(self, request_ids: Sequence[str]) -> dict[str, LoggedRequest]:
        """The logged requests among ``request_ids``."""

    def recent(self, model: str, version: int, *, since: float = 0.0, rows: int | None = None) -> list[LoggedRequest]:
        """The newest logged requests of one version made at or after ``since`` that together hold ``rows``
        rows (None: all; the request that crosses the count is kept), oldest first, from every replica."""

    def last_prediction(self, model: str, version: int) -> float | None:
        """When any replica last logged a request of the version (unix seconds); None if none is logged."""

    def purge(self, before: float) -> int:
        """Drop prediction-log entries made before ``before`` (unix seconds); the number dropped."""

    def insert(self, rows: Sequence[FeedbackRow]) -> list[bool]:
        """Insert all of ``rows`` in one transaction; per row, False if its id already had feedback."""

    def known(self, prediction_ids: Sequence[str]) -> set[str]:
        """The ids among ``prediction_ids`` that already have feedback."""

    def feedback(self, model: str, version: int, *, since: float = 0.0, limit: int | None = None,
                 served_only: bool = False) -> list[FeedbackRow]:  # fmt: skip
        """The newest ``limit`` (None: all) rows of one version received at or after ``since``, oldest first;
        ``served_only``: only rows joined to a prediction the server served (no client-recorded ones)."""

    def lock_recalibration(self, model: str, holder: str) -> RecalibrationLock:
        """Hold the model's recalibration lock (every replica on this store sees it) until ``release()``.
        Raises :class:`StoreBusy` naming the holder when another caller has it."""

    def ping(self) -> None:
        """Raise StoreError unless the store answers."""

    def count(self) -> int:
        """Feedback rows stored."""

    def close(self) -> None: ...


def migrations_to_run(found: int, where: str) -> range:
    """Schema versions to apply to a store at ``found``; refuses a store newer than this server."""
    if found > SCHEMA_VERSION:
        raise StoreError(f"{where} has schema version {found}, newer than this server understands "
                         f"({SCHEMA_VERSION}); upgrade candor on this replica, or point it at another store")  # fmt: skip
    return range(found + 1, SCHEMA_VERSION + 1)


def rows_of(requests: Sequence[LoggedRequest]) -> int:
    return sum(r.rows for r in requests)
