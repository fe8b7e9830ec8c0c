"""Temperature scaling: s = z / T, one T > 0 (Guo et al., 2017); one T per class for multi-label.

The fit is :func:`candor.calibration.temperature.fit_temperature` (a bounded 1-D solve on
log T); this class is how the rest of Candor holds and applies its result.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from candor.calibration.calibrators.base import Calibrator, CalibratorError
from candor.calibration.temperature import Task, fit_temperature


class TemperatureScaling(Calibrator):
    name: ClassVar[str] = "temperature"
    title: ClassVar[str] = "temperature scaling"
    tasks: ClassVar[tuple[Task, ...]] = ("multiclass", "binary", "multilabel")
    row_shift_invariant: ClassVar[bool] = True
    fits_temperature: ClassVar[bool] = True

    @classmethod
    def of(cls, value: float | np.ndarray, clamped: bool = False) -> TemperatureScaling:
        """Temperature scaling at ``value`` (a float, or ``[K]`` per class)."""
        return cls(np.asarray(value, dtype=np.float64), clamped=clamped)

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray, task: Task = "multiclass", per_class: bool = False,
            seed: int = 0) -> TemperatureScaling:  # fmt: skip
        try:
            fitted = fit_temperature(logits, labels, task, per_class=per_class)
        except ValueError as e:
            raise CalibratorError(str(e)) from None
        return cls.of(fitted.value, fitted.clamped)

    def describe(self) -> str:
        t = np.atleast_1d(self.temperature)
        return f"temperature T={t[0]:.4f}" if t.size == 1 else "per-class temperature " + ", ".join(f"{v:.3f}" for v in t)
