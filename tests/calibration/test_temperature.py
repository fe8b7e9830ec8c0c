"""The fitted temperature is the NLL minimiser, and safe on degenerate data."""

import numpy as np
import pytest

from candor.calibration import T_MAX, T_MIN, accuracy, fit_temperature, softmax
from candor.calibration.temperature import _sigmoid_nll, _softmax_nll


def overconfident(n=600, k=5, scale=3.0, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), labels] += 1.0
    return logits * scale, labels


def grid_minimiser(nll, lo=T_MIN, hi=T_MAX, points=20001):
    grid = np.exp(np.linspace(np.log(lo), np.log(hi), points))
    return grid[np.argmin([nll(t) for t in grid])]


def test_multiclass_matches_a_fine_grid_search():
    logits, labels = overconfident()
    fit = fit_temperature(logits, labels)
    best = grid_minimiser(lambda t: _softmax_nll(logits, labels, t))
    assert fit.value == pytest.approx(best, rel=1e-3)
    assert fit.value > 1  # scaled-up logits are overconfident
    assert fit.nll_after <= fit.nll_before and not fit.clamped


def test_underconfident_logits_get_t_below_one():
    logits, labels = overconfident(scale=0.3)
    fit = fit_temperature(logits, labels)
    assert fit.value < 1
    assert fit.value == pytest.approx(grid_minimiser(lambda t: _softmax_nll(logits, labels, t)), rel=1e-3)


def test_accuracy_is_unchanged_by_temperature():
    logits, labels = overconfident()
    fit = fit_temperature(logits, labels)
    assert accuracy(softmax(logits, fit.value), labels) == accuracy(softmax(logits), labels)
    for t in (0.1, 0.5, 3.0, 15.0):
        assert np.array_equal(softmax(logits, t).argmax(axis=1), logits.argmax(axis=1))


def test_binary_single_logit_matches_grid():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    z = (2 * y - 1) * 1.0 + rng.normal(size=500) * 1.5
    z = z * 4
    fit = fit_temperature(z, y, "binary")
    assert fit.value == pytest.approx(grid_minimiser(lambda t: _sigmoid_nll(z, y.astype(float), t)), rel=1e-3)


def test_multilabel_shared_and_per_class():
    rng = np.random.default_rng(2)
    Y = rng.integers(0, 2, (400, 3)).astype(float)
    Z = (2 * Y - 1) + rng.normal(size=(400, 3))
    Z = Z * np.array([0.5, 2.0, 6.0])  # under-, mildly- and over-confident columns
    shared = fit_temperature(Z, Y, "multilabel")
    assert shared.value == pytest.approx(grid_minimiser(lambda t: _sigmoid_nll(Z, Y, t)), rel=1e-3)
    per = fit_temperature(Z, Y, "multilabel", per_class=True)
    assert per.value.shape == (3,)
    assert per.value[0] < per.value[1] < per.value[2]
    for k in range(3):
        assert per.value[k] == pytest.approx(grid_minimiser(lambda t, k=k: _sigmoid_nll(Z[:, k], Y[:, k], t)), rel=1e-3)
    assert per.nll_after <= shared.nll_after + 1e-12


def test_separable_data_clamps_to_the_lower_bound():
    labels = np.arange(100) % 4
    logits = np.eye(4)[labels] * 5.0  # every row right: NLL falls forever as T -> 0
    fit = fit_temperature(logits, labels)
    assert fit.value == T_MIN and fit.clamped
    assert np.isfinite(fit.nll_after)


def test_one_class_only_stays_positive_and_finite():
    labels = np.zeros(50, dtype=int)
    logits = np.tile([2.0, 0.0, -1.0], (50, 1))
    fit = fit_temperature(logits, labels)
    assert T_MIN <= fit.value <= T_MAX and fit.clamped


def test_random_labels_clamp_to_the_upper_bound():
    logits = np.tile([3.0, 0.0], (200, 1))
    labels = np.array([0, 1] * 100)  # the model's confidence carries no information: T -> inf
    fit = fit_temperature(logits, labels)
    assert fit.value == T_MAX and fit.clamped


@pytest.mark.parametrize(
    "logits, labels, task, message",
    [
        (np.zeros((0, 3)), np.zeros(0), "multiclass", "no rows"),
        (np.array([[np.inf, 0.0]]), np.array([0]), "multiclass", "NaN or infinite"),
        (np.zeros((2, 3)), np.array([0, 3]), "multiclass", r"\[0, 3\)"),
        (np.zeros((2, 3)), np.array([0]), "multiclass", "labels"),
        (np.zeros(3), np.array([0, 1, 2]), "binary", "0 or 1"),
        (np.zeros((2, 2)), np.zeros(2), "poisson", "task"),
    ],
)
def test_bad_inputs(logits, labels, task, message):
    with pytest.raises(ValueError, match=message):
        fit_temperature(logits, labels, task)
