"""Validation of the arrays every metric takes, so that each metric can trust them."""

from __future__ import annotations

import numpy as np

# Rows of a probability matrix may drift from 1 by float32 rounding in an
# exported graph; anything further off is not a probability matrix.
_ROW_SUM_TOLERANCE = 1e-3


def as_probs(probs: np.ndarray) -> np.ndarray:
    """Return ``probs`` as float64 ``[N, K]``; a 1-D array is binary P(class 1)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probabilities must be [N, K] with K >= 2 or a 1-D binary array, got shape {p.shape}")
    if p.shape[0] == 0:
        raise ValueError("probabilities are empty: at least one row is needed")
    if not np.all(np.isfinite(p)):
        raise ValueError("probabilities contain NaN or infinite values")
    if np.any(p < 0) or np.any(p > 1):
        raise ValueError("probabilities must lie in [0, 1]")
    if np.any(np.abs(p.sum(axis=1) - 1.0) > _ROW_SUM_TOLERANCE):
        raise ValueError("each row of probabilities must sum to 1")
    return p


def as_labels(labels: np.ndarray, n: int, k: int) -> np.ndarray:
    """Return ``labels`` as int64 ``[n]``, each in ``[0, k)``."""
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels must be 1-D with {n} entries to match the probabilities, got shape {y.shape}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError("labels must be whole numbers")
    elif y.dtype.kind not in "iub":
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if n and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels must lie in [0, {k}), got values from {y.min()} to {y.max()}")
    return y


def as_probs_and_labels(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = as_probs(probs)
    return p, as_labels(labels, p.shape[0], p.shape[1])


def as_multilabel(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return per-class positive probabilities and 0/1 targets, both ``[N, K]``."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(targets)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"multi-label probabilities must be a non-empty [N, K] array, got shape {p.shape}")
    if y.shape != p.shape:
        raise ValueError(f"multi-label targets must have the probabilities' shape {p.shape}, got {y.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
        raise ValueError("multi-label probabilities must be finite and lie in [0, 1]")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("multi-label targets must be 0 or 1")
    return p, y.astype(np.float64)
