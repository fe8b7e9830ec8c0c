"""Smoothed targets q = (1 - eps) * onehot(y) + eps * u.

Conventions whose u depends only on the true class are given as a [K, K]
matrix of rows, row y being u for label y; the teacher's u is per example and
comes from :mod:`candor.trainer.losses.distillation`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from candor.trainer.losses.soft_ce import soft_cross_entropy

CONVENTIONS = ("none", "uniform", "off_target", "prior", "hierarchy", "teacher")


def uniform_rows(k: int) -> np.ndarray:
    """u = 1/K over all classes: true class gets 1 - eps + eps/K."""
    return np.full((k, k), 1.0 / k)


def off_target_rows(k: int) -> np.ndarray:
    """u = 1/(K-1) over the wrong classes: the true class gets exactly 1 - eps."""
    rows = np.full((k, k), 1.0 / (k - 1))
    np.fill_diagonal(rows, 0.0)
    return rows


def prior_rows(labels: np.ndarray, k: int) -> np.ndarray:
    """u = the empirical class frequencies of ``labels`` (the same for every row)."""
    prior = np.bincount(labels, minlength=k) / len(labels)
    return np.tile(prior, (k, 1))


def smoothed_targets(labels: torch.Tensor, epsilon: float, u: torch.Tensor) -> torch.Tensor:
    """q = (1 - eps) onehot(labels) + eps u.

    ``u`` is [N, K], one smoothing distribution per example: ``rows[labels]``
    for the per-class conventions, a teacher's probabilities for distillation.
    Each row of u sums to 1, so each row of q does too.
    """
    if not 0 <= epsilon < 1:
        raise ValueError(f"epsilon must lie in [0, 1), got {epsilon}")
    onehot = F.one_hot(labels, u.shape[-1]).to(u.dtype)
    return (1 - epsilon) * onehot + epsilon * u


def label_smoothing_loss(logits: torch.Tensor, labels: torch.Tensor, epsilon: float, convention: str = "uniform") -> torch.Tensor:
    """Label-smoothed cross-entropy for the fixed conventions ``uniform`` and ``off_target``.

    >>> z = torch.randn(4, 5); y = torch.tensor([0, 1, 2, 3])
    >>> torch.allclose(label_smoothing_loss(z, y, 0.1), torch.nn.CrossEntropyLoss(label_smoothing=0.1)(z, y))
    True
    """
    k = logits.shape[-1]
    rows = {"uniform": uniform_rows, "off_target": off_target_rows}.get(convention)
    if rows is None:
        raise ValueError(f"convention must be uniform or off_target here, got {convention!r}")
    u = torch.as_tensor(rows(k), dtype=logits.dtype)[labels]
    return soft_cross_entropy(logits, smoothed_targets(labels, epsilon, u))
