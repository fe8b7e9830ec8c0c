"""What every post-hoc calibrator is, whatever its method.

A calibrator maps raw logits z ``[N, K]`` to calibrated logits s and probabilities
softmax(s) (sigmoid(z / T) per class for multi-label, which only temperature covers).
Every method first divides by its temperature T (1 for the affine methods) and then
applies its :attr:`Calibrator.head`: a short sequence of :class:`HeadStep` (scale, add,
multiply by a matrix, log-softmax). The same steps are applied here in numpy and folded
into the ONNX graph by :mod:`candor.graph`, so the two cannot disagree; a method is a
subclass that declares its head and how it is fitted, and is found through
:mod:`candor.calibration.calibrators.registry`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

from candor.calibration.temperature import Task, log_softmax, scale_logits

Parameter = Literal["scale", "weight", "bias"]
Op = Literal["Mul", "Add", "MatMul", "LogSoftmax"]


class CalibratorError(ValueError):
    """A method cannot be fitted on these rows; the message says why."""


@dataclass(frozen=True)
class HeadStep:
    """One step after the temperature: ``x -> op(x, parameter)``.

    ``MatMul`` multiplies by the transposed weight (s = x @ weight^T), so a weight's
    rows are the calibrated classes; ``LogSoftmax`` takes no parameter.
    """

    op: Op
    parameter: Parameter | None = None

    def apply(self, x: np.ndarray, value: np.ndarray | None) -> np.ndarray:
        if self.op == "LogSoftmax":
            return log_softmax(x, axis=1)
        if self.op == "Mul":
            return x * value
        if self.op == "Add":
            return x + value
        return x @ value.T


@dataclass(frozen=True)
class Calibrator(ABC):
    """A fitted calibrator. Subclasses set :attr:`name`, :attr:`head` and :meth:`fit`."""

    name: ClassVar[str]  # the method's name in manifests, flags and the wire
    title: ClassVar[str]  # how a sentence names it: "vector scaling"
    head: ClassVar[tuple[HeadStep, ...]] = ()
    tasks: ClassVar[tuple[Task, ...]] = ("multiclass",)
    fits_temperature: ClassVar[bool] = False  # otherwise T is 1 and the head does all the work
    # True when s changes only by a per-row constant when z does: then logits recovered
    # from served probabilities (log p times T, up to a per-row constant) fit it as well as raw ones.
    row_shift_invariant: ClassVar[bool] = False
    in_auto: ClassVar[bool] = True  # a candidate of ``--method auto``, in registry order (simplest first)

    temperature: np.ndarray = field(default_factory=lambda: np.array(1.0))  # () or [K] (per-class, multi-label)
    scale: np.ndarray | None = None
    weight: np.ndarray | None = None  # [K, K]: s = x @ weight.T (+ bias)
    bias: np.ndarray | None = None
    regularisation: float | None = None  # how strongly the fit was pulled towards the identity, where it is
    clamped: bool = False  # the fit's optimum lay at a bound of its range
    details: dict = field(default_factory=dict, compare=False)  # how it was chosen, in numbers

    def __post_init__(self) -> None:
        wanted = set(self.parameter_names())
        for part in ("scale", "weight", "bias"):
            if (getattr(self, part) is not None) != (part in wanted):
                raise CalibratorError(f"{self.title} {'needs' if part in wanted else 'has no'} a {part}")

    @classmethod
    def parameter_names(cls) -> tuple[Parameter, ...]:
        return tuple(s.parameter for s in cls.head if s.parameter is not None)

    @classmethod
    def minimum_rows(cls, num_classes: int) -> int:
        """Fewest rows it is fitted on: one per free parameter (temperature: 1)."""
        return 1

    @classmethod
    @abstractmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray, task: Task = "multiclass", per_class: bool = False,
            seed: int = 0) -> Calibrator:  # fmt: skip
        """Fitted on held-out ``logits`` and ``labels``; :class:`CalibratorError` when it cannot be."""

    @property
    def method(self) -> str:
        return self.name

    @property
    def parameters(self) -> int:
        sizes = [getattr(self, p).size for p in self.parameter_names()]
        return sum(sizes) or int(self.temperature.size)

    def arrays(self) -> dict[Parameter, np.ndarray]:
        """The head's parameters by name (the temperature is separate)."""
        return {p: getattr(self, p) for p in self.parameter_names()}

    def close_to(self, other: Calibrator, tolerance: float = 1e-6) -> bool:
        """The same method with the same parameters to ``tolerance`` (a graph holds them in float32)."""
        mine, theirs = self.arrays(), other.arrays()
        return type(self) is type(other) and all(
            np.allclose(a, b, rtol=tolerance, atol=tolerance)
            for a, b in [(self.temperature, other.temperature), *((mine[p], theirs[p]) for p in mine)])  # fmt: skip

    def calibrated_logits(self, logits: np.ndarray) -> np.ndarray:
        x = np.asarray(logits, dtype=np.float64) / self.temperature
        for step in self.head:
            x = step.apply(x, None if step.parameter is None else getattr(self, step.parameter))
        return x

    def probabilities(self, logits: np.ndarray, task: Task = "multiclass") -> np.ndarray:
        if task != "multiclass":
            return scale_logits(logits, self.temperature, task)
        return np.exp(log_softmax(self.calibrated_logits(logits), axis=1))

    def describe(self) -> str:
        """One line for a CLI: the method and its parameters in brief."""
        extra = f", regularisation {self.regularisation:g}" if self.regularisation is not None else ""
        return f"{self.title} ({self.parameters} parameters{extra})"

    @classmethod
    def checked_rows(cls, logits: np.ndarray, labels: np.ndarray, task: Task) -> tuple[np.ndarray, np.ndarray]:
        """Logits as float64 ``[N, K]`` and labels as int64, or the reason they cannot be fitted."""
        if task not in cls.tasks:
            raise CalibratorError(f"{cls.title} calibrates softmax models; a {task} model uses (per-class) temperature")
        z = np.asarray(logits, dtype=np.float64)
        if z.ndim != 2 or not np.all(np.isfinite(z)):
            raise CalibratorError(f"logits must be a finite [N, K] array, got shape {z.shape}")
        n, k = z.shape
        need = cls.minimum_rows(k)
        if n < need:
            raise CalibratorError(f"{cls.title} has {need} parameters for {k} classes and needs at least {need} rows to "
                                  f"fit them; got {n}")  # fmt: skip
        return z, np.asarray(labels).astype(np.int64)


def nll_and_grad(s: np.ndarray, onehot: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax NLL of calibrated logits ``s`` and its gradient with respect to ``s``."""
    logp = log_softmax(s, axis=1)
    n = len(s)
    return float(-np.sum(logp * onehot) / n), (np.exp(logp) - onehot) / n
