"""The data plane: everything a caller can ask of the server, whatever protocol carried it.

The candor.v1 and KServe v2 servicers are converters over this one object: they turn a
request into core values, call a method here, and turn the result into a response. So a
behaviour (a check, a bound, what is logged for feedback) is written once.

>>> plane = DataPlane(settings, repository, feedback, thresholds, events)          # doctest: +SKIP
>>> model = plane.model("digits", "")                                              # doctest: +SKIP
>>> answer = await plane.predict(model, InputTensor([2, 64], raw, ()), top_k=3)   # doctest: +SKIP
>>> answer.request_id, answer.top_k_indices[0]                                     # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from candor.calibration.selection import CHOICES as CALIBRATION_METHODS
from candor.server.core.drift import DriftReport, DriftThresholds
from candor.server.core.errors import Aborted, FailedPrecondition, InvalidArgument, ResourceExhausted, Unavailable, shown
from candor.server.core.events import Events, RequestRejected
from candor.server.core.feedback import FeedbackItem, FeedbackService
from candor.server.core.label_shift import LABEL_SHIFT, LabelShiftWatch, ShiftReport, check_correctable, correct
from candor.server.core.model import LoadedModel
from candor.server.core.observed import ObservedReport
from candor.server.core.predictions import new_request_id, prediction_ids
from candor.server.core.recalibrate import Recalibration, recalibrate
from candor.server.core.reconformal import CONFORMAL, reconformalise
from candor.server.core.repository import READY, ModelRepository, VersionEntry
from candor.server.core.sets import PredictionSets, ServedSets, SetRule, no_sets_reason
from candor.server.core.settings import Settings
from candor.server.core.store import LoggedRequest, StoreBusy, StoreError, finite_rows
from candor.server.core.tensors import all_finite, row_starts, rows_from_parts


@dataclass(frozen=True)
class InputTensor:
    """One input tensor as a protocol carried it: little-endian float32 bytes or typed values, not both."""

    shape: Sequence[int]
    raw: bytes
    values: Sequence[float]
    dtype_ok: bool = True  # the protocol's dtype is float32 (or unset)
    dtype_name: str = "FP32"  # how the protocol names the dtype it got, for the error message


@dataclass(frozen=True)
class Prediction:
    """One request's answer, as arrays: nothing here is per row in Python."""

    model: LoadedModel
    logits: np.ndarray  # [N, K] raw
    probabilities: np.ndarray  # [N, K] calibrated
    top_k_indices: np.ndarray | None  # [N, k] integers, most probable first (ties: lower index); None when not asked
    top_k_probabilities: np.ndarray | None  # [N, k] float32, theirs
    request_id: str  # row i's prediction id is prediction_ids(request_id, N)[i]; empty when nothing was kept
    sets: tuple[SetRule, ServedSets] | None = None  # the rule and what it made; None: not asked

    @property
    def confidences(self) -> np.ndarray:
        return self.probabilities.max(axis=1)

    @property
    def prediction_ids(self) -> list[str]:
        """One id per row (Feedback joins them); a Python string per row, so only for the per-row layout."""
        return prediction_ids(self.request_id, len(self.probabilities)) if self.request_id else []


