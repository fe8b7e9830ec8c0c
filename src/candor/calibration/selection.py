"""Choosing and checking a calibrator: ``--method auto`` and the significance gate of a refit.

Both compare per-row NLL on rows the compared calibrators were not fitted on, with the
paired bootstrap of :mod:`candor.calibration.intervals` (1,000 resamples, seed 0, 90%).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from candor.calibration.calibrators import METHODS, REGISTRY, Calibrator, CalibratorError, TemperatureScaling, fit_calibrator
from candor.calibration.intervals import Interval, paired_improvement
from candor.calibration.metrics import row_nll

AUTO = "auto"
CHOICES = (*METHODS, AUTO)  # what --method / --calibrator accept
AUTO_FOLDS = 5


@dataclass(frozen=True)
class Selection:
    calibrator: Calibrator
    summary: str | None  # how auto chose the method, in words (goes to the manifest); None when named


def improvement(before: Calibrator, after: Calibrator, logits: np.ndarray, labels: np.ndarray) -> Interval:
    """Mean per-row NLL decrease from ``before`` to ``after`` on held-out rows, with its paired interval."""
    return paired_improvement(row_nll(before.probabilities(logits), labels), row_nll(after.probabilities(logits), labels))


def select_calibrator(logits: np.ndarray, labels: np.ndarray, seed: int = 0) -> Selection:
    """Pick a method by 5-fold cross-validated NLL and fit it on every row.

    Simpler first: temperature is the default, and a richer method (the registry's next
    candidates in order: BCTS, vector, matrix, then Dirichlet) takes its place only when its out-of-fold NLL improvement over the
    current choice has a 90% paired-bootstrap interval above 0. Methods with more
    parameters than the folds' rows are skipped, and the summary says so.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    folds = np.array_split(np.random.default_rng(seed).permutation(len(z)), AUTO_FOLDS)
    train_rows = len(z) - max(len(f) for f in folds)
    oof: dict[str, np.ndarray] = {}
    skipped = []
    candidates = [name for name, cls in REGISTRY.items() if cls.in_auto]
    for method in candidates:
        need = REGISTRY[method].minimum_rows(z.shape[1])
        if train_rows < need:
            skipped.append(f"{method} (needs {need} rows per fold, has {train_rows})")
            continue
        losses = np.empty(len(z))
        for i, held in enumerate(folds):
            train = np.concatenate([f for j, f in enumerate(folds) if j != i])
            fitted = fit_calibrator(method, z[train], y[train], seed=seed)
            losses[held] = row_nll(fitted.probabilities(z[held]), y[held])
        oof[method] = losses
    chosen = TemperatureScaling.name
    notes = [f"{chosen} {oof[chosen].mean():.4f}"]
    for method in [m for m in candidates if m in oof and m != chosen]:
        gain = paired_improvement(oof[chosen], oof[method])
        notes.append(f"{method} {oof[method].mean():.4f} (vs {chosen}: {gain})")
        if gain.low > 0:
            chosen = method
    summary = f"auto: {AUTO_FOLDS}-fold CV NLL " + "; ".join(notes) + f"; chose {chosen}"
    if skipped:
        summary += "; skipped " + ", ".join(skipped)
    try:
        return Selection(fit_calibrator(chosen, z, y, seed=seed), summary)
    except CalibratorError as e:  # cannot happen for a method that fitted on every fold; kept explicit
        raise CalibratorError(f"auto chose {chosen} but it cannot be fitted on all rows: {e}") from None


def fit_method(method: str, logits: np.ndarray, labels: np.ndarray, task: str = "multiclass", per_class: bool = False,
               seed: int = 0) -> Selection:  # fmt: skip
    """``method`` (one of :data:`METHODS` or ``auto``) fitted on the rows."""
    if method == AUTO:
        if task != "multiclass":
            fitted = TemperatureScaling.fit(logits, labels, task, per_class)
            return Selection(fitted, f"auto: {task} models use temperature")
        return select_calibrator(logits, labels, seed)
    if method not in METHODS:
        raise CalibratorError(f"unknown calibration method {method!r}; choose one of {', '.join(CHOICES)}")
    return Selection(fit_calibrator(method, logits, labels, task, per_class, seed), None)
