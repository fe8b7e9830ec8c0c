"""Feedback: ground-truth labels joined to earlier predictions, stored durably,
feeding the label-based signals. Transport-neutral; the servicer maps it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from candor.calibration import scale_logits
from candor.server.core.errors import InvalidArgument, Unavailable
from candor.server.core.events import Events, FeedbackAnswered, StoreHealthChanged, StoreWriteFailed
from candor.server.core.observed import FeedbackWindow
from candor.server.core.predictions import PredictionStore, new_prediction_ids
from candor.server.core.repository import ModelRepository
from candor.server.core.settings import Settings
from candor.server.core.store import FeedbackRow, FeedbackStore, StoreError

FEEDBACK_OUTCOMES = ("ACCEPTED", "DUPLICATE", "EXPIRED", "UNKNOWN_ID")  # what Feedback answers per item
ACCEPTED, DUPLICATE, EXPIRED, UNKNOWN_ID = FEEDBACK_OUTCOMES
log = logging.getLogger("candor.server")


@dataclass(frozen=True)
class FeedbackItem:
    prediction_id: str
    label: int
    probabilities: list[float] = field(default_factory=list)
    logits: list[float] = field(default_factory=list)

    @property
    def self_recorded(self) -> bool:
        return bool(self.probabilities or self.logits)


class FeedbackService:
    """Joins labels to logged predictions, keeps them in ``store``, and feeds the label-based windows.

    The windows rebuild from the store at construction (a restart keeps them). Thread safety:
    :meth:`windows` returns a mapping the event loop never changes after publishing it (a new
    version's window is added by replacing the whole map), and each window locks itself.
    """

    def __init__(self, settings: Settings, repository: ModelRepository, store: FeedbackStore, events: Events):
        self.settings = settings
        self.repository = repository
        self.store = store
        self.events = events
        self._store_ok: bool | None = None
        self.predictions = PredictionStore(settings.prediction_store_rows, settings.prediction_ttl_s)
        self._windows: Mapping[tuple[str, str], FeedbackWindow] = {}
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="candor-feedback")  # one writer, in order
        since = time.time() - settings.feedback_window_s
        for row in self.store.recent(settings.feedback_window_rows, since):
            self._window(row.model, row.version).add(row.probabilities, row.label, row.received_at)
        self._store_health(True)

    def windows(self) -> Mapping[tuple[str, str], FeedbackWindow]:
        """(model, version) -> its window: a snapshot, safe to read from any thread."""
        return self._windows

    def window(self, model: str, version: str) -> FeedbackWindow | None:
        return self._windows.get((model, version))

    def _store_health(self, ok: bool) -> None:
        """Report the store's state when it changes, not on every write."""
        if ok != self._store_ok:
            self._store_ok = ok
            self.events.emit(StoreHealthChanged(ok))

    def _window(self, model: str, version: int) -> FeedbackWindow:
        key = (model, str(version))
        window = self._windows.get(key)
        if window is None:
            window = FeedbackWindow(self.settings.feedback_window_rows, self.settings.feedback_window_s)
            self._windows = {**self._windows, key: window}  # copy on write: readers keep the map they hold
        return window

    def remember(self, model: str, version: str, ids: list[str], logits: np.ndarray, probs: np.ndarray) -> None:
        """Keep what Predict answered, so feedback can join it by id."""
        self.predictions.add(model, int(version), ids, logits, probs)

    def _self_recorded_row(self, model_name: str, version: str, item: FeedbackItem, now: float) -> FeedbackRow:
        model = self.repository.resolve(model_name, version)
        k = model.manifest.num_classes
        if item.probabilities and item.logits:
            raise InvalidArgument("send probabilities or logits for an item, not both")
        values = np.asarray(item.probabilities or item.logits, dtype=np.float64)
        if values.shape != (k,) or not np.all(np.isfinite(values)):
            kind = "probabilities" if item.probabilities else "logits"
            raise InvalidArgument(f"{kind} must be {k} finite numbers for model {model_name!r}, got {values.size}")
        if item.probabilities:
            if np.any(values < 0) or abs(values.sum() - 1) > 1e-3:
                raise InvalidArgument("probabilities must be non-negative and sum to 1")
            probs, logits = values, None
        else:
            t = np.asarray(model.manifest.temperature.value)
            probs, logits = scale_logits(values[None, :], float(t[0]))[0], values
        pid = item.prediction_id or new_prediction_ids(1, now)[0]
        return FeedbackRow(pid, model_name, int(model.version), item.label, probs, logits, now, now)

    async def submit(self, model_name: str, version: str, items: list[FeedbackItem]) -> list[str]:
        """One outcome per item. Validation covers every item before anything is written."""
        if not model_name:
            raise InvalidArgument("model is empty; name the model the predictions came from")
        if not items:
            raise InvalidArgument("no feedback items; send at least one (prediction_id, label)")
        if len(items) > self.settings.max_rows_per_request:
            raise InvalidArgument(f"too many feedback items: {len(items)}, at most {self.settings.max_rows_per_request}")
        entries = self.repository.versions(model_name)  # NOT_FOUND for an unknown model
        newest = next((e.model for e in reversed(entries) if e.model is not None), None)
        if newest is not None and newest.multilabel:
            raise InvalidArgument("feedback for multi-label models is not supported yet; send multiclass labels")
        now = time.time()
        rows: list[tuple[int, FeedbackRow]] = []
        missing: list[tuple[int, str]] = []
        for i, item in enumerate(items):
            row = None
            if item.self_recorded:
                row = self._self_recorded_row(model_name, version, item, now)
            elif not item.prediction_id:
                raise InvalidArgument(f"item {i} has neither a prediction_id nor probabilities/logits")
            else:
                stored = self.predictions.get(item.prediction_id)
                if stored is not None and stored.model == model_name:
                    row = FeedbackRow(item.prediction_id, model_name, stored.version, item.label, stored.probabilities,
                                      stored.logits, stored.at, now)  # fmt: skip
            # The joined row knows its class count; an id no longer held is checked against the newest version.
            k = len(row.probabilities) if row is not None else newest.manifest.num_classes if newest is not None else None
            if k is not None and not 0 <= item.label < k:
                raise InvalidArgument(
                    f"item {i}: label {item.label} is out of range; model {model_name!r} has classes 0..{k - 1}"
                )
            if row is None:
                missing.append((i, item.prediction_id))
                continue
            rows.append((i, row))

        loop = asyncio.get_running_loop()
        try:
            inserted = await loop.run_in_executor(self._db, self.store.insert, [r for _, r in rows]) if rows else []
            seen = await loop.run_in_executor(self._db, self.store.known, [pid for _, pid in missing]) if missing else set()
        except StoreError as e:
            # The batch was rolled back whole: nothing of it is stored or acknowledged, and the
            # predictions stay joinable, so the caller can send the same batch again later.
            self.events.emit(StoreWriteFailed(str(e)))
            self._store_health(False)
            log.error("feedback store write failed: %s", e)
            raise Unavailable(f"the feedback store cannot write ({e}); nothing from this batch was stored, "
                              "predictions are unaffected; retry once the store has room") from None  # fmt: skip
        if rows:
            self._store_health(True)
        outcomes: list[str] = [""] * len(items)
        for (i, row), ok in zip(rows, inserted, strict=True):
            outcomes[i] = ACCEPTED if ok else DUPLICATE
            if ok:
                self._window(row.model, row.version).add(row.probabilities, row.label, row.received_at)
        self.predictions.remove([row.prediction_id for (_, row), ok in zip(rows, inserted, strict=True) if ok])
        for i, pid in missing:
            outcomes[i] = DUPLICATE if pid in seen else EXPIRED if self.predictions.expired(pid, now) else UNKNOWN_ID
        self.events.emit(FeedbackAnswered(model_name, dict(Counter(outcomes))))
        return outcomes

    def close(self) -> None:
        self._db.shutdown(wait=True)
        self.store.close()
