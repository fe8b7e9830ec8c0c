"""Conformal prediction sets from calibrated probabilities: scores, thresholds, sets, and what they cover.

>>> import numpy as np
>>> probs = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]])
>>> q = threshold(np.array([0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.05, 0.15, 0.25]), 0.9)  # 9th smallest of 9
>>> q
0.7
>>> LAC().sets(probs, q)  # p >= 0.3
array([[ True, False, False],
       [ True,  True, False]])
"""

from candor.calibration.conformal.aps import APS
from candor.calibration.conformal.base import (
    ConformalError,
    ConformalScore,
    check_level,
    class_thresholds,
    rows_needed,
    threshold,
)
from candor.calibration.conformal.lac import LAC
from candor.calibration.conformal.raps import RAPS
from candor.calibration.conformal.registry import METHODS, RECOMMENDED, REGISTRY, score_of

__all__ = ["APS", "LAC", "METHODS", "RAPS", "RECOMMENDED", "REGISTRY", "ConformalError", "ConformalScore", "check_level",
           "class_thresholds", "rows_needed", "score_of", "threshold"]
