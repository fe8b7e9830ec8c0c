"""Re-conformalise a served version from a window of its feedback: new calibration rows for its
prediction sets, published as a child only when they beat the version's own on held-out rows.

The window's rows with logits are split as a refit's are (``holdout_share`` held out, seeded). At
the version's promised level and recommended method, the held-out coverage of the current scores
and of scores from the window's other rows are compared: a child is published when the current
coverage's 90% Clopper-Pearson interval excludes the target and the new coverage is closer to it.
The child keeps the network and the calibrator; only conformal.npz changes.

The assumption, as for any conformal calibration: the window is exchangeable with the traffic to
come. Re-conformalise on a window from after the shift (``since``), not across it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from candor.calibration.conformal import ConformalError, class_thresholds, threshold
from candor.calibration.conformal.split import from_rows
from candor.calibration.intervals import coverage_interval
from candor.calibration.lineage import publish_child
from candor.calibration.manifest import MODEL_FILE
from candor.calibration.metrics import nll
from candor.server.core.errors import FailedPrecondition
from candor.server.core.model import LoadedModel
from candor.server.core.recalibrate import MIN_SIDE_ROWS, Recalibration
from candor.server.core.sets import no_sets_reason
from candor.server.core.store import FeedbackRow

CONFORMAL = "conformal"  # the Recalibrate method that refreshes the conformal scores


def _covered(member: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    hit = int(member[np.arange(len(labels)), labels].sum())
    return hit / len(labels), *coverage_interval(hit, len(labels))


def reconformalise(repository: Path, model: LoadedModel, rows: list[FeedbackRow], holdout_share: float = 0.3,
                   min_rows: int = 100, dry_run: bool = False, seed: int = 0,
                   included_client_recorded: bool = False) -> Recalibration:  # fmt: skip
    """Blocking (file writes): run it in a thread. ``rows``: the window, oldest first."""
    sets = model.opened.sets
    if sets is None:
        raise no_sets_reason(model.manifest)
    usable = [r for r in rows if r.logits is not None]
    m, spec = model.manifest, sets.spec
    if len(usable) < min_rows:
        raise FailedPrecondition(f"model {m.name!r} version {m.version} has {len(usable)} feedback rows with logits in the "
                                 f"window; re-conformalising needs at least {min_rows}")  # fmt: skip
    logits = np.stack([r.logits for r in usable]).astype(np.float64)
    labels = np.array([r.label for r in usable], dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_hold = max(1, int(round(holdout_share * len(labels))))
    hold, fit = order[:n_hold], order[n_hold:]
    if min(len(hold), len(fit)) < MIN_SIDE_ROWS:
        raise FailedPrecondition(f"holding out {holdout_share:g} of {len(labels)} rows leaves {len(fit)} to score and "
                                 f"{n_hold} to check; each side needs at least {MIN_SIDE_ROWS}")  # fmt: skip
    level, method = spec.default_coverage, spec.recommended
    probs = model.calibrator.probabilities(logits)
    rule = sets.rule(level, method)
    fit_scores = rule.score.label_scores(probs[fit], labels[fit])
    try:
        new_q = (class_thresholds(fit_scores, labels[fit], level, m.num_classes) if spec.class_conditional
                 else threshold(fit_scores, level, "the window"))  # fmt: skip
    except ConformalError as e:
        raise FailedPrecondition(str(e)) from None
    before = _covered(rule.score.sets(probs[hold], rule.thresholds), labels[hold])
    after = _covered(rule.score.sets(probs[hold], new_q), labels[hold])
    t = float(np.atleast_1d(model.calibrator.temperature)[0])
    held_nll = nll(probs[hold], labels[hold])
    received = [r.received_at for r in rows]
    common = dict(
        old_temperature=t, new_temperature=t, fit_rows=len(fit), holdout_rows=n_hold, holdout_nll_before=held_nll,
        holdout_nll_after=held_nll, holdout_ece_before=0.0, holdout_ece_after=0.0, method=CONFORMAL,
        window_start=min(received), window_end=max(received), label_counts=np.bincount(labels, minlength=m.num_classes).tolist(),
        rows_without_logits=len(rows) - len(usable), included_client_recorded=included_client_recorded,
        coverage_target=level, holdout_coverage_before=before[0], holdout_coverage_before_low=before[1],
        holdout_coverage_before_high=before[2], holdout_coverage_after=after[0], holdout_coverage_after_low=after[1],
        holdout_coverage_after_high=after[2],
    )  # fmt: skip
    shown = f"{method} sets at {level:g} cover {before[0]:.3f} [{before[1]:.3f}, {before[2]:.3f}] of {n_hold} held-out rows"
    if before[1] <= level <= before[2]:
        return Recalibration(False, None, message=f"{shown}: the target is inside the interval; nothing published",
                             **common)  # fmt: skip
    if abs(after[0] - level) >= abs(before[0] - level):
        return Recalibration(False, None, message=f"{shown}, the window's scores {after[0]:.3f}: no closer to {level:g}; "
                                                  "nothing published", **common)  # fmt: skip
    change = f"{shown}; the window's scores cover {after[0]:.3f} [{after[1]:.3f}, {after[2]:.3f}]"
    if dry_run:
        return Recalibration(False, None, message=f"dry run: {change}; nothing published", **common)
    window = f"feedback window of {m.name}/{m.version} ({len(fit)} rows; {n_hold} more held out to check)"
    try:
        folder = publish_child(
            repository, m, write_model=lambda path: shutil.copy2(model.folder / MODEL_FILE, path),
            conformal=lambda folder, who: from_rows(folder, spec, model.calibrator, logits[fit], labels[fit], who=who,
                                                    split=window, test_logits=logits[hold], test_labels=labels[hold]),
        )  # fmt: skip
    except OSError as e:
        raise FailedPrecondition(f"cannot write the new version into the model repository ({e.strerror or e}); "
                                 "nothing was published. Make the repository writable for the server") from None
    return Recalibration(True, int(folder.name), message=f"published {m.name} version {folder.name}: {change}", **common)
