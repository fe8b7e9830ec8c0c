"""Recent predictions kept in memory so that feedback can join them by id.

Bounded by rows and by age. A prediction id starts with the second it was
made (8 hex digits), so feedback for an id that is no longer here can be told
apart: older than what the store keeps is EXPIRED, anything else UNKNOWN.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


def new_prediction_ids(n: int, now: float | None = None) -> list[str]:
    """``n`` ids of 32 hex digits: 8 for the unix second, 24 random (96 bits)."""
    stamp = f"{int(time.time() if now is None else now) & 0xFFFFFFFF:08x}"
    text = os.urandom(12 * n).hex()
    return [stamp + text[i : i + 24] for i in range(0, 24 * n, 24)]


def id_time(prediction_id: str) -> float | None:
    """The second an id was made, or None if it is not one of ours."""
    if len(prediction_id) != 32:
        return None
    try:
        int(prediction_id, 16)
        return float(int(prediction_id[:8], 16))
    except ValueError:
        return None


@dataclass(frozen=True)
class _Request:
    """One Predict call's outputs, shared by its rows' entries (no per-row copies)."""

    model: str
    version: int
    probabilities: np.ndarray  # [N, K]
    logits: np.ndarray  # [N, K]
    at: float


@dataclass(frozen=True)
class StoredPrediction:
    model: str
    version: int
    probabilities: np.ndarray  # [K] as served
    logits: np.ndarray  # [K] raw
    at: float  # unix seconds


class PredictionStore:
    def __init__(self, max_rows: int, ttl_s: float):
        self.max_rows = max_rows
        self.ttl_s = ttl_s
        self._items: OrderedDict[str, tuple[_Request, int]] = OrderedDict()
        self._oldest_evicted = 0.0  # newest time of anything dropped for room
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def add(
        self, model: str, version: int, ids: list[str], logits: np.ndarray, probs: np.ndarray, now: float | None = None
    ) -> None:
        now = time.time() if now is None else now
        request = _Request(model, version, probs, logits, now)
        with self._lock:
            self._items.update(zip(ids, ((request, i) for i in range(len(ids))), strict=True))
            self._evict(now)

    def _evict(self, now: float) -> None:
        items = self._items
        while items:
            oldest, _ = next(iter(items.values()))
            if len(items) > self.max_rows or now - oldest.at > self.ttl_s:
                items.popitem(last=False)
                self._oldest_evicted = max(self._oldest_evicted, oldest.at)
            else:
                break

    def get(self, prediction_id: str) -> StoredPrediction | None:
        with self._lock:
            found = self._items.get(prediction_id)
        if found is None:
            return None
        r, i = found
        return StoredPrediction(r.model, r.version, r.probabilities[i], r.logits[i], r.at)

    def remove(self, prediction_ids: list[str]) -> None:
        with self._lock:
            for pid in prediction_ids:
                self._items.pop(pid, None)

    def expired(self, prediction_id: str, now: float | None = None) -> bool:
        """True if the id is ours and older than what the store still holds."""
        made = id_time(prediction_id)
        if made is None:
            return False
        now = time.time() if now is None else now
        # Ids carry whole seconds: anything made in a second that was evicted counts as gone.
        return now - made > self.ttl_s or made <= int(self._oldest_evicted)
