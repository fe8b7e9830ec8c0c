"""Refit a served version's calibrator on a window of its stored feedback, and publish the
result as the next version only when it is significantly better on held-out feedback.

The rows are the ones the server joined to its own logged predictions, with the raw
logits it served from; a row that carries served probabilities only is still usable by
methods that are invariant to a per-row shift of the logits (temperature, Dirichlet:
``row_shift_invariant``) under a temperature-scaled parent: there p = softmax(z / T)
and T * log(p) equals z up to a per-row constant, which those methods do not see.

The window is the newest rows (``since`` and ``newest_rows``; by default the server's
feedback window), so that feedback from before a drift does not pull the fit back. Of
them a random ``holdout_share`` is held out; the refit is published when the mean
per-row NLL decrease on those rows, against the version's own calibrator, has a 90%
paired-bootstrap interval above 0, and a temperature did not stop at a clamp bound. The
child's drift reference is re-derived from the stored reference sample (see
:mod:`candor.calibration.lineage`), never taken from the feedback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from candor.calibration import calibration_report
from candor.calibration.calibrators import REGISTRY, CalibratorError, TemperatureScaling
from candor.calibration.lineage import Refit, publish_child
from candor.calibration.manifest import MODEL_FILE, Metrics, MetricSet
from candor.calibration.metrics import nll
from candor.calibration.reference import read_sample
from candor.calibration.selection import AUTO, fit_method, improvement
from candor.graph import set_calibrator
from candor.server.core.errors import FailedPrecondition, InvalidArgument
from candor.server.core.model import LoadedModel
from candor.server.core.store import FeedbackRow

MIN_SIDE_ROWS = 10  # fewest rows on each side of the fit / holdout split


@dataclass(frozen=True)
class Recalibration:
    published: bool
    new_version: int | None
    old_temperature: float
    new_temperature: float
    fit_rows: int
    holdout_rows: int
    holdout_nll_before: float
    holdout_nll_after: float
    holdout_ece_before: float
    holdout_ece_after: float
    message: str
    method: str = ""
    selected_by: str = ""
    nll_improvement: float = 0.0
    nll_improvement_low: float = 0.0
    nll_improvement_high: float = 0.0
    window_start: float = 0.0
    window_end: float = 0.0
    label_counts: list[int] = field(default_factory=list)
    rows_without_logits: int = 0
    validation_nll_before: float = 0.0
    validation_nll_after: float = 0.0
    included_client_recorded: bool = False
    coverage_target: float = 0.0  # method "conformal" only, from here down
    holdout_coverage_before: float = 0.0
    holdout_coverage_before_low: float = 0.0
    holdout_coverage_before_high: float = 0.0
    holdout_coverage_after: float = 0.0
    holdout_coverage_after_low: float = 0.0
    holdout_coverage_after_high: float = 0.0
    prior_shift: object | None = None  # method "label_shift" only: the ShiftReport corrected to


def _logits(model: LoadedModel, rows: list[FeedbackRow], method: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Logits ``[N, K]`` and labels of the usable rows, and how many were left out."""
    # auto may choose a method that needs raw logits (see the module docstring)
    recoverable = (isinstance(model.calibrator, TemperatureScaling) and method != AUTO
                   and REGISTRY[method].row_shift_invariant)  # fmt: skip
    t_old = float(model.manifest.temperature.value[0])
    usable = [r for r in rows if r.logits is not None or recoverable]
    logits = np.stack([r.logits if r.logits is not None else t_old * np.log(np.clip(r.probabilities, 1e-12, 1.0))
                       for r in usable]) if usable else np.empty((0, model.manifest.num_classes))  # fmt: skip
    return logits.astype(np.float64), np.array([r.label for r in usable], dtype=np.int64), len(rows) - len(usable)


def _validation_nll(model: LoadedModel, after) -> tuple[float, float]:
    """NLL of the version's calibrator and of the refit on its stored validation logits (0, 0 without a sample)."""
    spec = model.manifest.reference.sample
    if spec is None:
        return 0.0, 0.0
    sample = read_sample(model.folder, spec)
    return (nll(model.calibrator.probabilities(sample.val_logits), sample.val_labels),
            nll(after.probabilities(sample.val_logits), sample.val_labels))  # fmt: skip


