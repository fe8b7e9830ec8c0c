"""Injected label noise, for experiments on how smoothing copes with wrong labels.

Noise goes into the training split only; validation and test stay clean, as
the trusted held-out data a temperature is fitted and judged on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

NoiseKind = Literal["symmetric", "pair", "matrix"]


def transition_matrix(kind: NoiseKind, rate: float, k: int, matrix_file: str | None = None) -> np.ndarray:
    """Row-stochastic [K, K] matrix T with T[i, j] = P(observed j | true i).

    * ``symmetric``: keep with 1 - rate, else a uniformly chosen other class.
    * ``pair``: keep with 1 - rate, else the next class (k -> k + 1 mod K);
      the usual class-dependent benchmark noise.
    * ``matrix``: read from ``matrix_file`` (.npy or .csv), any class-dependent noise.
    """
    if kind == "matrix":
        if not matrix_file:
            raise ValueError("noise kind 'matrix' needs --noise-matrix FILE")
        path = Path(matrix_file)
        try:
            m = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter=",", ndmin=2)
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: cannot read noise matrix ({e})") from e
        m = np.asarray(m, dtype=np.float64)
        if m.shape != (k, k) or np.any(m < 0) or not np.allclose(m.sum(axis=1), 1, atol=1e-6):
            raise ValueError(f"{path}: noise matrix must be [{k}, {k}], non-negative, rows summing to 1; got shape {m.shape}")
        return m
    if not 0 <= rate < 1:
        raise ValueError(f"label noise rate must lie in [0, 1), got {rate}")
    if kind == "symmetric":
        m = np.full((k, k), rate / (k - 1))
    elif kind == "pair":
        m = np.zeros((k, k))
        m[np.arange(k), (np.arange(k) + 1) % k] = rate
    else:
        raise ValueError(f"noise kind must be symmetric, pair or matrix, got {kind!r}")
    np.fill_diagonal(m, 1 - rate)
    return m


def add_label_noise(labels: np.ndarray, matrix: np.ndarray, seed: int) -> np.ndarray:
    """Draw each observed label from row ``matrix[true label]``, seeded."""
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(matrix[labels], axis=1)
    draws = rng.random(len(labels))[:, None]
    return np.minimum((draws > cumulative).sum(axis=1), matrix.shape[0] - 1).astype(np.int64)


def flip_multilabel(targets: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """Flip each 0/1 multi-label target independently with probability ``rate``."""
    if not 0 <= rate < 1:
        raise ValueError(f"label noise rate must lie in [0, 1), got {rate}")
    flips = np.random.default_rng(seed).random(targets.shape) < rate
    return np.where(flips, 1 - targets, targets).astype(targets.dtype)
