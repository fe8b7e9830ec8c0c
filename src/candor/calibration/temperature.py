"""Temperature scaling: probabilities = softmax(logits / T), T > 0.

T is fitted by minimising NLL on held-out logits. NLL is convex in 1/T, so it
is unimodal in log T and a bounded 1-D solve on log T (Brent) finds the
optimum without a learning rate.

T is clamped to ``[T_MIN, T_MAX]``. Data the model separates perfectly (every
held-out row right) or a held-out set with one class only push the optimum
towards T -> 0 (NLL keeps falling as confidence grows), and a model that is
no better than chance pushes it towards T -> inf; the clamp keeps T finite and
positive in both cases and :class:`TemperatureFit` says when it was hit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

T_MIN = 0.05
T_MAX = 20.0

Task = Literal["multiclass", "binary", "multilabel"]


def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """``z - logsumexp(z)`` along ``axis``, shifted by the maximum so that no exp overflows.

    The same formula as scipy.special.log_softmax (a test holds them together), written here because
    every server start needs it (a version's priors at load) and importing scipy.special costs about
    0.17 s of each start."""
    z = np.asarray(z, dtype=np.float64)
    shifted = z - np.max(z, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    return np.exp(log_softmax(z, axis=-1))


def sigmoid(logits: np.ndarray, temperature: float | np.ndarray = 1.0) -> np.ndarray:
    from scipy.special import expit  # on first use: importing scipy.special costs about 0.17 s

    return expit(np.asarray(logits, dtype=np.float64) / temperature)


def scale_logits(logits: np.ndarray, temperature: float | np.ndarray, task: Task = "multiclass") -> np.ndarray:
    """Calibrated probabilities for ``task`` at ``temperature``."""
    if task == "multiclass":
        return softmax(logits, float(np.asarray(temperature)))
    return sigmoid(logits, temperature)


@dataclass(frozen=True)
class TemperatureFit:
    """A fitted temperature. ``value`` is a float, or ``[K]`` per class for multi-label."""

    value: float | np.ndarray
    nll_before: float  # at T = 1
    nll_after: float
    clamped: bool  # the optimum lay at (or beyond) T_MIN or T_MAX

    def as_list(self) -> list[float]:
        return np.atleast_1d(np.asarray(self.value, dtype=np.float64)).tolist()


def _softmax_nll(logits: np.ndarray, labels: np.ndarray, t: float) -> float:
    return float(-np.mean(log_softmax(logits / t, axis=1)[np.arange(len(labels)), labels]))


def _sigmoid_nll(logits: np.ndarray, targets: np.ndarray, t: float) -> float:
    from scipy.special import log_expit  # on first use: importing scipy.special costs about 0.17 s

    z = logits / t
    return float(-np.mean(targets * log_expit(z) + (1 - targets) * log_expit(-z)))


def _solve(objective) -> tuple[float, bool]:
    lo, hi = np.log(T_MIN), np.log(T_MAX)
    from scipy.optimize import minimize_scalar  # imported on first use: scipy.optimize adds about 0.2 s to every `candor` start
    res = minimize_scalar(lambda s: objective(np.exp(s)), bounds=(lo, hi), method="bounded", options={"xatol": 1e-7})
    t = float(np.exp(res.x))
    # Brent never evaluates the bounds themselves. On separable data the NLL
    # underflows to a flat 0 near T_MIN and Brent may stop anywhere on the flat;
    # since the NLL is unimodal in log T, a bound at least as good as the
    # interior point means the optimum lies at (or beyond) that bound.
    best = objective(t)
    for bound in (T_MIN, T_MAX):
        if objective(bound) <= best:
            return bound, True
    return t, False


def fit_temperature(logits: np.ndarray, labels: np.ndarray, task: Task = "multiclass", per_class: bool = False) -> TemperatureFit:
    """Fit T on held-out ``logits`` and ``labels``.

    * ``multiclass``: logits ``[N, K]``, integer labels; softmax NLL.
    * ``binary``: logits ``[N]`` (one logit, P(1) = sigmoid(z / T)), labels 0/1.
      Two-column logits are plain ``multiclass``.
    * ``multilabel``: logits and 0/1 targets ``[N, K]``; sigmoid NLL averaged
      over classes; one shared T, or with ``per_class=True`` one T per class
      (the classes' NLLs are independent, so each is its own 1-D solve).

    >>> z = np.array([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    >>> fit = fit_temperature(z, np.array([0, 1, 1, 0]))
    >>> fit.value > 1  # one confident mistake in four: soften
    True
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.shape[0] == 0:
        raise ValueError("cannot fit a temperature on no rows")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits contain NaN or infinite values")
    if task == "multiclass":
        if z.ndim != 2 or y.shape != (z.shape[0],):
            raise ValueError(f"multiclass needs logits [N, K] and labels [N], got {z.shape} and {y.shape}")
        if per_class:
            raise ValueError("per-class temperatures are for multi-label; multiclass shares one T")
        y = y.astype(np.int64)
        if y.min() < 0 or y.max() >= z.shape[1]:
            raise ValueError(f"labels must lie in [0, {z.shape[1]})")
        nll = lambda t: _softmax_nll(z, y, t)  # noqa: E731
    elif task in ("binary", "multilabel"):
        if task == "binary" and (z.ndim != 1 or y.shape != z.shape):
            raise ValueError(f"binary needs one logit per row [N] and labels [N], got {z.shape} and {y.shape}")
        if task == "multilabel" and (z.ndim != 2 or y.shape != z.shape):
            raise ValueError(f"multilabel needs logits and targets of one shape [N, K], got {z.shape} and {y.shape}")
        if not np.all((y == 0) | (y == 1)):
            raise ValueError("binary and multi-label targets must be 0 or 1")
        y = y.astype(np.float64)
        if per_class and task == "multilabel":
            fits = [fit_temperature(z[:, k], y[:, k], "binary") for k in range(z.shape[1])]
            t = np.array([f.value for f in fits])
            return TemperatureFit(
                value=t,
                nll_before=_sigmoid_nll(z, y, 1.0),
                nll_after=_sigmoid_nll(z, y, t),
                clamped=any(f.clamped for f in fits),
            )
        nll = lambda t: _sigmoid_nll(z, y, t)  # noqa: E731
    else:
        raise ValueError(f"task must be multiclass, binary or multilabel, got {task!r}")
    t, clamped = _solve(nll)
    return TemperatureFit(value=t, nll_before=nll(1.0), nll_after=nll(t), clamped=clamped)
