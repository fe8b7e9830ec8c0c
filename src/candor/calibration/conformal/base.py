"""What every conformal score is: a nonconformity score s(x, y) of each class, and the set it serves.

Conventions (split conformal prediction, Vovk et al. 2005; Angelopoulos & Bates 2021):

* a method gives every class of a row a score from the row's *calibrated* probabilities,
  larger meaning "less like the model's belief" (:meth:`ConformalScore.class_scores`);
* on n calibration rows the threshold at coverage 1 - alpha is the
  ceil((n + 1)(1 - alpha))-th smallest score of the true labels (:func:`threshold`), which
  exists only when 1 - alpha <= n / (n + 1);
* a row's set is every class whose score is at most the threshold (ties are in). With the
  calibration and test rows exchangeable, P(y in set) >= 1 - alpha, and below
  1 - alpha + 1 / (n + 1) when the scores have no ties.

The same membership rule holds for every method (as in TorchCP; MAPIE's APS instead adds
the class that crosses the threshold, ``include_last_label``: see docs/calibration-methods.md).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

# Scores equal to the threshold are in. A cumulative sum that reaches the last class is 1 up to
# rounding (0.9999999999999999 or 1.0000000000000002 for the same mass), so equality is taken to
# this tolerance; it can only add classes, never break the coverage guarantee.
TIE_TOLERANCE = 1e-9


class ConformalError(ValueError):
    """A coverage level or a method this calibration split cannot serve; the message says why."""


@dataclass(frozen=True)
class ConformalScore(ABC):
    """A nonconformity score. ``randomised`` scores draw one uniform u per row (APS, RAPS)."""

    name: ClassVar[str]  # its name in manifests, flags and the wire
    title: ClassVar[str]
    randomisable: ClassVar[bool] = False

    randomised: bool = False

    @abstractmethod
    def class_scores(self, probs: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        """Scores ``[N, K]`` of every class of every row; ``u`` ``[N]`` in [0, 1) when randomised."""

    def label_scores(self, probs: np.ndarray, labels: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        """Scores ``[N]`` of the true labels: what a calibration split stores."""
        scores = self.class_scores(probs, u)
        return scores[np.arange(len(scores)), np.asarray(labels, dtype=np.int64)]

    def sets(self, probs: np.ndarray, thresholds: float | np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        """Membership ``[N, K]`` (bool): a class is in when its score is at most its threshold
        (one threshold, or ``[K]`` class-conditional ones), to :data:`TIE_TOLERANCE`."""
        return self.class_scores(probs, u) <= np.asarray(thresholds, dtype=np.float64) + TIE_TOLERANCE

    def ranked_scores(self, sorted_probs: np.ndarray) -> np.ndarray | None:
        """The scores of each row's classes in falling-probability order, from the probabilities so
        sorted: one sort then serves both the scores and the set's order. None where a score needs
        more than the sorted probabilities (randomised: its uniforms)."""
        return None

    @property
    def label(self) -> str:
        """How results name it: ``aps`` or ``aps_randomised``."""
        return self.name + ("_randomised" if self.randomised else "")


def _ceil(x: float) -> int:
    """ceil(x), taking a value within float rounding of a whole number as that number: 10 * 0.9 is
    9.000000000000002 and 1 / (1 - 0.9999) is 10000.0000000011, and both mean the whole number."""
    nearest = round(x)
    return int(nearest) if abs(x - nearest) <= 1e-9 * max(1.0, abs(x)) else math.ceil(x)


def order_statistic_rank(n: int, alpha: float) -> int:
    """ceil((n + 1)(1 - alpha))."""
    return _ceil((n + 1) * (1 - alpha))


def rows_needed(alpha: float) -> int:
    """Fewest calibration rows that give a threshold at coverage 1 - alpha: ceil(1 / alpha) - 1."""
    return _ceil(1 / alpha) - 1


def check_level(coverage: float) -> float:
    """alpha for a coverage level, refusing one outside (0, 1)."""
    if not (isinstance(coverage, int | float) and 0 < coverage < 1):
        raise ConformalError(f"coverage must lie in (0, 1), got {coverage!r}")
    return 1.0 - float(coverage)


def threshold(scores: np.ndarray, coverage: float, what: str = "the calibration split") -> float:
    """The score at or below which a class is in the set, for ``coverage`` = 1 - alpha."""
    alpha = check_level(coverage)
    s = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(s)
    rank = order_statistic_rank(n, alpha)
    if rank > n:
        finest = n / (n + 1)
        raise ConformalError(f"coverage {coverage:g} needs at least {rows_needed(alpha)} calibration rows; {what} has {n}, "
                             f"which supports coverage up to {finest:.6g} (n / (n + 1))")  # fmt: skip
    return float(s[rank - 1])


def class_thresholds(scores: np.ndarray, labels: np.ndarray, coverage: float, num_classes: int) -> np.ndarray:
    """Class-conditional (Mondrian) thresholds ``[K]``: each class's own calibration rows."""
    labels = np.asarray(labels, dtype=np.int64)
    alpha = check_level(coverage)
    counts = np.bincount(labels, minlength=num_classes)
    short = [k for k in range(num_classes) if order_statistic_rank(int(counts[k]), alpha) > counts[k]]
    if short:
        shown = ", ".join(f"class {k} has {counts[k]}" for k in short[:5]) + (" ..." if len(short) > 5 else "")
        raise ConformalError(f"class-conditional coverage {coverage:g} needs at least {rows_needed(alpha)} calibration rows "
                             f"per class; {shown}")  # fmt: skip
    return np.array([threshold(scores[labels == k], coverage, f"class {k}") for k in range(num_classes)])


def descending(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Classes by falling probability (ties by class index), each class's 1-based rank, and the sorted probabilities."""
    order = np.argsort(-probs, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, probs.shape[1] + 1)[None, :].repeat(len(probs), 0), axis=1)
    return order, ranks, np.take_along_axis(probs, order, axis=1)
