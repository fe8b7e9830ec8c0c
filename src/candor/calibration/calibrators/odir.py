"""A full K x K affine map fitted with off-diagonal and intercept regularisation (ODIR, Kull et al., 2019).

The map is s = x W^T + b on x = the logits (matrix scaling) or their log-softmax
(Dirichlet calibration). Its NLL is convex in (W, b); with ODIR the objective is
``mean NLL + lam / (K (K - 1)) * sum of squared off-diagonal W + mu / K * sum b^2``
(Kull et al.'s scaling), solved by L-BFGS with the exact gradient from the identity.
``lam = mu`` is chosen from :data:`ODIR_GRID` by 3-fold cross-validated NLL.
"""

from __future__ import annotations

import numpy as np

from candor.calibration.calibrators.base import Calibrator, nll_and_grad
from candor.calibration.temperature import Task, log_softmax

ODIR_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
ODIR_FOLDS = 3


def fit_affine(x: np.ndarray, onehot: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """W, b minimising mean NLL of softmax(x W^T + b) plus the ODIR penalty at lam = mu."""
    k = x.shape[1]
    off = 1.0 - np.eye(k)
    scale_w = lam / (k * (k - 1)) if k > 1 else 0.0
    scale_b = lam / k

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: k * k].reshape(k, k), theta[k * k :]
        loss, g = nll_and_grad(x @ w.T + b, onehot)
        loss += scale_w * np.sum((w * off) ** 2) + scale_b * np.sum(b**2)
        gw = g.T @ x + 2 * scale_w * w * off
        gb = g.sum(axis=0) + 2 * scale_b * b
        return loss, np.concatenate([gw.ravel(), gb])

    from scipy.optimize import minimize  # imported on first use: scipy.optimize adds about 0.2 s to every `candor` start
    res = minimize(objective, np.concatenate([np.eye(k).ravel(), np.zeros(k)]), jac=True, method="L-BFGS-B",
                   options={"maxiter": 5000, "gtol": 1e-9})  # fmt: skip
    return res.x[: k * k].reshape(k, k), res.x[k * k :]


def _mean_nll(x: np.ndarray, labels: np.ndarray, w: np.ndarray, b: np.ndarray) -> float:
    return float(-np.mean(log_softmax(x @ w.T + b, axis=1)[np.arange(len(labels)), labels]))


def choose_odir(x: np.ndarray, labels: np.ndarray, onehot: np.ndarray, seed: int) -> tuple[float, dict]:
    """ODIR strength by 3-fold cross-validated NLL over :data:`ODIR_GRID`."""
    folds = np.array_split(np.random.default_rng(seed).permutation(len(x)), ODIR_FOLDS)
    scores = {}
    for lam in ODIR_GRID:
        losses = []
        for i, held in enumerate(folds):
            train = np.concatenate([f for j, f in enumerate(folds) if j != i])
            w, b = fit_affine(x[train], onehot[train], lam)
            losses.append(_mean_nll(x[held], labels[held], w, b) * len(held))
        scores[lam] = sum(losses) / len(x)
    best = min(scores, key=lambda lam: (scores[lam], -lam))
    return best, {"odir_cv_nll": {f"{lam:g}": round(v, 6) for lam, v in scores.items()}}


class OdirMap(Calibrator):
    """The shared fit of the K x K methods; a subclass says what the map reads (its :attr:`head`)."""

    @classmethod
    def minimum_rows(cls, num_classes: int) -> int:
        return num_classes * num_classes + num_classes

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray, task: Task = "multiclass", per_class: bool = False,
            seed: int = 0) -> OdirMap:  # fmt: skip
        z, y = cls.checked_rows(logits, labels, task)
        x = cls.map_input(z)
        onehot = np.eye(z.shape[1])[y]
        lam, details = choose_odir(x, y, onehot, seed)
        w, b = fit_affine(x, onehot, lam)
        return cls(weight=w, bias=b, regularisation=lam, details=details)

    @classmethod
    def map_input(cls, z: np.ndarray) -> np.ndarray:
        """What the affine map reads: the head's steps before its MatMul."""
        for step in cls.head[: [s.op for s in cls.head].index("MatMul")]:
            z = step.apply(z, None)
        return z

    def describe(self) -> str:
        return f"{self.title} (K x K, ODIR lambda = mu = {self.regularisation:g})"
