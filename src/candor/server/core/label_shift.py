"""Label shift on live traffic: the class priors of a version's logged predictions, estimated without
labels from the fleet's prediction log (every replica's rows), and the correction published as a child.

The window is the newest logged rows of the version (``since`` and ``newest_rows``; by default the
drift window's span and rows). Their logits go through the version's calibrator, and EM
(:mod:`candor.calibration.label_shift`) estimates the priors against those the version assumes
(:mod:`candor.calibration.priors`). The estimate is what GetCalibration reports, what the
``candor_label_shift_*`` gauges show (refreshed every ``label_shift_interval_s``, without the
bootstrap), and what Recalibrate's ``label_shift`` corrects to.

The assumption is label shift proper: p(x|y) unchanged. When it fails (new kinds of inputs, not a
new mix of the old ones) the correction cannot remove the drift: the child's confidence PSI, against
its reweighted reference, stays high.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from candor.calibration.calibrators import CalibratorError
from candor.calibration.label_shift import RESAMPLES, PriorShift, estimate
from candor.calibration.lineage import Refit, publish_child
from candor.calibration.manifest import MODEL_FILE, LabelShiftSpec
from candor.calibration.priors import SHIFTABLE, priors_reason, reweighted_reference, shifted_calibrator
from candor.graph import set_calibrator
from candor.server.core.errors import FailedPrecondition
from candor.server.core.model import LoadedModel
from candor.server.core.recalibrate import Recalibration
from candor.server.core.store import FeedbackRow, LoggedRequest, finite_rows

log = logging.getLogger("candor.server")
LABEL_SHIFT = "label_shift"  # the Recalibrate method that corrects to the estimated priors
ROWS_PER_CLASS = 20  # fewest window rows per class an estimate is made on


@dataclass(frozen=True)
class ShiftReport:
    """The estimate on one window, and what labels that arrived for its rows say."""

    estimate: PriorShift
    training_priors: np.ndarray  # pi_train, the original priors (equal to estimate.assumed unless corrected)
    window_start: float  # unix seconds of the oldest and newest request
    window_end: float
    labelled_rows: int  # rows of the window whose feedback has arrived ...
    observed_accuracy: float  # ... and the accuracy of what was served for them (nan without any)


def window_logits(requests: list[LoggedRequest]) -> np.ndarray:
    """The window's finite rows, float64 [N, K]."""
    if not requests:
        return np.empty((0, 0))
    z = np.concatenate([q.logits for q in requests]).astype(np.float64)
    return z[np.isfinite(z).all(axis=1)]


def check_window(model: LoadedModel, rows: int) -> None:
    """FAILED_PRECONDITION, with the reason, where no estimate can be made for ``model`` on ``rows`` rows."""
    m = model.manifest
    reason = priors_reason(m)
    if reason is not None:
        raise FailedPrecondition(reason)
    need = ROWS_PER_CLASS * m.num_classes
    if rows < need:
        raise FailedPrecondition(f"{m.name}/{m.version} has {rows} logged rows in the window; estimating {m.num_classes} "
                                 f"class priors needs at least {need} ({ROWS_PER_CLASS} per class). Send more traffic, "
                                 "or widen the window (since, newest_rows)")  # fmt: skip


def check_correctable(model: LoadedModel) -> None:
    """FAILED_PRECONDITION, with the reason, for a version a prior correction cannot be folded into."""
    reason = priors_reason(model.manifest)
    if reason is None and model.calibrator.method not in SHIFTABLE:
        reason = (f"{model.manifest.name}/{model.manifest.version} is calibrated by {model.calibrator.title}, which a prior "
                  f"correction does not commute with (its map was fitted jointly with its rows' class mix); correct a "
                  f"version calibrated by {', '.join(SHIFTABLE)}")  # fmt: skip
    if reason is not None:
        raise FailedPrecondition(reason)


def shift_report(model: LoadedModel, requests: list[LoggedRequest], feedback: list[FeedbackRow], *,
                 resamples: int = RESAMPLES) -> ShiftReport:  # fmt: skip
    """Blocking (numpy): the estimate on ``requests`` (the window, oldest first) for ``model``."""
    z = window_logits(requests)
    check_window(model, len(z))
    priors = model.opened.priors
    probs = model.calibrator.probabilities(z)
    shift = estimate(probs, priors.assumed, assumed_rows=priors.rows, resamples=resamples)
    start, end = requests[0].at, requests[-1].at
    joined = [r for r in finite_rows(feedback) if start <= r.predicted_at <= end and not r.client_recorded]
    observed = (float(np.mean([int(np.argmax(r.probabilities)) == r.label for r in joined])) if joined
                else math.nan)  # fmt: skip
    return ShiftReport(shift, priors.training, start, end, len(joined), observed)