def recalibrate(repository: Path, model: LoadedModel, rows: list[FeedbackRow], holdout_share: float = 0.3,
                min_rows: int = 100, dry_run: bool = False, seed: int = 0, method: str = "temperature",
                included_client_recorded: bool = False) -> Recalibration:  # fmt: skip
    """Blocking (fitting, file writes): run it in a thread. ``rows``: the window, oldest first."""
    if not 0 < holdout_share < 1:
        raise InvalidArgument(f"holdout_share must lie in (0, 1), got {holdout_share}")
    if model.multilabel or model.manifest.temperature.per_class:
        raise InvalidArgument("recalibration from feedback covers multiclass models")
    method = method or TemperatureScaling.name
    logits, labels, without_logits = _logits(model, rows, method)
    if len(labels) < min_rows:
        left_out = f" ({without_logits} more carry probabilities only, which {method} cannot use)" if without_logits else ""
        raise FailedPrecondition(f"model {model.name!r} version {model.version} has {len(labels)} usable feedback rows in "
                                 f"the window{left_out}; recalibration needs at least {min_rows}")  # fmt: skip
    order = np.random.default_rng(seed).permutation(len(labels))
    n_hold = max(1, int(round(holdout_share * len(labels))))
    hold, fit_idx = order[:n_hold], order[n_hold:]
    if min(len(hold), len(fit_idx)) < MIN_SIDE_ROWS:
        raise FailedPrecondition(f"holding out {holdout_share:g} of {len(labels)} usable rows leaves {len(fit_idx)} to fit "
                                 f"and {n_hold} to check; each side needs at least {MIN_SIDE_ROWS}. Wait for more "
                                 "feedback or choose a holdout_share nearer 0.3")  # fmt: skip
    k = model.manifest.num_classes
    need = REGISTRY[method].minimum_rows(k) if method != AUTO else 1
    if len(fit_idx) < need:
        raise FailedPrecondition(f"{REGISTRY[method].title} has {need} parameters for {k} classes and needs at least that "
                                 f"many fit rows; the window gives {len(fit_idx)} after holding out {n_hold}")
    try:
        chosen = fit_method(method, logits[fit_idx], labels[fit_idx], seed=seed)
    except CalibratorError as e:
        raise FailedPrecondition(str(e)) from None
    parent, refit = model.calibrator, chosen.calibrator
    gain = improvement(parent, refit, logits[hold], labels[hold])
    before = calibration_report(parent.probabilities(logits[hold]), labels[hold])
    after = calibration_report(refit.probabilities(logits[hold]), labels[hold])
    val_before, val_after = _validation_nll(model, refit)
    received = [r.received_at for r in rows]
    common = dict(
        old_temperature=float(np.atleast_1d(parent.temperature)[0]), new_temperature=float(np.atleast_1d(refit.temperature)[0]),
        fit_rows=len(fit_idx), holdout_rows=n_hold, holdout_nll_before=before["nll"], holdout_nll_after=after["nll"],
        holdout_ece_before=before["ece"], holdout_ece_after=after["ece"], method=refit.method,
        selected_by=chosen.summary or "", nll_improvement=gain.value, nll_improvement_low=gain.low,
        nll_improvement_high=gain.high, window_start=min(received), window_end=max(received),
        label_counts=np.bincount(labels, minlength=k).tolist(), rows_without_logits=without_logits,
        validation_nll_before=val_before, validation_nll_after=val_after, included_client_recorded=included_client_recorded,
    )  # fmt: skip
    if refit.clamped:
        return Recalibration(False, None, message="the fitted temperature lies at a bound of its range; nothing published",
                             **common)  # fmt: skip
    if gain.low <= 0:
        return Recalibration(False, None, message=f"held-out NLL decrease {gain} is not significantly above 0 (90% paired "
                                                  "bootstrap); nothing published", **common)  # fmt: skip
    if dry_run:
        return Recalibration(False, None, message=f"dry run: held-out NLL would decrease by {gain}; nothing published",
                             **common)  # fmt: skip
    m = model.manifest
    holdout = f"feedback holdout of {m.name}/{m.version} ({n_hold} rows)"
    try:
        folder = publish_child(
            repository, m,
            write_model=lambda path: set_calibrator(model.folder / MODEL_FILE, path, refit),
            refit=Refit(refit, f"feedback of {m.name}/{m.version}: {len(fit_idx)} rows fitted, {n_hold} held out",
                        gain.as_list(), chosen.summary),
            metrics=Metrics(holdout, m.metrics.n_bins, MetricSet(**before), MetricSet(**after)),
        )  # fmt: skip
    except OSError as e:  # a read-only or full repository: publish_child leaves nothing half-written
        raise FailedPrecondition(f"cannot write the new version into the model repository ({e.strerror or e}); "
                                 "nothing was published. Make the repository writable for the server") from None
    return Recalibration(True, int(folder.name), message=f"published {m.name} version {folder.name}: held-out NLL "
                                                         f"decrease {gain}", **common)  # fmt: skip
