"""A version's conformal calibration split: stored once, re-derived for every child, reported on test.

``conformal.npz`` next to the graph holds the split's raw logits, labels and the uniforms
of the randomised scores (the network's, shared by every child), and the nonconformity
scores of every method through *this* version's calibrator. A child that changes the
calibrator gets the same rows re-scored through its own (:func:`rederive`), so any
coverage level can be served without retraining, from rows no fit has seen.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from candor.calibration.calibrators import Calibrator
from candor.calibration.conformal.base import ConformalScore, class_thresholds, threshold
from candor.calibration.conformal.raps import DEFAULT_K_REG, DEFAULT_PENALTY
from candor.calibration.conformal.registry import METHODS, RECOMMENDED, score_of
from candor.calibration.intervals import coverage_interval
from candor.calibration.manifest import ConformalResult, ConformalSpec

CONFORMAL_FILE = "conformal.npz"
LEVELS = (0.8, 0.9, 0.95)  # reported on the test split for every method
DEFAULT_COVERAGE = 0.9
INTERVAL = 0.9  # Clopper-Pearson level of the reported coverage


@dataclass(frozen=True)
class CalibrationSplit:
    logits: np.ndarray  # [n, K] raw
    labels: np.ndarray  # [n]
    u: np.ndarray  # [n] uniforms for the randomised scores
    scores: dict[str, np.ndarray]  # a score's label -> [n], through the version's calibrator


def scores_of(spec: ConformalSpec | None = None, penalty: float = DEFAULT_PENALTY, k_reg: int = DEFAULT_K_REG,
              randomised: bool = True) -> list[ConformalScore]:  # fmt: skip
    """Every registered score (randomised too where it can be), with the version's RAPS options."""
    if spec is not None:
        penalty, k_reg = spec.raps_penalty, spec.raps_k_reg
    found = []
    for name in METHODS:
        options = {"penalty_weight": penalty, "k_reg": k_reg} if name == "raps" else {}
        found.append(score_of(name, **options))
        if randomised and found[-1].randomisable:
            found.append(score_of(name, randomised=True, **options))
    return found


def derive_scores(calibrator: Calibrator, logits: np.ndarray, labels: np.ndarray, u: np.ndarray,
                  scores: list[ConformalScore]) -> dict[str, np.ndarray]:  # fmt: skip
    probs = calibrator.probabilities(logits)
    return {s.label: s.label_scores(probs, labels, u if s.randomised else None) for s in scores}


def write_split(folder: Path, split: CalibrationSplit) -> str:
    """Write ``conformal.npz`` atomically into ``folder``; returns its sha256."""
    buffer = io.BytesIO()
    np.savez(buffer, logits=split.logits.astype(np.float32), labels=split.labels.astype(np.int64),
             u=split.u.astype(np.float64), **{f"scores_{k}": v.astype(np.float64) for k, v in split.scores.items()})  # fmt: skip
    data = buffer.getvalue()
    fd, tmp = tempfile.mkstemp(prefix=f".{CONFORMAL_FILE}.", dir=folder)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, folder / CONFORMAL_FILE)
    return hashlib.sha256(data).hexdigest()


def read_split(folder: Path, spec: ConformalSpec) -> CalibrationSplit:
    """Read a version's split, refusing a file that is not the one its manifest names."""
    path = folder / spec.file
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot read the conformal scores: {e.strerror or e}") from e
    if hashlib.sha256(data).hexdigest() != spec.sha256:
        raise ValueError(f"{path}: sha256 does not match the manifest; the conformal scores were changed or corrupted")
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        scores = {key.removeprefix("scores_"): z[key] for key in z.files if key.startswith("scores_")}
        return CalibrationSplit(z["logits"].astype(np.float64), z["labels"], z["u"], scores)


def coverage_results(split: CalibrationSplit, probs: np.ndarray, labels: np.ndarray, scores: list[ConformalScore],
                     seed: int, class_conditional: bool) -> list[ConformalResult]:  # fmt: skip
    """Each score's sets on held-out ``probs`` at every level of :data:`LEVELS` (and per class, when asked)."""
    labels = np.asarray(labels, dtype=np.int64)
    u = np.random.default_rng(seed + 1).uniform(size=len(labels))
    k = probs.shape[1]
    results = []
    for score in scores:
        cal = split.scores[score.label]
        for level in LEVELS:
            for conditional in (False, True) if class_conditional else (False,):
                try:
                    q = class_thresholds(cal, split.labels, level, k) if conditional else threshold(cal, level)
                except ValueError:
                    continue  # the split cannot support this level; serving says so when asked
                sets = score.sets(probs, q, u if score.randomised else None)
                results.append(_result(score.label, conditional, level, sets, labels))
    return results


