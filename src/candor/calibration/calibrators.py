"""Post-hoc calibrators on raw logits z ``[N, K]``, fitted by minimising held-out NLL.

Every method maps logits to calibrated logits s, and probabilities are softmax(s)
(sigmoid(z / T) per class for multi-label, which only temperature covers):

* ``temperature``: s = z / T, one T > 0 (Guo et al., 2017);
* ``vector``: s = z * a + b, a per-class scale and bias (Guo et al., 2017);
* ``matrix``: s = z W^T + b, a full K x K map (Guo et al., 2017), fitted with
  off-diagonal and intercept regularisation (ODIR, Kull et al., 2019);
* ``dirichlet``: s = log_softmax(z) W^T + b, the same map on log-probabilities
  (Dirichlet calibration with ODIR, Kull et al., 2019).

The server never fits on its hot path and never imports torch: a fitted
:class:`Calibrator` is folded into the ONNX graph by :mod:`candor.graph`. Matrix and
Dirichlet NLLs are convex in (W, b); with ODIR the objective is
``mean NLL + lam / (K (K - 1)) * sum of squared off-diagonal W + mu / K * sum b^2``
(Kull et al.'s scaling), solved by L-BFGS with the exact gradient, starting from the
identity. ``lam = mu`` is chosen from :data:`ODIR_GRID` by 3-fold cross-validated NLL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax

from candor.calibration.temperature import T_MAX, T_MIN, Task, fit_temperature, scale_logits

Method = Literal["temperature", "vector", "matrix", "dirichlet"]
METHODS: tuple[Method, ...] = ("temperature", "vector", "matrix", "dirichlet")
ODIR_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
ODIR_FOLDS = 3


class CalibratorError(ValueError):
    """A method cannot be fitted on these rows; the message says why."""


@dataclass(frozen=True)
class Calibrator:
    """A fitted calibrator. ``temperature`` is 1 for the affine methods."""

    method: Method
    temperature: np.ndarray  # () or [K] (per-class, multi-label)
    scale: np.ndarray | None = None  # [K], vector
    weight: np.ndarray | None = None  # [K, K], matrix and dirichlet: s = x @ weight.T + bias
    bias: np.ndarray | None = None  # [K], vector, matrix and dirichlet
    regularisation: float | None = None  # ODIR lam = mu, matrix and dirichlet
    clamped: bool = False  # temperature only: the optimum lay at a bound of [T_MIN, T_MAX]
    details: dict = field(default_factory=dict, compare=False)  # how it was chosen, in numbers

    @staticmethod
    def from_temperature(value: float | np.ndarray, clamped: bool = False) -> Calibrator:
        return Calibrator("temperature", np.asarray(value, dtype=np.float64), clamped=clamped)

    @property
    def parameters(self) -> int:
        return sum(0 if a is None else a.size for a in (self.scale, self.weight, self.bias)) or self.temperature.size

    def calibrated_logits(self, logits: np.ndarray) -> np.ndarray:
        z = np.asarray(logits, dtype=np.float64) / self.temperature
        if self.method == "vector":
            return z * self.scale + self.bias
        if self.method == "dirichlet":
            z = log_softmax(z, axis=1)
        if self.method in ("matrix", "dirichlet"):
            return z @ self.weight.T + self.bias
        return z

    def probabilities(self, logits: np.ndarray, task: Task = "multiclass") -> np.ndarray:
        if task != "multiclass":
            return scale_logits(logits, self.temperature, task)
        s = self.calibrated_logits(logits)
        return np.exp(log_softmax(s, axis=1))

    def describe(self) -> str:
        """One line for a CLI: the method and its parameters in brief."""
        if self.method == "temperature":
            t = np.atleast_1d(self.temperature)
            return f"temperature T={t[0]:.4f}" if t.size == 1 else "per-class temperature " + ", ".join(f"{v:.3f}" for v in t)
        if self.method == "vector":
            return f"vector scaling (scale {self.scale.min():.3f}..{self.scale.max():.3f})"
        return f"{self.method} scaling (K x K, ODIR lambda = mu = {self.regularisation:g})"


def _nll_and_grad(s: np.ndarray, onehot: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax NLL of calibrated logits ``s`` and its gradient with respect to ``s``."""
    logp = log_softmax(s, axis=1)
    n = len(s)
    return float(-np.sum(logp * onehot) / n), (np.exp(logp) - onehot) / n


