"""Calibrators beyond temperature: fits that recover a known map, honest refusals, auto's choice,
and netcal (test oracle only) on the same logits."""

import numpy as np
import pytest
from scipy.special import log_softmax, softmax

from candor.calibration.calibrators import METHODS, CalibratorError, TemperatureScaling, fit_calibrator
from candor.calibration.metrics import nll
from candor.calibration.selection import fit_method, improvement


def logits_and_labels(n=1200, k=4, seed=0, scale=2.5, shift=None):
    """Labels drawn from softmax(true logits); the model reports ``scale`` times them (overconfident)
    plus a per-class ``shift`` (a class bias that only a per-class calibrator can undo)."""
    rng = np.random.default_rng(seed)
    true = rng.normal(size=(n, k)) * 2
    y = np.array([rng.choice(k, p=p) for p in softmax(true, axis=1)])
    reported = true * scale + (0 if shift is None else np.asarray(shift))
    return reported, y, true


@pytest.mark.parametrize("method", METHODS)
def test_every_method_improves_held_out_nll_on_an_overconfident_model(method):
    z, y, _ = logits_and_labels()
    fitted = fit_calibrator(method, z[:800], y[:800])
    identity = TemperatureScaling.of(1.0)
    gain = improvement(identity, fitted, z[800:], y[800:])
    assert gain.low > 0, gain
    assert np.allclose(fitted.probabilities(z).sum(axis=1), 1)


def test_vector_scaling_undoes_a_class_bias_that_temperature_cannot():
    z, y, _ = logits_and_labels(shift=[2.0, 0.0, -1.0, 0.0], scale=1.0)
    t = fit_calibrator("temperature", z[:800], y[:800])
    v = fit_calibrator("vector", z[:800], y[:800])
    assert improvement(t, v, z[800:], y[800:]).low > 0
    assert v.bias[0] - v.bias[2] == pytest.approx(-3.0, abs=0.5)  # the fitted bias cancels the shift


def test_auto_keeps_temperature_when_nothing_richer_is_significantly_better():
    z, y, _ = logits_and_labels(n=600, k=3)
    chosen = fit_method("auto", z, y)
    assert chosen.calibrator.method == "temperature" and "chose temperature" in chosen.summary


def test_auto_picks_a_richer_method_when_it_pays_and_says_why():
    z, y, _ = logits_and_labels(shift=[2.0, 0.0, -1.0, 0.0], scale=1.0)
    chosen = fit_method("auto", z, y)
    assert chosen.calibrator.method != "temperature" and "5-fold CV NLL" in chosen.summary


def test_a_method_that_cannot_fit_is_refused_with_the_reason():
    z = np.random.default_rng(0).normal(size=(200, 100))
    y = np.arange(200) % 100
    with pytest.raises(CalibratorError, match="10100 parameters for 100 classes.*got 200"):
        fit_calibrator("matrix", z, y)
    with pytest.raises(CalibratorError, match="unknown calibration method 'isotonic'; choose one of temperature, bcts, vector"):
        fit_method("isotonic", z, y)
    with pytest.raises(CalibratorError, match="multilabel model uses"):
        fit_calibrator("vector", z[:, :3], (z[:, :3] > 0).astype(int), task="multilabel")


def test_auto_skips_methods_with_too_few_rows_and_says_so():
    z, y, _ = logits_and_labels(n=40, k=6)
    chosen = fit_method("auto", z, y)
    assert "skipped matrix" in chosen.summary and chosen.calibrator.method in ("temperature", "bcts", "vector")


@pytest.mark.parametrize("method", ["matrix", "dirichlet"])
def test_matrix_and_dirichlet_reach_the_true_map(method):
    """Labels drawn from softmax(x A^T + b) with a non-diagonal A: the fit's held-out NLL is
    within 0.02 of the true map's, and better than a per-class (vector) map can do."""
    rng = np.random.default_rng(3)
    k, n = 4, 4000
    z = rng.normal(size=(n, k)) * 2
    x = log_softmax(z, axis=1) if method == "dirichlet" else z
    a = np.eye(k) * 0.6 + rng.normal(size=(k, k)) * 0.25
    b = rng.normal(size=k) * 0.3
    p_true = softmax(x @ a.T + b, axis=1)
    y = np.array([rng.choice(k, p=p) for p in p_true])
    fitted = fit_calibrator(method, z[:3000], y[:3000])
    held = slice(3000, None)
    assert nll(fitted.probabilities(z[held]), y[held]) <= nll(p_true[held], y[held]) + 0.02
    vector = fit_calibrator("vector", z[:3000], y[:3000])
    assert improvement(vector, fitted, z[held], y[held]).low > 0