def _result(method: str, conditional: bool, level: float, sets: np.ndarray, labels: np.ndarray) -> ConformalResult:
    hit = sets[np.arange(len(labels)), labels]
    low, high = coverage_interval(int(hit.sum()), len(hit), INTERVAL)
    per_class = [hit[labels == c].mean() for c in np.unique(labels)]
    sizes = sets.sum(axis=1)
    return ConformalResult(method, conditional, level, float(hit.mean()), low, high, float(min(per_class)),
                           float(sizes.mean()), float(np.median(sizes)), float(np.mean(sizes == 0)),
                           float(np.mean(sizes == 1)))  # fmt: skip


def recommend(report: list[ConformalResult], coverage: float = DEFAULT_COVERAGE) -> str:
    """The served method with the smallest mean test set at ``coverage`` among those whose coverage
    interval reaches it (every one, if none does); :data:`RECOMMENDED` when nothing was measured."""
    served = [r for r in report if r.method in METHODS and not r.class_conditional and abs(r.coverage - coverage) < 1e-9]
    kept = [r for r in served if r.observed_high >= coverage] or served
    return min(kept, key=lambda r: (r.mean_size, METHODS.index(r.method))).method if kept else RECOMMENDED


def build(folder: Path, calibrator: Calibrator, logits: np.ndarray, labels: np.ndarray, *, fit_rows: int, seed: int,
          who: str, test_logits: np.ndarray, test_labels: np.ndarray, class_conditional: bool = False,
          penalty: float = DEFAULT_PENALTY, k_reg: int = DEFAULT_K_REG) -> ConformalSpec:  # fmt: skip
    """Score the calibration rows through ``calibrator``, store them in ``folder``, report on the test rows."""
    scores = scores_of(penalty=penalty, k_reg=k_reg)
    u = np.random.default_rng(seed).uniform(size=len(labels))
    split = CalibrationSplit(np.asarray(logits, dtype=np.float64), np.asarray(labels), u,
                             derive_scores(calibrator, logits, labels, u, scores))  # fmt: skip
    sha = write_split(folder, split)
    report = coverage_results(split, calibrator.probabilities(test_logits), test_labels, scores, seed, class_conditional)
    return ConformalSpec(
        file=CONFORMAL_FILE, sha256=sha, split=f"val, rows no fit has seen ({len(labels)} of {len(labels) + fit_rows})",
        rows=len(labels), fit_rows=fit_rows, seed=seed, stored_with=who, source=f"through {who}'s {calibrator.method} calibrator",
        methods=list(METHODS), recommended=recommend(report), default_coverage=DEFAULT_COVERAGE, raps_penalty=penalty,
        raps_k_reg=k_reg, class_conditional=class_conditional, test_split=report,
    )  # fmt: skip


def rederive(parent_folder: Path, parent: ConformalSpec, folder: Path, calibrator: Calibrator, who: str,
             test_logits: np.ndarray | None = None, test_labels: np.ndarray | None = None) -> ConformalSpec:  # fmt: skip
    """The child's split: the parent's rows re-scored through the child's calibrator, and its test report
    re-measured when the test rows are at hand (else the parent's stays, said so in the source)."""
    stored = read_split(parent_folder, parent)
    scores = scores_of(parent)
    split = CalibrationSplit(stored.logits, stored.labels, stored.u,
                             derive_scores(calibrator, stored.logits, stored.labels, stored.u, scores))  # fmt: skip
    sha = write_split(folder, split)
    report, source = parent.test_split, f"through {who}'s {calibrator.method} calibrator (test report: the parent's)"
    if test_logits is not None:
        report = coverage_results(split, calibrator.probabilities(test_logits), test_labels, scores, parent.seed,
                                  parent.class_conditional)  # fmt: skip
        source = f"through {who}'s {calibrator.method} calibrator"
    return ConformalSpec(**{**parent.__dict__, "sha256": sha, "source": source, "test_split": report})


def from_rows(folder: Path, parent: ConformalSpec, calibrator: Calibrator, logits: np.ndarray, labels: np.ndarray, *,
              who: str, split: str, test_logits: np.ndarray, test_labels: np.ndarray) -> ConformalSpec:  # fmt: skip
    """New calibration rows (e.g. a feedback window) for a child, with the parent's methods and options;
    its report is measured on ``test_logits`` (rows none of these are)."""
    scores = scores_of(parent)
    u = np.random.default_rng(parent.seed).uniform(size=len(labels))
    rows = CalibrationSplit(np.asarray(logits, dtype=np.float64), np.asarray(labels), u,
                            derive_scores(calibrator, logits, labels, u, scores))  # fmt: skip
    sha = write_split(folder, rows)
    report = coverage_results(rows, calibrator.probabilities(test_logits), test_labels, scores, parent.seed,
                              parent.class_conditional)  # fmt: skip
    return ConformalSpec(**{**parent.__dict__, "file": CONFORMAL_FILE, "sha256": sha, "split": split, "rows": len(labels),
                            "fit_rows": 0, "stored_with": who, "source": f"through {who}'s {calibrator.method} calibrator",
                            "recommended": parent.recommended, "test_split": report})  # fmt: skip