def top_classes(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most probable classes of each row (integers, most probable first, ties to the lower index:
    argmax for one, a stable sort otherwise) and their probabilities; the response's writer makes the
    indices int32 in the one copy it makes anyway."""
    n, classes = probs.shape
    if k == 1:  # argmax and a flat gather: a reduction along K (max) costs twice as much for a few classes
        top = probs.argmax(axis=1)[:, None]
        return top, probs.ravel()[top + row_starts(n, classes)]
    indices = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return indices, probs.ravel()[indices + row_starts(n, classes)]


@dataclass(frozen=True)
class CalibrationState:
    """A version's live calibration: its reference, label-free drift and label-based signals."""

    model: LoadedModel
    drift: DriftReport | None  # None while nothing was predicted in the window
    confidence_state: int  # 0 ok, 1 warn, 2 drift (DriftThresholds.state); 0 without drift
    prediction_state: int
    observed: ObservedReport | None  # None while no feedback was joined
    prior_shift: ShiftReport | None = None  # None where no estimate could be made: prior_shift_reason says why
    prior_shift_reason: str = ""
    last_prediction_at: float | None = None  # the newest request of the version in the fleet's log
    idle: bool = False  # none in the last idle_after_s


def check_top_k(top_k: int, num_classes: int) -> int:
    """0 means 1; more than K is an error."""
    k = top_k or 1
    if not 0 < k <= num_classes:
        raise InvalidArgument(f"top_k must be between 1 and the number of classes ({num_classes}), got {top_k}")
    return k


def check_finite(logits: np.ndarray, probs: np.ndarray) -> None:
    """INVALID_ARGUMENT naming the rows whose outputs are NaN or infinite: finite inputs far outside what
    the model was trained on can overflow it. Such a request is refused whole and nothing of it is kept
    (prediction log, feedback); the batch's metrics already left those rows out (model.py)."""
    if all_finite(probs) and all_finite(logits):
        return
    finite = np.isfinite(probs).all(axis=1) & np.isfinite(logits).all(axis=1)
    bad = np.flatnonzero(~finite)
    listed = ", ".join(str(i) for i in bad[:10]) + (", ..." if len(bad) > 10 else "")
    raise InvalidArgument(f"the model's outputs are not finite (NaN or infinite) for {len(bad)} of {len(finite)} rows "
                          f"(rows {listed}): their features are finite but too large for this model; scale them as in "
                          "training. Nothing from this request was kept")  # fmt: skip


class DataPlane:
    def __init__(self, settings: Settings, repository: ModelRepository, feedback: FeedbackService,
                 thresholds: DriftThresholds, events: Events):  # fmt: skip
        self.settings = settings
        self.repository = repository
        self.feedback_service = feedback
        self.thresholds = thresholds
        self.events = events
        self._recalibrations: dict[str, tuple[tuple, asyncio.Future]] = {}  # model -> (what was asked, its run)
        self.label_shift = LabelShiftWatch(settings, repository, feedback)

    # --- models -------------------------------------------------------------------------

    def model(self, name: str, version: str) -> LoadedModel:
        """The serving model for ``name`` and ``version`` (text; empty: the newest ready one)."""
        if not name:
            raise InvalidArgument("model name is empty; name the model to use (ListModels shows them)")
        return self.repository.resolve(name, version)

    def models(self) -> tuple[VersionEntry, ...]:
        return self.repository.entries()

    def describe(self, name: str, version: str) -> tuple[VersionEntry, list[str]]:
        """One version's entry (the newest ready one for an empty version) and every version of the model."""
        if not name:
            raise InvalidArgument("name is empty; name the model to describe (ListModels shows them)")
        entry = self.repository.entry(name, version)
        return entry, [str(e.version) for e in self.repository.versions(name)]

    def version_ready(self, name: str, version: str) -> bool:
        return self.repository.entry(name, version).state == READY

    # --- predict ------------------------------------------------------------------------

    async def predict(self, model: LoadedModel, tensor: InputTensor, *, top_k: int | None = None,
                      keep_for_feedback: bool = False, time_remaining: float | None = None, coverage: float = 0.0,
                      conformal_method: str = "") -> Prediction:  # fmt: skip
        """Validate the rows, run them in a shared batch, and (``keep_for_feedback``) give each
        row an id that Feedback can join to what was served. ``top_k`` None: no top-k. ``coverage``
        > 0: conformal prediction sets at that level with ``conformal_method`` (empty: the version's own)."""
        k = None if top_k is None else check_top_k(top_k, model.manifest.num_classes)
        rule = self.set_rule(model, coverage, conformal_method) if coverage or conformal_method else None
        rows = rows_from_parts(
            list(tensor.shape), tensor.raw, tensor.values, num_features=model.num_features,
            max_rows=self.settings.max_rows_per_request, dtype_ok=tensor.dtype_ok, dtype_name=tensor.dtype_name,
        )  # fmt: skip
        deadline = None if time_remaining is None else time.monotonic() + time_remaining
        try:
            logits, probs = await model.batcher.submit(rows, deadline)
        except ResourceExhausted:
            self.events.emit(RequestRejected(model.name, model.version))
            raise
        check_finite(logits, probs)
        served = None if rule is None else PredictionSets.serve(rule, probs, k or 0, not self.settings.skips("native"))
        if k is None:
            top, top_probs = None, None
        else:  # the sets' ranking already has every row's first k classes
            top, top_probs = top_classes(probs, k) if served is None else served.top(k)
        request_id = ""
        if keep_for_feedback and not self.settings.skips("log"):
            now = time.time()
            request_id = new_request_id(now)
            self.feedback_service.keep(LoggedRequest(request_id, model.name, model.manifest.version, now, probs, logits))
        return Prediction(model, logits, probs, top, top_probs, request_id, None if served is None else (rule, served))

    @staticmethod
    def set_rule(model: LoadedModel, coverage: float, method: str = "") -> SetRule:
        """How ``model`` makes sets at ``coverage``: InvalidArgument for a level or method it cannot
        serve, FailedPrecondition for a version with no conformal scores (multi-label, or older)."""
        sets = model.opened.sets
        if sets is None:
            raise no_sets_reason(model.manifest)
        if not coverage:
            raise InvalidArgument(f"conformal_method {shown(method)} needs a coverage level in (0, {sets.max_coverage:.6g}]")
        return sets.rule(coverage, method)

    # --- labels and calibration ---------------------------------------------------------

    async def feedback(self, model: str, version: str, items: list[FeedbackItem]) -> list[str]:
        """One outcome per item (ACCEPTED, DUPLICATE, EXPIRED, UNKNOWN_ID); see FeedbackService.submit."""
        return await self.feedback_service.submit(model, version, items)

    async def calibration(self, name: str, version: str) -> CalibrationState:
        """Drift of this replica's recent traffic; label-based signals of the fleet's feedback in the store."""
        if not name:
            raise InvalidArgument("model is empty; name the model to report on")
        model = self.model(name, version)
        drift = model.drift.report()
        observed = await self.feedback_service.observed(model.name, model.version)
        states = (0, 0) if drift is None else (self.thresholds.state(drift.confidence_psi),
                                               self.thresholds.state(drift.prediction_psi))  # fmt: skip
        try:
            shift, reason = await self.label_shift.report(model), ""
        except FailedPrecondition as e:
            shift, reason = None, str(e)
        last = await self.feedback_service.read("no report", self.feedback_service.store.last_prediction, model.name,
                                                 int(model.version))  # fmt: skip
        idle = last is None or time.time() - last > self.settings.idle_after_s
        return CalibrationState(model, drift, *states, observed, shift, reason, last, idle)

    async def recalibrate(self, name: str, version: str, *, holdout_share: float = 0.3, min_rows: int = 100,
                          dry_run: bool = False, method: str = "", since: float = 0.0, newest_rows: int = 0,
                          include_client_recorded: bool = False) -> Recalibration:  # fmt: skip
        """Refit the version's calibrator on a window of the fleet's stored feedback (received at or after
        ``since``, at most the ``newest_rows``; 0 for either: the feedback window); publish and serve the
        child when it is significantly better on held-out feedback. Rows are those the server joined to
        its own served predictions; client-recorded ones only with ``include_client_recorded``.

        One recalibration per model at a time: an identical call made while one runs on this replica
        shares its result; any other is ABORTED, naming the one running (across replicas, the store's
        lock does the same)."""
        if not name:
            raise InvalidArgument("model is empty; name the model to recalibrate")
        if not math.isfinite(since) or since < 0 or since > time.time():
            raise InvalidArgument(f"since must be a time in the past in unix seconds (0: the feedback window), got {since}")
        if method and method not in (*CALIBRATION_METHODS, CONFORMAL, LABEL_SHIFT):
            raise InvalidArgument(f"unknown calibration method {shown(method)}; choose one of "
                                  f"{', '.join((*CALIBRATION_METHODS, CONFORMAL, LABEL_SHIFT))}")  # fmt: skip
        self.model(name, version)  # NOT_FOUND or UNAVAILABLE before taking the lock
        asked = (version, holdout_share, min_rows, dry_run, method, since, newest_rows, include_client_recorded)
        running = self._recalibrations.get(name)
        if running is not None:
            if running[0] == asked:
                return await asyncio.shield(running[1])
            raise Aborted(f"a recalibration of model {shown(name)} is already running on this replica with other "
                          "options; wait for it to finish, then check the versions it published")  # fmt: skip
        task = asyncio.ensure_future(self._recalibrate(name, version, holdout_share, min_rows, dry_run, method, since,
                                                       newest_rows, include_client_recorded))  # fmt: skip
        self._recalibrations[name] = (asked, task)
        task.add_done_callback(lambda _: self._recalibrations.pop(name, None))
        return await asyncio.shield(task)

    async def _recalibrate(self, name: str, version: str, holdout_share: float, min_rows: int, dry_run: bool, method: str,
                           since: float, newest_rows: int, include_client_recorded: bool) -> Recalibration:  # fmt: skip
        store = self.feedback_service.store
        holder = f"{socket.gethostname()} pid {os.getpid()}"
        try:
            lock = await asyncio.to_thread(store.lock_recalibration, name, holder)
        except StoreBusy as e:
            raise Aborted(str(e)) from None
        except StoreError as e:
            raise Unavailable(f"the store cannot be reached ({e}); nothing was refitted, retry later") from None
        try:
            # Under the lock, see what another replica may have published meanwhile, so the newest
            # version is the parent rather than one already refitted.
            await self.repository.refresh()
            model = self.model(name, version)
            parent = f"{model.name}/{model.version}"
            child = next((e for e in self.repository.versions(name) if e.model is not None
                          and e.model.manifest.parent == parent), None)  # fmt: skip
            if child is not None:
                raise FailedPrecondition(f"version {model.version} of {shown(name)} was already recalibrated into version "
                                         f"{child.version}; recalibrate that one once it has feedback")  # fmt: skip
            if method == LABEL_SHIFT:  # unlabeled logged rows, the calibrator corrected to their priors
                return await self._correct_label_shift(model, since, newest_rows, dry_run)
            try:
                since = since or time.time() - self.settings.feedback_window_s
                rows = await asyncio.to_thread(store.feedback, model.name, int(model.version), since=since,
                                               limit=newest_rows or self.settings.feedback_window_rows,
                                               served_only=not include_client_recorded)  # fmt: skip
            except StoreError as e:
                raise Unavailable(f"the feedback store cannot be read ({e}); nothing was refitted, retry later") from None
            window = (Path(self.repository.root), model, finite_rows(rows), holdout_share, min_rows, dry_run)
            if method == CONFORMAL:  # the conformal scores from the window, the calibrator unchanged
                result = await asyncio.to_thread(reconformalise, *window, included_client_recorded=include_client_recorded)
            else:
                result = await asyncio.to_thread(recalibrate, *window, method=method,
                                                 included_client_recorded=include_client_recorded)  # fmt: skip
            if result.published:
                await self.repository.refresh()  # serve it now rather than at the next poll
            return result
        finally:
            await asyncio.to_thread(lock.release)

    async def _correct_label_shift(self, model: LoadedModel, since: float, newest_rows: int, dry_run: bool) -> Recalibration:
        check_correctable(model)
        report = await self.label_shift.report(model, since, newest_rows)
        when = [dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds") for t in (report.window_start,
                                                                                          report.window_end)]  # fmt: skip
        window = f"prediction log of {model.name}/{model.version}: {report.estimate.rows} rows, {when[0]} to {when[1]}"
        result = await asyncio.to_thread(correct, Path(self.repository.root), model, report,
                                         self.settings.label_shift_significance, dry_run, window)  # fmt: skip
        if result.published:
            await self.repository.refresh()
        return result
