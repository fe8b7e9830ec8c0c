"""Losses and smoothed targets, one concept per module.

Every smoothed target is q = (1 - eps) * onehot(y) + eps * u, for a chosen u:

============  =======================================================
convention    u
============  =======================================================
uniform       1/K over all K classes (torch's ``label_smoothing``)
off_target    1/(K-1) over the K-1 wrong classes (true class = 1-eps)
prior         the training split's class frequencies
hierarchy     similarity to the true class from a class tree or matrix
teacher       a teacher model's probabilities at its own temperature
============  =======================================================

Multi-label uses per-class binary targets y(1 - eps) + (1 - y) eps.
"""

from candor.trainer.losses.multilabel import smoothed_bce, smoothed_binary_targets
from candor.trainer.losses.soft_ce import soft_cross_entropy
from candor.trainer.losses.targets import (
    CONVENTIONS,
    label_smoothing_loss,
    off_target_rows,
    prior_rows,
    smoothed_targets,
    uniform_rows,
)

__all__ = [
    "CONVENTIONS",
    "label_smoothing_loss",
    "off_target_rows",
    "prior_rows",
    "smoothed_bce",
    "smoothed_binary_targets",
    "smoothed_targets",
    "soft_cross_entropy",
    "uniform_rows",
]
