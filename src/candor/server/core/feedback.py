"""Feedback: ground-truth labels joined to earlier predictions, stored durably, feeding
the label-based signals. Transport-neutral; the servicer maps it.

A label can reach any replica: the join looks in this replica's cache of recent requests
first, then in the store's prediction log, which every replica on the store writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from candor.calibration.calibrators import Calibrator
from candor.calibration.lineage import calibrator_of
from candor.calibration.manifest import MANIFEST_FILE, read_manifest
from candor.server.core.errors import InvalidArgument, NotFound, ResourceExhausted, Unavailable
from candor.server.core.events import Events, FeedbackAnswered, StoreWriteFailed
from candor.server.core.observed import FeedbackTotals, ObservedReport, observed_report
from candor.server.core.prediction_log import FLUSH_INTERVAL_S, PredictionLog
from candor.server.core.predictions import PredictionCache, StoredPrediction, id_time, new_prediction_ids, row_of, split_id
from candor.server.core.repository import ModelRepository
from candor.server.core.sets import PredictionSets, coverage_report
from candor.server.core.settings import Settings
from candor.server.core.store import FeedbackRow, LoggedRequest, Store, StoreError, finite_rows
from candor.server.core.store_health import FEEDBACK, PING, READ, StoreHealth

FEEDBACK_OUTCOMES = ("ACCEPTED", "DUPLICATE", "EXPIRED", "UNKNOWN_ID")  # what Feedback answers per item
ACCEPTED, DUPLICATE, EXPIRED, UNKNOWN_ID = FEEDBACK_OUTCOMES
log = logging.getLogger("candor.server")
RECENT_S = 2.0  # a request id this young may not have reached the shared log yet (ids carry whole seconds)
MAX_ID_CHARS = 128  # a prediction id longer than this is refused (ours have 32)
# Client-recorded rows are stored under this prefix, an id space of their own: a caller can neither
# take a served prediction's id nor be refused because one was taken.
CLIENT_ID_PREFIX = "client:"
COUNT_REFRESH_S = 60.0  # how often the store's row count is read again (other replicas add rows too)


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
    """Joins labels to logged predictions, keeps them in ``store``, and adds them to this
    replica's label-based totals.

    Thread safety: :meth:`totals` returns a mapping the event loop never changes after
    publishing it (a new version's totals are added by replacing the whole map), and each
    totals object locks itself.
    """

    def __init__(self, settings: Settings, repository: ModelRepository, store: Store, events: Events,
                 notify: Callable[[object], None]):  # fmt: skip
        """``notify`` delivers an event from any thread (the prediction log's writer reports through it)."""
        self.settings = settings
        self.repository = repository
        self.store = store
        self.events = events
        self.health = StoreHealth(notify)
        self.cache = PredictionCache(settings.prediction_store_rows, settings.prediction_ttl_s)
        self.log = PredictionLog(store, self.health, notify, max_buffer_rows=settings.prediction_log_buffer_rows,
                                 retention_s=settings.prediction_ttl_s)  # fmt: skip
        self._totals: Mapping[tuple[str, str], FeedbackTotals] = {}
        self._db = ThreadPoolExecutor(max_workers=4, thread_name_prefix="candor-feedback")
        self._calibrators: dict[tuple[str, int], Calibrator] = {}  # (model, version) -> its calibrator, for log joins
        self._stored_rows: int | None = None  # the store's feedback rows as last counted, plus those added since
        self._counted_at = 0.0
        try:
            store.ping()
            self.health.succeeded(PING)
        except StoreError as e:  # started degraded (store_optional): the writer's pings bring it back
            self.health.failed(PING, e)

    def totals(self) -> Mapping[tuple[str, str], FeedbackTotals]:
        """(model, version) -> this replica's running sums: a snapshot, safe to read from any thread."""
        return self._totals

    def _totals_of(self, model: str, version: int) -> FeedbackTotals:
        key = (model, str(version))
        totals = self._totals.get(key)
        if totals is None:
            totals = FeedbackTotals()
            self._totals = {**self._totals, key: totals}  # copy on write: readers keep the map they hold
        return totals

    def _sets_of(self, model: str, version: int) -> PredictionSets | None:
        """The prediction sets of a version this replica serves (None: not loaded here, or it has none)."""
        found = next((m for m in self.repository.loaded() if m.name == model and m.version == str(version)), None)
        return None if found is None else found.opened.sets

    def keep(self, request: LoggedRequest) -> None:
        """Keep what Predict answered, so feedback on any replica can join it by id."""
        self.cache.add(request)
        self.log.add(request)

    async def read(self, what: str, fn, *args, **kwargs):
        try:
            return await asyncio.get_running_loop().run_in_executor(self._db, lambda: fn(*args, **kwargs))
        except StoreError as e:
            self.health.failed(READ, e)
            raise Unavailable(f"the store cannot be read ({e}); {what}; retry once it answers") from None

    async def observed(self, model: str, version: str) -> ObservedReport | None:
        """The label-based signals of the fleet's newest feedback for one version (None without any)."""
        since = time.time() - self.settings.feedback_window_s
        rows = await self.read("no report", self.store.feedback, model, int(version), since=since,
                                limit=self.settings.feedback_window_rows)  # fmt: skip
        rows = finite_rows(rows)
        if not rows:
            return None
        probs, labels = np.stack([r.probabilities for r in rows]), np.array([r.label for r in rows])
        report = observed_report(probs, labels)
        sets = self._sets_of(model, int(version))
        if sets is None:
            return report
        return dataclasses.replace(report, set_coverage=tuple(coverage_report(sets, probs, labels)))

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
            probs, logits = model.calibrator.probabilities(values[None, :])[0], values
        pid = CLIENT_ID_PREFIX + (item.prediction_id or new_prediction_ids(1, now)[0])
        return FeedbackRow(pid, model_name, int(model.version), item.label, probs, logits, now, now, client_recorded=True)

    async def _check_room(self, adding: int) -> None:
        """RESOURCE_EXHAUSTED when ``adding`` rows would take the store past ``feedback_store_max_rows``."""
        cap = self.settings.feedback_store_max_rows
        if self._stored_rows is None or time.monotonic() - self._counted_at > COUNT_REFRESH_S:
            self._stored_rows = await self.read("nothing from this batch was stored", self.store.count)
            self._counted_at = time.monotonic()
        if self._stored_rows + adding > cap:
            raise ResourceExhausted(f"the feedback store holds {self._stored_rows} rows and this batch adds {adding}, "
                                    f"over its limit of {cap} (feedback_store_max_rows); nothing from this batch was "
                                    "stored. Raise the limit or remove old feedback")  # fmt: skip

    async def _joined(self, items: list[FeedbackItem]) -> dict[int, StoredPrediction]:
        """The served prediction behind each item that names one: this replica's cache first, then the log."""
        found: dict[int, StoredPrediction] = {}
        wanted: dict[str, list[tuple[int, int]]] = {}
        for i, item in enumerate(items):
            if item.self_recorded or not item.prediction_id:
                continue
            stored = self.cache.get(item.prediction_id)
            if stored is not None:
                found[i] = stored
            elif (parts := split_id(item.prediction_id)) is not None:
                wanted.setdefault(parts[0], []).append((i, parts[1]))
        if wanted:
            logged = await self.read("nothing from this batch was stored", self.store.logged, list(wanted))
            # A request made a moment ago on another replica may still sit in that replica's log
            # buffer: look once more after its writer's next flush rather than answer UNKNOWN_ID.
            now = time.time()
            fresh = [r for r in wanted if r not in logged and now - (id_time(r + "0" * 8) or 0) <= RECENT_S]
            if fresh:
                await asyncio.sleep(2 * FLUSH_INTERVAL_S)
                logged |= await self.read("nothing from this batch was stored", self.store.logged, fresh)
            for request_id, entry in logged.items():
                request = self._with_probabilities(entry)
                if request is None:
                    continue
                for i, row in wanted[request_id]:
                    if (stored := row_of(request, row)) is not None:
                        found[i] = stored
        return found

    def _with_probabilities(self, request: LoggedRequest) -> LoggedRequest | None:
        """The log entry with the probabilities it served. The store keeps the logits only, and what was served is
        the version's calibrator applied to them; None when that version's manifest can no longer be read."""
        if request.probabilities is not None:
            return request
        calibrator = self._calibrator(request.model, request.version)
        if calibrator is None:
            return None
        return dataclasses.replace(request, probabilities=calibrator.probabilities(request.logits).astype(np.float32))

    def _calibrator(self, model: str, version: int) -> Calibrator | None:
        """A version's calibrator: the loaded version's, else its manifest's on disk (a version the policy no longer
        serves still has feedback to join); remembered, since a version's calibrator never changes."""
        key = (model, version)
        if key not in self._calibrators:
            try:
                loaded = next((e.model for e in self.repository.versions(model) if e.version == version and e.model), None)
            except NotFound:
                loaded = None
            if loaded is not None:
                self._calibrators[key] = loaded.calibrator
            else:
                try:
                    manifest = read_manifest(self.repository.root / model / str(version) / MANIFEST_FILE)
                    self._calibrators[key] = calibrator_of(manifest)
                except (OSError, ValueError) as e:
                    log.warning("feedback for %s version %s cannot be joined: its manifest cannot be read (%s)", model,
                                version, e)  # fmt: skip
                    return None
        return self._calibrators[key]

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
            if not item.self_recorded and not item.prediction_id:
                raise InvalidArgument(f"item {i} has neither a prediction_id nor probabilities/logits")
            if len(item.prediction_id) > MAX_ID_CHARS:
                raise InvalidArgument(f"item {i}: prediction_id has {len(item.prediction_id)} characters, at most "
                                      f"{MAX_ID_CHARS}; send the id Predict returned")  # fmt: skip
        joined = await self._joined(items)
        for i, item in enumerate(items):
            row = None
            if item.self_recorded:
                row = self._self_recorded_row(model_name, version, item, now)
            elif (stored := joined.get(i)) is not None and stored.model == model_name:
                row = FeedbackRow(item.prediction_id, model_name, stored.version, item.label, stored.probabilities,
                                  stored.logits, stored.at, now)  # fmt: skip
            # The joined row knows its class count; an id not found is checked against the newest version.
            k = len(row.probabilities) if row is not None else newest.manifest.num_classes if newest is not None else None
            if k is not None and not 0 <= item.label < k:
                raise InvalidArgument(
                    f"item {i}: label {item.label} is out of range; model {model_name!r} has classes 0..{k - 1}"
                )
            if row is None:
                missing.append((i, item.prediction_id))
                continue
            rows.append((i, row))

        if rows:
            await self._check_room(len(rows))
        loop = asyncio.get_running_loop()
        try:
            inserted = await loop.run_in_executor(self._db, self.store.insert, [r for _, r in rows]) if rows else []
            seen = await loop.run_in_executor(self._db, self.store.known, [pid for _, pid in missing]) if missing else set()
        except StoreError as e:
            # The batch was rolled back whole: nothing of it is stored or acknowledged, and the
            # predictions stay joinable, so the caller can send the same batch again later.
            self.events.emit(StoreWriteFailed(str(e)))
            self.health.failed(FEEDBACK, e)
            raise Unavailable(f"the feedback store cannot write ({e}); nothing from this batch was stored, "
                              "predictions are unaffected; retry once the store answers") from None  # fmt: skip
        self.health.succeeded(FEEDBACK)
        outcomes: list[str] = [""] * len(items)
        accepted: dict[int, list[FeedbackRow]] = {}
        self._stored_rows = (self._stored_rows or 0) + sum(inserted)
        for (i, row), ok in zip(rows, inserted, strict=True):
            outcomes[i] = ACCEPTED if ok else DUPLICATE
            if ok:
                accepted.setdefault(row.version, []).append(row)
        for v, joined_rows in accepted.items():
            probs, labels = np.stack([r.probabilities for r in joined_rows]), np.array([r.label for r in joined_rows])
            totals = self._totals_of(model_name, v)
            totals.add(probs, labels)
            sets = self._sets_of(model_name, v)
            if sets is not None:
                totals.coverage.add(sets, probs, labels)
        for i, pid in missing:
            outcomes[i] = DUPLICATE if pid in seen else EXPIRED if self.cache.expired(pid, now) else UNKNOWN_ID
        self.events.emit(FeedbackAnswered(model_name, dict(Counter(outcomes))))
        return outcomes

    def close(self) -> None:
        self.log.close()
        self._db.shutdown(wait=True)
        self.store.close()
