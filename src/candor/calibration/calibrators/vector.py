"""Vector scaling: s = z * a + b, a per-class scale and bias (Guo et al., 2017), by L-BFGS on NLL."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from candor.calibration.calibrators.base import Calibrator, HeadStep, nll_and_grad
from candor.calibration.temperature import Task


class VectorScaling(Calibrator):
    name: ClassVar[str] = "vector"
    title: ClassVar[str] = "vector scaling"
    head: ClassVar[tuple[HeadStep, ...]] = (HeadStep("Mul", "scale"), HeadStep("Add", "bias"))

    @classmethod
    def minimum_rows(cls, num_classes: int) -> int:
        return 2 * num_classes

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray, task: Task = "multiclass", per_class: bool = False,
            seed: int = 0) -> VectorScaling:  # fmt: skip
        z, y = cls.checked_rows(logits, labels, task)
        k = z.shape[1]
        onehot = np.eye(k)[y]

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            a, b = theta[:k], theta[k:]
            loss, g = nll_and_grad(z * a + b, onehot)
            return loss, np.concatenate([np.sum(g * z, axis=0), g.sum(axis=0)])

        from scipy.optimize import minimize  # imported on first use: scipy.optimize adds about 0.2 s to every `candor` start
        res = minimize(objective, np.concatenate([np.ones(k), np.zeros(k)]), jac=True, method="L-BFGS-B",
                       options={"maxiter": 2000, "gtol": 1e-9})  # fmt: skip
        return cls(scale=res.x[:k], bias=res.x[k:])

    def describe(self) -> str:
        return f"vector scaling (scale {self.scale.min():.3f}..{self.scale.max():.3f})"
