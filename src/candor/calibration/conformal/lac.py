"""LAC, least ambiguous set-valued classifier (Sadinle, Lei & Wasserman, 2019): s(x, y) = 1 - p_y.

The smallest sets on average for a given marginal coverage; MAPIE calls it ``lac``, TorchCP ``THR``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from candor.calibration.conformal.base import ConformalScore


class LAC(ConformalScore):
    name: ClassVar[str] = "lac"
    title: ClassVar[str] = "LAC (1 - p_y)"

    def class_scores(self, probs: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        return 1.0 - np.asarray(probs, dtype=np.float64)

    def ranked_scores(self, sorted_probs: np.ndarray) -> np.ndarray:
        return 1.0 - sorted_probs
