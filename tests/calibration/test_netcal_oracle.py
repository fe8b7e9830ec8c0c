"""netcal (a test oracle only, installed by `make test` from tests/oracles.txt) against
Candor's calibrators on the same logits."""

import pytest
from scipy.special import log_softmax, softmax

from candor.calibration.calibrators import fit_calibrator
from candor.calibration.metrics import nll
from tests.calibration.test_calibrators import logits_and_labels

netcal_scaling = pytest.importorskip("netcal.scaling", reason="netcal is installed by `make test` (tests/oracles.txt)")


@pytest.mark.parametrize("method, oracle", [("temperature", "TemperatureScaling"), ("vector", "LogisticCalibration")])
def test_netcal_fits_no_better_on_the_same_logits(method, oracle):
    """netcal takes probabilities and works on their logs, log softmax(z); both fit on exactly
    those logits and are scored on held-out rows: Candor's NLL is equal to 1e-3 or better.
    (netcal 1.4 has no matrix or Dirichlet calibrator; those are checked against their
    closed-form optimum in test_matrix_and_dirichlet_reach_the_optimum.)"""
    z, y, _ = logits_and_labels(shift=[1.0, 0.0, -0.5, 0.0])
    logp = log_softmax(z, axis=1)
    ours = fit_calibrator(method, logp[:800], y[:800]).probabilities(logp[800:])
    theirs = getattr(netcal_scaling, oracle)()
    theirs.fit(softmax(z[:800], axis=1), y[:800])
    q = theirs.transform(softmax(z[800:], axis=1))
    assert nll(ours, y[800:]) <= nll(q, y[800:]) + 1e-3