def correct(repository: Path, model: LoadedModel, report: ShiftReport, significance: float, dry_run: bool,
            window: str) -> Recalibration:  # fmt: skip
    """Blocking (file writes): publish ``model`` corrected to the report's priors, when the shift is
    significant and larger than the estimate's own uncertainty; FAILED_PRECONDITION otherwise."""
    m, shift, priors = model.manifest, report.estimate, model.opened.priors
    try:
        calibrator = shifted_calibrator(model.calibrator, priors, shift.priors)
    except CalibratorError as e:
        raise FailedPrecondition(str(e)) from None
    half_width = (shift.priors_high - shift.priors_low) / 2
    moved = np.abs(shift.priors - priors.assumed)
    numbers = (f"p = {shift.p_value:.3g} for no shift over {shift.rows} rows, total variation {shift.total_variation:.3f}; "
               f"largest prior change {moved.max():.3f} (class {m.class_names[int(moved.argmax())]}), interval "
               f"half-width there {half_width[int(moved.argmax())]:.3f}")  # fmt: skip
    if shift.p_value >= significance:
        raise FailedPrecondition(f"no significant label shift for {m.name}/{m.version} ({numbers}; needs p < "
                                 f"{significance:g}); nothing published")  # fmt: skip
    if not np.any(moved > half_width):
        raise FailedPrecondition(f"the estimated priors of {m.name}/{m.version} move by less than their own 90% "
                                 f"intervals ({numbers}); nothing published")  # fmt: skip
    t = float(np.atleast_1d(model.calibrator.temperature)[0])
    result = dict(old_temperature=t, new_temperature=t, fit_rows=shift.rows, holdout_rows=0, holdout_nll_before=0.0,
                  holdout_nll_after=0.0, holdout_ece_before=0.0, holdout_ece_after=0.0, method=LABEL_SHIFT,
                  window_start=report.window_start, window_end=report.window_end, prior_shift=report)  # fmt: skip
    if dry_run:
        return Recalibration(False, None, message=f"dry run: {numbers}; nothing published", **result)
    spec = LabelShiftSpec(shift.priors.tolist(), priors.training.tolist(), priors.assumed.tolist(), window,
                          report.window_start, report.window_end, shift.rows, shift.iterations, shift.converged,
                          shift.p_value, shift.total_variation)  # fmt: skip
    refit = Refit(calibrator, f"{m.calibrator.method} of {m.name}/{m.version} with log(pi_new / pi_train) added: EM "
                              f"priors of {shift.rows} unlabeled logged rows")  # fmt: skip
    try:
        folder = publish_child(
            repository, m, write_model=lambda path: set_calibrator(model.folder / MODEL_FILE, path, calibrator),
            refit=refit, label_shift=spec,
            reference=lambda who: reweighted_reference(model.folder, m, calibrator, priors, shift.priors, who),
        )  # fmt: skip
    except OSError as e:
        raise FailedPrecondition(f"cannot write the new version into the model repository ({e.strerror or e}); "
                                 "nothing was published. Make the repository writable for the server") from None
    return Recalibration(True, int(folder.name), message=f"published {m.name} version {folder.name} corrected to the "
                                                         f"estimated priors: {numbers}", **result)  # fmt: skip


class LabelShiftWatch:
    """The newest store-side estimate per loaded version, for the gauges; refreshed by :meth:`watch`."""

    def __init__(self, settings, repository, feedback):
        self.settings = settings
        self.repository = repository
        self.feedback = feedback  # FeedbackService: the store and its reader thread
        self.latest: dict[tuple[str, str], PriorShift] = {}

    async def window(self, model: LoadedModel, since: float = 0.0, newest_rows: int = 0) -> list[LoggedRequest]:
        since = since or time.time() - self.settings.drift_window_s
        rows = newest_rows or self.settings.drift_window_rows
        return await self.feedback.read("no label-shift estimate", self.feedback.store.recent, model.name,
                                         int(model.version), since=since, rows=rows)  # fmt: skip

    async def report(self, model: LoadedModel, since: float = 0.0, newest_rows: int = 0,
                     resamples: int = RESAMPLES) -> ShiftReport:  # fmt: skip
        """The estimate on the window (FAILED_PRECONDITION with the reason where none can be made)."""
        requests = await self.window(model, since, newest_rows)
        start = requests[0].at if requests else time.time()
        feedback = await self.feedback.read("no label-shift estimate", self.feedback.store.feedback, model.name,
                                             int(model.version), since=start, limit=self.settings.feedback_window_rows)
        return await asyncio.to_thread(shift_report, model, requests, feedback, resamples=resamples)

    async def refresh(self) -> None:
        seen = set()
        for model in self.repository.loaded():
            key = (model.name, model.version)
            seen.add(key)
            if model.opened.priors is None:
                continue
            try:
                self.latest[key] = (await self.report(model, resamples=0)).estimate
            except FailedPrecondition:
                self.latest.pop(key, None)  # too few rows now: no estimate rather than a stale one
            except Exception as e:  # the store down (Unavailable), or a bug: the gauges keep their last value
                log.debug("label-shift estimate of %s/%s skipped: %s", *key, e)
        for key in set(self.latest) - seen:
            del self.latest[key]

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.label_shift_interval_s)
            await self.refresh()
