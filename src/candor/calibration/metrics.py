"""Proper scores and accuracy for multiclass probabilities.

``probs`` is ``[N, K]`` (or 1-D binary P(class 1)), ``labels`` integers in
``[0, K)``. Probabilities are clipped at ``EPS`` before logs so that a
confident mistake costs a large but finite NLL.
"""

from __future__ import annotations

import numpy as np

from candor.calibration._inputs import as_probs_and_labels

EPS = 1e-12


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose argmax (first one on ties) equals the label."""
    p, y = as_probs_and_labels(probs, labels)
    return float(np.mean(p.argmax(axis=1) == y))


def row_nll(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Negative log-likelihood of each row's true class, natural log, ``[N]``."""
    p, y = as_probs_and_labels(probs, labels)
    return -np.log(np.clip(p[np.arange(len(y)), y], EPS, 1.0))


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class, natural log."""
    return float(np.mean(row_nll(probs, labels)))


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multiclass Brier score: mean over rows of the squared error summed over
    the K classes (range [0, 2]). For a binary 1-D input this is twice the
    common single-column binary Brier score, by the sum-over-classes convention.
    """
    p, y = as_probs_and_labels(probs, labels)
    return float(np.mean(np.sum((p - np.eye(p.shape[1])[y]) ** 2, axis=1)))
