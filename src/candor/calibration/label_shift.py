"""Label shift without labels: the class priors of unlabeled traffic, and posteriors corrected to them.

Under label shift p(x|y) stays and the priors move from pi_t (those the calibrated posteriors
p(y|x) were fitted under) to pi. Then p_new(y|x) is proportional to p(y|x) * pi(y) / pi_t(y)
(:func:`corrected`), and pi is the fixed point of the EM of Saerens, Latinne & Decaestecker
(2002) (:func:`em_priors`): pi <- mean over rows of the corrected posteriors. EM maximises the
likelihood of the unlabeled rows, sum_i log sum_k p_ik pi_k / pi_t,k, which is 0 at pi = pi_t;
twice its maximum is the likelihood-ratio statistic of "no shift", chi-squared with K - 1
degrees of freedom (:func:`shift_test`). pi_t is itself measured, on the M rows the calibrator
was fitted on (BCTS matches their label mix exactly); to first order the difference of two
estimates from N and M rows has (1/N + 1/M) times the variance of one from N, so given M the
statistic is scaled by M / (M + N). Without it, a large window finds the fit rows' own sampling
noise significant.

The intervals are a percentile bootstrap over the rows (:data:`RESAMPLES`, seeded), each
resample's EM warm-started at the point estimate. The label-free accuracy of the served
predictions (as NannyML's CBPE does, under the corrected posteriors) is the mean corrected
posterior of each row's served class; its interval adds the bootstrap's spread of that mean
to the Bernoulli spread of labels drawn from those posteriors.

:func:`bbse_priors` is the confusion-matrix estimate of Lipton et al. (2018), for comparison.

>>> import numpy as np
>>> p = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]])
>>> est = em_priors(p, np.array([0.5, 0.5]))
>>> bool(est.priors[0] > 0.8), est.converged
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOLERANCE = 1e-8  # EM stops when no prior moved by more than this in one iteration ...
MAX_ITERATIONS = 1000  # ... or after this many (then ``converged`` is False)
RESAMPLES = 200  # bootstrap resamples of the rows for the intervals
LEVEL = 0.9  # the intervals' coverage
PRIOR_FLOOR = 1e-6  # no prior below this: a class absent from the fit rows still has a finite log ratio


@dataclass(frozen=True)
class EmResult:
    priors: np.ndarray  # [K]
    iterations: int
    converged: bool


@dataclass(frozen=True)
class PriorShift:
    """The estimate on one window of unlabeled rows, with its intervals and the test of no shift."""

    rows: int
    priors: np.ndarray  # [K] estimated
    priors_low: np.ndarray  # [K] 90% percentile bootstrap
    priors_high: np.ndarray
    assumed: np.ndarray  # [K] pi_t: the priors the posteriors were calibrated under
    iterations: int
    converged: bool
    log_likelihood_ratio: float
    p_value: float
    total_variation: float  # between the estimate and ``assumed``
    expected_accuracy: float  # of the served predictions, under the corrected posteriors
    expected_accuracy_low: float
    expected_accuracy_high: float


def checked_priors(priors: np.ndarray) -> np.ndarray:
    """``priors`` as a float64 distribution with every entry at least :data:`PRIOR_FLOOR`."""
    p = np.maximum(np.asarray(priors, dtype=np.float64), PRIOR_FLOOR)
    return p / p.sum()


def corrected(probs: np.ndarray, assumed: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """Posteriors ``probs`` [N, K] moved from priors ``assumed`` to ``priors``, renormalised."""
    q = np.asarray(probs, dtype=np.float64) * (checked_priors(priors) / checked_priors(assumed))
    return q / q.sum(axis=1, keepdims=True)


def log_ratio(assumed: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """log(priors / assumed): what adding to calibrated logits does to their softmax (:func:`corrected`)."""
    return np.log(checked_priors(priors)) - np.log(checked_priors(assumed))


def em_priors(probs: np.ndarray, assumed: np.ndarray, *, tolerance: float = TOLERANCE,
              max_iterations: int = MAX_ITERATIONS, start: np.ndarray | None = None) -> EmResult:  # fmt: skip
    """The priors of the rows ``probs`` [N, K] (calibrated under ``assumed``) by the EM of Saerens et al."""
    p = np.asarray(probs, dtype=np.float64)
    base = checked_priors(assumed)
    current = base if start is None else checked_priors(start)
    for iteration in range(1, max_iterations + 1):
        following = corrected(p, base, current).mean(axis=0)
        moved = float(np.max(np.abs(following - current)))
        current = following
        if moved <= tolerance:
            return EmResult(current, iteration, True)
    return EmResult(current, max_iterations, False)


def log_likelihood_ratio(probs: np.ndarray, assumed: np.ndarray, priors: np.ndarray) -> float:
    """2 * sum_i log sum_k p_ik priors_k / assumed_k: the rows' log-likelihood gain over no shift, doubled."""
    ratio = checked_priors(priors) / checked_priors(assumed)
    return float(2.0 * np.sum(np.log(np.asarray(probs, dtype=np.float64) @ ratio)))


