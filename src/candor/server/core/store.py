"""The feedback store interface: what the core needs from durable storage of joined labels.

Backends live in :mod:`candor.server.store` (SQLite, embedded). A backend raises
:class:`StoreError` for any failure to read or write, so the core handles every backend's
faults the same way, and it never acknowledges a row it has not made durable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class StoreError(Exception):
    """The store could not complete an operation; nothing of a failed write was kept."""


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


class FeedbackStore(Protocol):
    def insert(self, rows: list[FeedbackRow]) -> list[bool]:
        """Insert all of ``rows`` in one transaction; per row, False if its id already had feedback."""

    def known(self, prediction_ids: list[str]) -> set[str]:
        """The ids among ``prediction_ids`` that already have feedback."""

    def recent(self, limit: int, since: float) -> list[FeedbackRow]:
        """The newest ``limit`` rows per (model, version) received after ``since``, oldest first."""

    def rows_for(self, model: str, version: int) -> list[FeedbackRow]:
        """Every stored row of one model version, oldest first."""

    def count(self) -> int: ...

    def close(self) -> None: ...
