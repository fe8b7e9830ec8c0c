"""Multi-label: independent sigmoids, each class a smoothed binary target."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smoothed_binary_targets(targets: torch.Tensor, epsilon: float) -> torch.Tensor:
    """y (1 - eps) + (1 - y) eps: a present class aims at 1 - eps, an absent one at eps."""
    if not 0 <= epsilon < 1:
        raise ValueError(f"epsilon must lie in [0, 1), got {epsilon}")
    return targets * (1 - epsilon) + (1 - targets) * epsilon


def smoothed_bce(logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy with logits against (already smoothed) [N, K] targets,
    averaged over rows and classes; ``class_weights`` [K] scale each column."""
    per_entry = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if class_weights is not None:
        per_entry = per_entry * class_weights
    return per_entry.mean()
