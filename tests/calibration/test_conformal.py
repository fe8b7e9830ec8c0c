"""Conformal sets keep their promise: marginal coverage over random calibration/test splits.

For split conformal prediction with n calibration rows and no ties, coverage averaged over
splits lies in [1 - alpha, 1 - alpha + 1 / (n + 1)] (with ties, as non-randomised APS has at
cumulative mass 1, only the lower bound). Twenty splits estimate that mean with a
standard error; the test allows three of them either side of the band, and says how wide it is.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from candor.calibration.conformal import APS, LAC, RAPS, ConformalError, class_thresholds, rows_needed, threshold

SPLITS = 20


def digits_probabilities() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    fit, rest = order[:600], order[600:]
    model = LogisticRegression(max_iter=300, C=0.01).fit(X[fit] / 16, y[fit])  # weak: sets of several sizes
    return model.predict_proba(X[rest] / 16), y[rest]


def synthetic_probabilities(n: int = 3000, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    y = rng.integers(0, k, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), y] += rng.uniform(0, 3, n)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True), y


@pytest.mark.parametrize("data", [digits_probabilities, synthetic_probabilities], ids=["digits", "synthetic"])
@pytest.mark.parametrize("score", [LAC(), APS(), RAPS(), APS(randomised=True), RAPS(randomised=True)],
                         ids=lambda s: s.label)  # fmt: skip
@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_mean_coverage_over_random_splits_lies_in_the_band(data, score, coverage):
    p, y = data()
    n = len(y) // 2
    rng = np.random.default_rng(2)
    covered, sizes = [], []
    for _ in range(SPLITS):
        order = rng.permutation(len(y))
        cal, test = order[:n], order[n:]
        u_cal, u_test = rng.uniform(size=n), rng.uniform(size=len(test))
        q = threshold(score.label_scores(p[cal], y[cal], u_cal), coverage)
        sets = score.sets(p[test], q, u_test)
        covered.append(sets[np.arange(len(test)), y[test]].mean())
        sizes.append(sets.sum(axis=1).mean())
    mean, se = float(np.mean(covered)), float(np.std(covered, ddof=1) / np.sqrt(SPLITS))
    low, high = coverage, coverage + 1 / (n + 1)
    if isinstance(score, APS) and not score.randomised:
        # Not randomised, the mass of every class down to the last is 1: an atom of tied scores,
        # so only the lower bound holds (randomising u is what makes APS exact).
        high = 1.0
    assert low - 3 * se <= mean <= high + 3 * se, (
        f"{score.label} at {coverage}: mean coverage {mean:.4f} over {SPLITS} splits, band [{low:.4f}, {high:.4f}] "
        f"(width 1/(n+1) = {1 / (n + 1):.5f}) plus 3 standard errors of {se:.4f}")
    assert 0.5 < np.mean(sizes) < p.shape[1] - 1  # neither empty nor every class


def test_class_conditional_coverage_holds_for_every_class():
    p, y = synthetic_probabilities(6000)
    rng = np.random.default_rng(3)
    per_class = []
    for _ in range(SPLITS):
        order = rng.permutation(len(y))
        cal, test = order[:3000], order[3000:]
        q = class_thresholds(LAC().label_scores(p[cal], y[cal]), y[cal], 0.9, p.shape[1])
        sets = LAC().sets(p[test], q)
        hit = sets[np.arange(len(test)), y[test]]
        per_class.append([hit[y[test] == k].mean() for k in range(p.shape[1])])
    worst = np.mean(per_class, axis=0).min()
    assert worst >= 0.9 - 0.01  # each class's mean coverage, not only the marginal one


def test_a_level_finer_than_the_split_is_refused_with_the_rows_it_needs():
    scores = np.linspace(0, 1, 9)
    assert threshold(scores, 0.9) == 1.0  # 9 rows support 1 - alpha <= 9/10
    with pytest.raises(ConformalError, match=r"coverage 0.95 needs at least 19 calibration rows; .* has 9.*up to 0.9 "):
        threshold(scores, 0.95)
    for bad in (0.0, 1.0, -0.2, 1.5, float("nan")):
        with pytest.raises(ConformalError, match=r"coverage must lie in \(0, 1\)"):
            threshold(scores, bad)


def test_class_conditional_names_the_classes_short_of_rows():
    labels = np.array([0] * 30 + [1] * 5)
    with pytest.raises(ConformalError, match="needs at least 9 calibration rows per class; class 1 has 5"):
        class_thresholds(np.linspace(0, 1, 35), labels, 0.9, 2)


@pytest.mark.parametrize("coverage, rows", [(0.9, 9), (0.95, 19), (0.99, 99), (0.9999, 9999), (0.8, 4)])
def test_rows_needed_is_exact_where_float_rounding_would_add_one(coverage, rows):
    """1 - 0.9999 is 9.9999999999989e-05 in floating point; the count must still be 9999, not 10000."""
    assert rows_needed(1 - coverage) == rows
    scores = np.linspace(0, 1, rows)
    assert threshold(scores, coverage) == 1.0  # exactly enough rows: the largest score
    with pytest.raises(ConformalError):
        threshold(scores[:-1], coverage)


@pytest.mark.parametrize("score", [LAC(), APS(), RAPS(penalty_weight=0.05, k_reg=2)], ids=lambda s: s.label)
def test_ranked_scores_are_the_class_scores_in_falling_probability_order(score):
    """The server's one-sort path: a set is a prefix of the classes by falling probability."""
    p, _ = synthetic_probabilities(500)
    order = np.argsort(-p, axis=1, kind="stable")
    ranked = score.ranked_scores(np.take_along_axis(p, order, axis=1))
    np.testing.assert_allclose(ranked, np.take_along_axis(score.class_scores(p), order, axis=1), atol=1e-12)
    assert np.all(np.diff(ranked, axis=1) >= -1e-12)  # never falls with rank
    assert APS(randomised=True).ranked_scores(p) is None
