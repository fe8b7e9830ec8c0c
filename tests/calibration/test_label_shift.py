"""EM prior estimation, the shift test, the corrected posteriors and BCTS; against the ``abstention``
package (Alexandari et al.'s code; a test oracle installed by `make test` from tests/oracles.txt)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from candor.calibration.calibrators import fit_calibrator
from candor.calibration.label_shift import (
    bbse_priors,
    corrected,
    em_priors,
    estimate,
    log_ratio,
    shift_test,
    total_variation,
)

K = 10


def _rows(rng: np.random.Generator, n: int, priors: np.ndarray, offsets: np.ndarray | None = None):
    """Logits of a 10-class problem whose p(x|y) does not depend on the priors (label shift by construction)."""
    y = rng.choice(K, n, p=priors)
    z = rng.normal(size=(n, K)) * 1.5
    z[np.arange(n), y] += 3.0
    return z + (0 if offsets is None else offsets), y


@pytest.fixture(scope="module")
def calibrated():
    rng = np.random.default_rng(7)
    uniform = np.full(K, 1 / K)
    offsets = np.linspace(-0.8, 0.8, K)  # a per-class offset one temperature cannot remove
    val_z, val_y = _rows(rng, 3000, uniform, offsets)
    shifted = np.full(K, 0.3 / 7)
    shifted[:3] = 0.7 / 3
    test_z, test_y = _rows(rng, 4000, shifted, offsets)
    clean_z, _ = _rows(rng, 4000, uniform, offsets)
    return dict(val_z=val_z, val_y=val_y, test_z=test_z, test_y=test_y, clean_z=clean_z, truth=shifted)


def test_em_priors_equal_abstentions_on_the_same_calibrated_probabilities(calibrated):
    label_shift = pytest.importorskip("abstention.label_shift", reason="abstention is installed by `make test`")
    c = fit_calibrator("bcts", calibrated["val_z"], calibrated["val_y"])
    val, test = c.probabilities(calibrated["val_z"]), c.probabilities(calibrated["test_z"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # their helpers divide by zero on confident rows
        adapter = label_shift.EMImbalanceAdapter(tolerance=1e-12, max_iterations=100_000)(test, val)
    # Their pi_t is the mean validation posterior; their multipliers are pi / pi_t.
    theirs = adapter.multipliers * val.mean(axis=0)
    mine = em_priors(test, val.mean(axis=0), tolerance=1e-12, max_iterations=100_000)
    assert mine.converged
    np.testing.assert_allclose(mine.priors, theirs, atol=1e-6)
    np.testing.assert_allclose(corrected(test, val.mean(axis=0), mine.priors), adapter(test), atol=1e-6)


def test_bcts_validation_nll_is_no_worse_than_abstentions(calibrated):
    calibration = pytest.importorskip("abstention.calibration", reason="abstention is installed by `make test`")
    z, y = calibrated["val_z"], calibrated["val_y"]
    mine = fit_calibrator("bcts", z, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = calibration.TempScaling(bias_positions="all")(z, np.eye(K)[y])

    def nll(p: np.ndarray) -> float:
        return float(-np.mean(np.log(p[np.arange(len(y)), y])))

    assert nll(mine.probabilities(z)) <= nll(theirs(z)) + 1e-6
    # and the bias is what a single temperature cannot do
    assert nll(mine.probabilities(z)) < nll(fit_calibrator("temperature", z, y).probabilities(z)) - 0.01
    assert abs(mine.bias.mean()) < 1e-12 and not mine.clamped


def test_bcts_posteriors_on_their_fit_rows_average_to_the_label_mix(calibrated):
    c = fit_calibrator("bcts", calibrated["val_z"], calibrated["val_y"])
    mix = np.bincount(calibrated["val_y"], minlength=K) / len(calibrated["val_y"])
    np.testing.assert_allclose(c.probabilities(calibrated["val_z"]).mean(axis=0), mix, atol=1e-5)


def test_em_with_bcts_finds_the_shifted_priors_and_the_test_tells_shift_from_none(calibrated):
    c = fit_calibrator("bcts", calibrated["val_z"], calibrated["val_y"])
    assumed = c.probabilities(calibrated["val_z"]).mean(axis=0)
    sampled = np.bincount(calibrated["test_y"], minlength=K) / len(calibrated["test_y"])
    shift = estimate(c.probabilities(calibrated["test_z"]), assumed, assumed_rows=3000)
    assert shift.converged and shift.iterations > 1
    assert total_variation(shift.priors, sampled) < 0.05
    assert shift.p_value < 1e-6 and shift.total_variation > 0.3
    assert np.all(shift.priors_low <= shift.priors) and np.all(shift.priors <= shift.priors_high)
    assert np.mean((shift.priors_low <= sampled) & (sampled <= shift.priors_high)) >= 0.7
    none = estimate(c.probabilities(calibrated["clean_z"]), assumed, assumed_rows=3000)
    assert none.p_value > 0.01 and none.total_variation < 0.05


def test_the_expected_accuracy_interval_holds_the_observed_accuracy_under_shift(calibrated):
    c = fit_calibrator("bcts", calibrated["val_z"], calibrated["val_y"])
    probs = c.probabilities(calibrated["test_z"])
    shift = estimate(probs, c.probabilities(calibrated["val_z"]).mean(axis=0), assumed_rows=3000)
    observed = float(np.mean(probs.argmax(axis=1) == calibrated["test_y"]))
    assert shift.expected_accuracy_low <= observed <= shift.expected_accuracy_high
    assert shift.expected_accuracy_high - shift.expected_accuracy_low < 0.06
    # the uncorrected mean confidence is not the same estimate: the correction moved it
    assert abs(shift.expected_accuracy - probs.max(axis=1).mean()) > 1e-3


def test_correcting_to_the_estimated_priors_lowers_nll_and_adds_the_log_ratio_to_the_logits(calibrated):
    c = fit_calibrator("bcts", calibrated["val_z"], calibrated["val_y"])
    assumed = c.probabilities(calibrated["val_z"]).mean(axis=0)
    probs = c.probabilities(calibrated["test_z"])
    priors = em_priors(probs, assumed).priors
    y = calibrated["test_y"]
    after = corrected(probs, assumed, priors)
    assert -np.mean(np.log(after[np.arange(len(y)), y])) < -np.mean(np.log(probs[np.arange(len(y)), y])) - 0.05
    folded = type(c)(c.temperature, bias=c.bias + log_ratio(assumed, priors))
    np.testing.assert_allclose(folded.probabilities(calibrated["test_z"]), after, atol=1e-12)


def test_the_shift_test_is_zero_at_the_assumed_priors_and_scaled_for_the_rows_they_came_from(calibrated):
    c = fit_calibrator("bcts", calibrated["val_z"], calibrated["val_y"])
    probs = c.probabilities(calibrated["test_z"])
    assumed = c.probabilities(calibrated["val_z"]).mean(axis=0)
    assert shift_test(probs, assumed, assumed) == (0.0, 1.0)
    priors = em_priors(probs, assumed).priors
    full, _ = shift_test(probs, assumed, priors)
    scaled, _ = shift_test(probs, assumed, priors, assumed_rows=len(probs))
    assert scaled == pytest.approx(full / 2)


def test_bbse_recovers_the_priors_from_the_confusion_matrix(calibrated):
    c = fit_calibrator("bcts", calibrated["val_z"], calibrated["val_y"])
    priors = bbse_priors(c.probabilities(calibrated["val_z"]), calibrated["val_y"], c.probabilities(calibrated["test_z"]))
    assert priors.sum() == pytest.approx(1.0) and np.all(priors >= 0)
    assert total_variation(priors, calibrated["truth"]) < 0.08


def test_em_that_hits_its_iteration_cap_says_so():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(K) * 0.3, size=200)
    result = em_priors(probs, np.full(K, 1 / K), max_iterations=2)
    assert (result.iterations, result.converged) == (2, False)


def test_without_resamples_the_estimate_is_the_same_point_with_no_bootstrap(calibrated):
    c = fit_calibrator("bcts", calibrated["val_z"], calibrated["val_y"])
    probs = c.probabilities(calibrated["test_z"])
    assumed = c.probabilities(calibrated["val_z"]).mean(axis=0)
    full, bare = estimate(probs, assumed), estimate(probs, assumed, resamples=0)
    np.testing.assert_array_equal(bare.priors, full.priors)
    np.testing.assert_array_equal(bare.priors_low, bare.priors)
    assert bare.expected_accuracy == full.expected_accuracy
    assert bare.expected_accuracy_high - bare.expected_accuracy_low < full.expected_accuracy_high - full.expected_accuracy_low