def _fit_vector(z: np.ndarray, onehot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = z.shape[1]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = theta[:k], theta[k:]
        loss, g = _nll_and_grad(z * a + b, onehot)
        return loss, np.concatenate([np.sum(g * z, axis=0), g.sum(axis=0)])

    res = minimize(objective, np.concatenate([np.ones(k), np.zeros(k)]), jac=True, method="L-BFGS-B",
                   options={"maxiter": 2000, "gtol": 1e-9})  # fmt: skip
    return res.x[:k], res.x[k:]


def _fit_affine(x: np.ndarray, onehot: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """W, b minimising mean NLL of softmax(x W^T + b) plus the ODIR penalty at lam = mu."""
    k = x.shape[1]
    off = 1.0 - np.eye(k)
    scale_w = lam / (k * (k - 1)) if k > 1 else 0.0
    scale_b = lam / k

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: k * k].reshape(k, k), theta[k * k :]
        loss, g = _nll_and_grad(x @ w.T + b, onehot)
        loss += scale_w * np.sum((w * off) ** 2) + scale_b * np.sum(b**2)
        gw = g.T @ x + 2 * scale_w * w * off
        gb = g.sum(axis=0) + 2 * scale_b * b
        return loss, np.concatenate([gw.ravel(), gb])

    res = minimize(objective, np.concatenate([np.eye(k).ravel(), np.zeros(k)]), jac=True, method="L-BFGS-B",
                   options={"maxiter": 5000, "gtol": 1e-9})  # fmt: skip
    return res.x[: k * k].reshape(k, k), res.x[k * k :]


def _mean_nll(x: np.ndarray, labels: np.ndarray, w: np.ndarray, b: np.ndarray) -> float:
    return float(-np.mean(log_softmax(x @ w.T + b, axis=1)[np.arange(len(labels)), labels]))


def _choose_odir(x: np.ndarray, labels: np.ndarray, onehot: np.ndarray, seed: int) -> tuple[float, dict]:
    """ODIR strength by 3-fold cross-validated NLL over :data:`ODIR_GRID`."""
    folds = np.array_split(np.random.default_rng(seed).permutation(len(x)), ODIR_FOLDS)
    scores = {}
    for lam in ODIR_GRID:
        losses = []
        for i, held in enumerate(folds):
            train = np.concatenate([f for j, f in enumerate(folds) if j != i])
            w, b = _fit_affine(x[train], onehot[train], lam)
            losses.append(_mean_nll(x[held], labels[held], w, b) * len(held))
        scores[lam] = sum(losses) / len(x)
    best = min(scores, key=lambda lam: (scores[lam], -lam))
    return best, {"odir_cv_nll": {f"{lam:g}": round(v, 6) for lam, v in scores.items()}}


def minimum_rows(method: Method, num_classes: int) -> int:
    """Fewest rows a method is fitted on: one per free parameter for the K x K maps."""
    k = num_classes
    return {"temperature": 1, "vector": 2 * k, "matrix": k * k + k, "dirichlet": k * k + k}[method]


def fit_calibrator(method: str, logits: np.ndarray, labels: np.ndarray, task: Task = "multiclass",
                   per_class: bool = False, seed: int = 0) -> Calibrator:  # fmt: skip
    """Fit ``method`` on held-out ``logits`` and ``labels``; raises :class:`CalibratorError`
    with the reason when it cannot (unknown method, too few rows, a task it does not cover)."""
    if method not in METHODS:
        raise CalibratorError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    z = np.asarray(logits, dtype=np.float64)
    if method == "temperature":
        try:
            fit = fit_temperature(z, labels, task, per_class=per_class)
        except ValueError as e:
            raise CalibratorError(str(e)) from None
        return Calibrator.from_temperature(fit.value, fit.clamped)
    if task != "multiclass":
        raise CalibratorError(f"{method} scaling calibrates softmax models; a {task} model uses (per-class) temperature")
    if z.ndim != 2 or not np.all(np.isfinite(z)):
        raise CalibratorError(f"logits must be a finite [N, K] array, got shape {z.shape}")
    y = np.asarray(labels).astype(np.int64)
    n, k = z.shape
    need = minimum_rows(method, k)
    if n < need:
        raise CalibratorError(f"{method} scaling has {need} parameters for {k} classes and needs at least "
                              f"{need} rows to fit them; got {n}")  # fmt: skip
    onehot = np.eye(k)[y]
    if method == "vector":
        a, b = _fit_vector(z, onehot)
        return Calibrator("vector", np.array(1.0), scale=a, bias=b)
    x = log_softmax(z, axis=1) if method == "dirichlet" else z
    lam, details = _choose_odir(x, y, onehot, seed)
    w, b = _fit_affine(x, onehot, lam)
    return Calibrator(method, np.array(1.0), weight=w, bias=b, regularisation=lam, details=details)  # type: ignore[arg-type]


__all__ = ["METHODS", "T_MAX", "T_MIN", "Calibrator", "CalibratorError", "Method", "fit_calibrator", "minimum_rows"]
