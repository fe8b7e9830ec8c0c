"""Prediction ids, and the recent requests kept in memory in front of the store's prediction log.

A prediction id is 32 hex digits: the request id (8 for the unix second it was made, 16
random) followed by the row's index in its request (8). So one log entry per request serves
every row's id, and feedback for an id no longer anywhere can be told apart: older than the
log's retention is EXPIRED, anything else UNKNOWN_ID.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from candor.server.core.store import LoggedRequest

REQUEST_ID_HEX = 24
ROW_HEX = 8


def new_request_id(now: float | None = None) -> str:
    """24 hex digits: 8 for the unix second, 16 random (64 bits per second across a fleet)."""
    return f"{int(time.time() if now is None else now) & 0xFFFFFFFF:08x}{os.urandom(8).hex()}"


def prediction_ids(request_id: str, n: int) -> list[str]:
    return [f"{request_id}{i:08x}" for i in range(n)]


def new_prediction_ids(n: int, now: float | None = None) -> list[str]:
    """The ids of one new request of ``n`` rows."""
    return prediction_ids(new_request_id(now), n)


def split_id(prediction_id: str) -> tuple[str, int] | None:
    """(request id, row) of one of our ids, or None."""
    if len(prediction_id) != REQUEST_ID_HEX + ROW_HEX:
        return None
    try:
        return prediction_id[:REQUEST_ID_HEX].lower(), int(prediction_id[REQUEST_ID_HEX:], 16)
    except ValueError:
        return None


def id_time(prediction_id: str) -> float | None:
    """The second an id was made, or None if it is not one of ours."""
    if split_id(prediction_id) is None:
        return None
    try:
        return float(int(prediction_id[:8], 16))
    except ValueError:
        return None


@dataclass(frozen=True)
class StoredPrediction:
    model: str
    version: int
    probabilities: np.ndarray  # [K] as served
    logits: np.ndarray  # [K] raw
    at: float  # unix seconds


def row_of(request: LoggedRequest, row: int) -> StoredPrediction | None:
    """The row, or None when it is out of range or its outputs are not finite (logged by a server
    older than the check: such a row must not reach feedback)."""
    if not 0 <= row < request.rows:
        return None
    probs, logits = request.probabilities[row], request.logits[row]
    if not (np.isfinite(probs).all() and np.isfinite(logits).all()):
        return None
    return StoredPrediction(request.model, request.version, probs, logits, request.at)


class PredictionCache:
    """The newest requests, one entry each, bounded by the rows they hold and by age."""

    def __init__(self, max_rows: int, ttl_s: float):
        self.max_rows = max_rows
        self.ttl_s = ttl_s
        self._items: OrderedDict[str, LoggedRequest] = OrderedDict()
        self._rows = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Rows held."""
        return self._rows

    def add(self, request: LoggedRequest) -> None:
        with self._lock:
            self._items[request.request_id] = request
            self._rows += request.rows
            self._evict(request.at)

    def _evict(self, now: float) -> None:
        items = self._items
        while items:
            oldest = next(iter(items.values()))
            if self._rows > self.max_rows or now - oldest.at > self.ttl_s:
                items.popitem(last=False)
                self._rows -= oldest.rows
            else:
                break

    def get(self, prediction_id: str) -> StoredPrediction | None:
        parts = split_id(prediction_id)
        if parts is None:
            return None
        with self._lock:
            request = self._items.get(parts[0])
        return None if request is None else row_of(request, parts[1])

    def expired(self, prediction_id: str, now: float | None = None) -> bool:
        """True if the id is ours and older than the log keeps predictions."""
        made = id_time(prediction_id)
        now = time.time() if now is None else now
        return made is not None and now - made > self.ttl_s
