"""Refit a served version's temperature on its stored feedback and publish the
result as the next version when held-out NLL improves.

Feedback stores the probabilities that were served, p = softmax(z / T_old).
Since softmax ignores a constant shift, T_old * log(p) are logits equivalent
to z for temperature scaling, so rows that came with probabilities only are
as usable as rows with logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from candor.calibration import calibration_report, fit_temperature, nll, softmax
from candor.calibration.lineage import Calibrator, publish_child
from candor.calibration.manifest import MODEL_FILE, Metrics, MetricSet
from candor.calibration.reference import build_reference
from candor.graph import set_temperature
from candor.server.core.errors import FailedPrecondition, InvalidArgument
from candor.server.core.model import LoadedModel
from candor.server.core.store import FeedbackRow


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


def recalibrate(repository: Path, model: LoadedModel, rows: list[FeedbackRow], holdout_share: float = 0.3,
                min_rows: int = 100, dry_run: bool = False, seed: int = 0) -> Recalibration:  # fmt: skip
    """Blocking (file writes): run it in a thread."""
    if not 0 < holdout_share < 1:
        raise InvalidArgument(f"holdout_share must lie in (0, 1), got {holdout_share}")
    if model.multilabel or model.manifest.temperature.per_class:
        raise InvalidArgument("recalibration from feedback covers multiclass models with one temperature")
    if len(rows) < min_rows:
        raise FailedPrecondition(f"model {model.name!r} version {model.version} has {len(rows)} feedback rows; "
                                 f"recalibration needs at least {min_rows}")  # fmt: skip
    t_old = float(model.manifest.temperature.value[0])
    probs = np.stack([r.probabilities for r in rows]).astype(np.float64)
    labels = np.array([r.label for r in rows])
    logits = t_old * np.log(np.clip(probs, 1e-12, 1.0))
    order = np.random.default_rng(seed).permutation(len(rows))
    n_hold = max(1, int(round(holdout_share * len(rows))))
    hold, fit_idx = order[:n_hold], order[n_hold:]
    fitted = fit_temperature(logits[fit_idx], labels[fit_idx])
    t_new = float(fitted.value)
    before, after = softmax(logits[hold], t_old), softmax(logits[hold], t_new)
    report_before = calibration_report(before, labels[hold])
    report_after = calibration_report(after, labels[hold])
    improved = nll(after, labels[hold]) < nll(before, labels[hold]) - 1e-9
    common = dict(old_temperature=t_old, new_temperature=t_new, fit_rows=len(fit_idx), holdout_rows=n_hold,
                  holdout_nll_before=report_before["nll"], holdout_nll_after=report_after["nll"],
                  holdout_ece_before=report_before["ece"], holdout_ece_after=report_after["ece"])  # fmt: skip
    if not improved:
        return Recalibration(False, None, message="held-out NLL did not improve; nothing published", **common)
    if dry_run:
        return Recalibration(False, None, message="dry run: held-out NLL would improve; nothing published", **common)

    m = model.manifest
    holdout = f"feedback holdout of {m.name}/{m.version}"
    folder = publish_child(
        repository, m,
        write_model=lambda path: set_temperature(model.folder / MODEL_FILE, path, t_new),
        calibrator=Calibrator([t_new], f"feedback of {m.name}/{m.version}: {len(fit_idx)} rows fitted, {n_hold} held out",
                              fitted.clamped),
        metrics=Metrics(holdout, m.metrics.n_bins, MetricSet(**report_before), MetricSet(**report_after)),
        reference=build_reference(after, labels[hold], holdout),
    )  # fmt: skip
    return Recalibration(True, int(folder.name), message=f"published {m.name} version {folder.name}", **common)
