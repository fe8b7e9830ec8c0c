"""RAPS, regularised adaptive prediction sets (Angelopoulos, Bates, Malik & Jordan, 2021).

The APS score plus ``penalty * max(0, rank_y - k_reg)``, rank 1-based: classes beyond the
``k_reg`` most probable cost extra, which keeps sets small when the tail probabilities
are noisy. Penalty and k_reg are recorded with every version's scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from candor.calibration.conformal.aps import APS

DEFAULT_PENALTY = 0.01
DEFAULT_K_REG = 1


@dataclass(frozen=True)
class RAPS(APS):
    name: ClassVar[str] = "raps"
    title: ClassVar[str] = "RAPS (cumulative probability + rank penalty)"

    penalty_weight: float = DEFAULT_PENALTY
    k_reg: int = DEFAULT_K_REG

    def penalty(self, ranks: np.ndarray) -> np.ndarray:
        return self.penalty_weight * np.maximum(ranks - self.k_reg, 0)
