"""Cross-entropy against soft targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over rows of -sum_k q_k log softmax(z)_k.

    ``logits`` and ``targets`` are [N, K], each target row a distribution.
    Its gradient with respect to one row's logits is (p - q) / N.
    ``weights`` [N] (e.g. class weight of each row's label) turn the mean into
    sum(w_i * loss_i) / sum(w_i), as torch's weighted ``CrossEntropyLoss``
    does for hard labels.
    """
    per_row = -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1)
    if weights is None:
        return per_row.mean()
    return (weights * per_row).sum() / weights.sum()
