"""Bias-corrected temperature scaling (BCTS): s = z / T + b, one T > 0 and a per-class bias.

Alexandari, Kundaje & Shrikumar (2020) found it the calibrator to put under EM prior
estimation (:mod:`candor.calibration.label_shift`): the bias corrects the systematic
per-class offsets a single temperature leaves, which EM would otherwise read as a change in
the class mix. With u = 1/T the NLL of softmax(u z + b) is convex in (u, b), so L-BFGS on
(u, b) from the temperature fit finds the optimum; b is defined up to a constant (softmax
does not see one), and is stored centred (mean 0).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from candor.calibration.calibrators.base import Calibrator, HeadStep, nll_and_grad
from candor.calibration.temperature import T_MAX, T_MIN, Task, fit_temperature


class BiasCorrectedTemperature(Calibrator):
    name: ClassVar[str] = "bcts"
    title: ClassVar[str] = "bias-corrected temperature scaling"
    head: ClassVar[tuple[HeadStep, ...]] = (HeadStep("Add", "bias"),)
    fits_temperature: ClassVar[bool] = True
    row_shift_invariant: ClassVar[bool] = True  # z + c gives s + c / T

    @classmethod
    def minimum_rows(cls, num_classes: int) -> int:
        return num_classes + 1

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray, task: Task = "multiclass", per_class: bool = False,
            seed: int = 0) -> BiasCorrectedTemperature:  # fmt: skip
        z, y = cls.checked_rows(logits, labels, task)
        k = z.shape[1]
        onehot = np.eye(k)[y]

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            u, b = theta[0], theta[1:]
            loss, g = nll_and_grad(u * z + b, onehot)
            return loss, np.concatenate([[np.sum(g * z)], g.sum(axis=0)])

        start = 1.0 / float(fit_temperature(z, y).value)
        bounds = [(1.0 / T_MAX, 1.0 / T_MIN)] + [(None, None)] * k
        from scipy.optimize import minimize  # imported on first use: scipy.optimize adds about 0.2 s to every `candor` start
        res = minimize(objective, np.concatenate([[start], np.zeros(k)]), jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": 2000, "gtol": 1e-10, "ftol": 1e-15})  # fmt: skip
        u, b = float(res.x[0]), res.x[1:]
        clamped = bool(np.isclose(u, 1.0 / T_MAX) or np.isclose(u, 1.0 / T_MIN))
        return cls(np.asarray(1.0 / u), bias=b - b.mean(), clamped=clamped)

    def describe(self) -> str:
        return f"BCTS T={float(self.temperature):.4f}, bias {self.bias.min():+.3f}..{self.bias.max():+.3f}"
