"""The calibration methods Candor knows, simplest first (``--method auto`` tries them in this order).

Adding a method is one module with a :class:`~candor.calibration.calibrators.base.Calibrator`
subclass and one line here; the graph, the manifest, the trainer, the server and the tests
find it through :data:`REGISTRY`.
"""

from __future__ import annotations

import numpy as np

from candor.calibration.calibrators.base import Calibrator, CalibratorError, HeadStep
from candor.calibration.calibrators.bcts import BiasCorrectedTemperature
from candor.calibration.calibrators.dirichlet import DirichletCalibration
from candor.calibration.calibrators.matrix import MatrixScaling
from candor.calibration.calibrators.temperature import TemperatureScaling
from candor.calibration.calibrators.vector import VectorScaling
from candor.calibration.temperature import Task

REGISTRY: dict[str, type[Calibrator]] = {
    cls.name: cls for cls in (TemperatureScaling, BiasCorrectedTemperature, VectorScaling, MatrixScaling, DirichletCalibration)
}
METHODS: tuple[str, ...] = tuple(REGISTRY)


def method_class(name: str) -> type[Calibrator]:
    """The class of a registered method; :class:`CalibratorError` naming the choices otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise CalibratorError(f"unknown calibration method {name!r}; choose one of {', '.join(METHODS)}") from None


def with_head(steps: tuple[HeadStep, ...]) -> type[Calibrator] | None:
    """The method whose head is exactly ``steps`` (how a graph's head is read back), or None."""
    return next((cls for cls in REGISTRY.values() if cls.head == steps), None)


def minimum_rows(method: str, num_classes: int) -> int:
    return method_class(method).minimum_rows(num_classes)


def fit_calibrator(method: str, logits: np.ndarray, labels: np.ndarray, task: Task = "multiclass",
                   per_class: bool = False, seed: int = 0) -> Calibrator:  # fmt: skip
    """Fit ``method`` on held-out ``logits`` and ``labels``; raises :class:`CalibratorError`
    with the reason when it cannot (unknown method, too few rows, a task it does not cover)."""
    return method_class(method).fit(logits, labels, task, per_class, seed)
