"""Metrics for multi-label outputs: each class is its own binary event.

``probs`` ``[N, K]`` holds independent P(class k present) (sigmoid outputs);
``targets`` ``[N, K]`` are 0/1. Per class: accuracy at threshold 0.5, binary
NLL, Brier (p - y)**2, and ECE of P(present) in equal-width ``(lo, hi]`` bins.
Averages are macro (unweighted over classes).
"""

from __future__ import annotations

import numpy as np

from candor.calibration._inputs import as_multilabel
from candor.calibration.binning import DEFAULT_BINS
from candor.calibration.ece import per_class_ece
from candor.calibration.metrics import EPS


def row_binary_nll(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Each row's binary NLL averaged over its classes, ``[N]`` (the per-row loss a paired test compares)."""
    p, y = as_multilabel(probs, targets)
    pc = np.clip(p, EPS, 1 - EPS)
    return -np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc), axis=1)


def multilabel_report(probs: np.ndarray, targets: np.ndarray, n_bins: int = DEFAULT_BINS) -> dict:
    """Per-class metric lists and their macro averages.

    >>> r = multilabel_report(np.array([[0.9, 0.2]]), np.array([[1, 0]]))
    >>> r["accuracy"], r["per_class"]["accuracy"]
    (1.0, [1.0, 1.0])
    """
    p, y = as_multilabel(probs, targets)
    pc = np.clip(p, EPS, 1 - EPS)
    per_class = {
        "accuracy": np.mean((p > 0.5) == (y == 1), axis=0),
        "nll": -np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc), axis=0),
        "brier": np.mean((p - y) ** 2, axis=0),
        "ece": per_class_ece(p, y, n_bins),
    }
    report = {name: float(values.mean()) for name, values in per_class.items()}
    report["subset_accuracy"] = float(np.mean(np.all((p > 0.5) == (y == 1), axis=1)))
    report["per_class"] = {name: values.tolist() for name, values in per_class.items()}
    return report