def shift_test(probs: np.ndarray, assumed: np.ndarray, priors: np.ndarray,
               assumed_rows: int | None = None) -> tuple[float, float]:  # fmt: skip
    """The likelihood-ratio statistic of "the priors are ``assumed``" against ``priors``, and its p-value;
    ``assumed_rows``: how many rows ``assumed`` was measured on (the statistic is scaled for them)."""
    statistic = max(log_likelihood_ratio(probs, assumed, priors), 0.0)
    if assumed_rows is not None:
        statistic *= assumed_rows / (assumed_rows + len(probs))
    from scipy.stats import chi2  # imported on first use: scipy.stats adds about 0.5 s to every `candor` start

    return statistic, float(chi2.sf(statistic, df=len(assumed) - 1))


def total_variation(a: np.ndarray, b: np.ndarray) -> float:
    return float(0.5 * np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).sum())


def _bootstrap(p: np.ndarray, base: np.ndarray, point: np.ndarray, served: np.ndarray, resamples: int,
               seed: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Per resample: the EM priors [B, K] and the expected accuracy of the served classes [B].

    All resamples at once as row weights w [B, N] (multinomial counts): an EM step is then
    pi_b <- pi_b * ((w_b / (p r_b)) p) / n with r_b = pi_b / pi_t, two matrix products."""
    n = len(p)
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)
    priors = np.tile(point, (resamples, 1))
    for _ in range(MAX_ITERATIONS):
        ratio = priors / base  # [B, K]
        denominators = ratio @ p.T  # [B, N]
        following = ratio * ((weights / denominators) @ p) / n
        moved = float(np.max(np.abs(following - priors)))
        priors = following
        if moved <= TOLERANCE:
            break
    ratio = priors / base
    accuracy = np.sum(weights * (ratio[:, served] * p[np.arange(n), served]) / (ratio @ p.T), axis=1) / n
    return priors, accuracy


def estimate(probs: np.ndarray, assumed: np.ndarray, *, assumed_rows: int | None = None, served: np.ndarray | None = None,
             resamples: int = RESAMPLES, seed: int = 0) -> PriorShift:  # fmt: skip
    """EM priors of ``probs`` [N, K] (calibrated under ``assumed``, measured on ``assumed_rows``), their intervals,
    the test of no shift and the expected accuracy of ``served`` [N] (default: each row's most probable class)
    under the corrected posteriors. ``resamples`` 0: no bootstrap (the prior intervals are the point)."""
    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum(axis=1, keepdims=True)  # float32 round-off in served rows
    base = checked_priors(assumed)
    served = p.argmax(axis=1) if served is None else np.asarray(served, dtype=np.int64)
    fit = em_priors(p, base)
    statistic, p_value = shift_test(p, base, fit.priors, assumed_rows)
    q = corrected(p, base, fit.priors)[np.arange(len(p)), served]
    tail = (1 - LEVEL) / 2
    if resamples > 0:
        boot_priors, boot_accuracy = _bootstrap(p, base, fit.priors, served, resamples, seed)
        low, high = np.quantile(boot_priors, [tail, 1 - tail], axis=0)
        spread = float(np.var(boot_accuracy))
    else:  # no intervals asked for (the gauges' refresh): the point estimate at both ends
        low, high, spread = fit.priors, fit.priors, 0.0
    accuracy = float(q.mean())
    from scipy.stats import norm  # imported on first use, as chi2 above

    half = norm.ppf(1 - tail) * np.sqrt(spread + np.sum(q * (1 - q)) / len(q) ** 2)
    return PriorShift(len(p), fit.priors, low, high, base, fit.iterations, fit.converged, statistic, p_value,
                      total_variation(fit.priors, base), accuracy, max(accuracy - half, 0.0),
                      min(accuracy + half, 1.0))  # fmt: skip


def bbse_priors(val_probs: np.ndarray, val_labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Black-box shift estimation (Lipton et al., 2018): solve C w = mu for the weights w = pi / pi_val, with
    C[i, j] = P(predicted i, label j) on validation rows and mu the predicted-class mix of ``probs``; the
    weights are clipped at 0 and the priors renormalised."""
    k = val_probs.shape[1]
    confusion = np.zeros((k, k))
    np.add.at(confusion, (np.asarray(val_probs).argmax(axis=1), np.asarray(val_labels, dtype=np.int64)), 1.0)
    confusion /= len(val_labels)
    mu = np.bincount(np.asarray(probs).argmax(axis=1), minlength=k) / len(probs)
    weights = np.clip(np.linalg.lstsq(confusion, mu, rcond=None)[0], 0.0, None)
    priors = weights * confusion.sum(axis=0)
    return priors / priors.sum() if priors.sum() > 0 else np.full(k, 1.0 / k)
