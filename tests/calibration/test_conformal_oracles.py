"""MAPIE, TorchCP and crepes (test oracles only, installed by `make test` from tests/oracles.txt)
against Candor's conformal scores on the same calibrated probabilities.

Whose convention is whose:

* LAC (1 - p_y): Candor, MAPIE (``lac``) and TorchCP (``THR``) agree; checked against MAPIE.
* APS and RAPS, not randomised: Candor follows TorchCP (score = mass at or above the label's
  rank; a class is in when its score is at most the threshold, so a set can be empty).
  MAPIE's APS differs on purpose: its calibration scores are always randomised and its sets
  add the class that crosses the threshold (``include_last_label``), never empty.
* Class-conditional (Mondrian, categories = labels): checked against crepes' Mondrian
  conformal classifier without smoothing, one category per class.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from candor.calibration.conformal import APS, LAC, RAPS, class_thresholds, threshold

pytest.importorskip("mapie", reason="mapie is installed by `make test` (tests/oracles.txt)")
torch = pytest.importorskip("torch")


def _torchcp_modules():
    """torchcp's score functions and split predictor, without its package __init__s: those import
    every part (graph models need torch_geometric, training losses torchsort, a compiled extension),
    none of which the compared code uses. The modules themselves are torchcp's, unchanged."""
    spec = importlib.util.find_spec("torchcp")
    if spec is None:
        pytest.skip("torchcp is installed by `make test` (tests/oracles.txt)")
    root = Path(spec.submodule_search_locations[0])
    for name, folder in (("torchcp", root), ("torchcp.classification", root / "classification"),
                         ("torchcp.classification.predictor", root / "classification" / "predictor")):  # fmt: skip
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(folder)]
            sys.modules[name] = package
    score = importlib.import_module("torchcp.classification.score")
    return score, importlib.import_module("torchcp.classification.predictor.split")


torchcp_score, torchcp_split = _torchcp_modules()
crepes = pytest.importorskip("crepes", reason="crepes is installed by `make test` (tests/oracles.txt)")

from mapie.classification import SplitConformalClassifier  # noqa: E402
from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402

K = 6


def calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    z = rng.normal(size=(n, K)) * 1.5
    z[np.arange(n), y] += rng.uniform(1, 6, n)  # easy and hard rows: sets of every size
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True), y


class GivenProbabilities(ClassifierMixin, BaseEstimator):
    """A prefit classifier whose features are already its probabilities: MAPIE sees ours unchanged."""

    def fit(self, X, y):
        self.classes_ = np.arange(K)
        return self

    def predict_proba(self, X):
        return np.asarray(X)

    def predict(self, X):
        return np.asarray(X).argmax(axis=1)


@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_lac_sets_equal_mapie(coverage):
    p, y = calibrated(1200, 1)
    cal, test = slice(0, 601), slice(601, None)
    mapie = SplitConformalClassifier(GivenProbabilities().fit(p, y), confidence_level=coverage, conformity_score="lac",
                                     prefit=True)  # fmt: skip
    mapie.conformalize(p[cal], y[cal])
    _, theirs = mapie.predict_set(p[test])
    ours = LAC().sets(p[test], threshold(LAC().label_scores(p[cal], y[cal]), coverage))
    assert theirs.shape == (len(ours), K, 1)
    assert np.array_equal(theirs[:, :, 0], ours)
    assert 1 < ours.sum(axis=1).mean() < K  # the comparison is not between trivial sets


def _torchcp(score, p_cal, y_cal, p_test, coverage):
    predictor = torchcp_split.SplitPredictor(score, model=None)
    logp = lambda p: torch.log(torch.as_tensor(p, dtype=torch.float64))  # noqa: E731 - softmax(log p) = p
    predictor.calculate_threshold(logp(p_cal), torch.as_tensor(y_cal), alpha=1 - coverage)
    sets = predictor.predict_with_logits(logp(p_test))
    return float(predictor.q_hat), np.asarray(sets, dtype=bool)


@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
@pytest.mark.parametrize("ours, theirs", [
    (APS(), lambda: torchcp_score.APS(randomized=False)),
    (RAPS(penalty_weight=0.05, k_reg=2), lambda: torchcp_score.RAPS(randomized=False, penalty=0.05, kreg=2)),
], ids=["aps", "raps"])  # fmt: skip
def test_aps_and_raps_thresholds_and_sets_equal_torchcp(ours, theirs, coverage):
    p, y = calibrated(1000, 2)
    cal, test = slice(0, 499), slice(499, None)
    q_theirs, sets_theirs = _torchcp(theirs(), p[cal], y[cal], p[test], coverage)
    q_ours = threshold(ours.label_scores(p[cal], y[cal]), coverage)
    assert q_ours == pytest.approx(q_theirs, abs=1e-6)  # torchcp's penalty term is float32
    mine = ours.sets(p[test], q_ours)
    # Equal wherever a score is not within float32 rounding of the threshold.
    clear = np.abs(ours.class_scores(p[test]) - q_ours) > 1e-6
    assert np.array_equal(mine[clear], sets_theirs[clear])
    assert clear.mean() > 0.99 and 1 < mine.sum(axis=1).mean() < K


@pytest.mark.parametrize("coverage", [0.8, 0.9])
def test_class_conditional_sets_equal_crepes_mondrian(coverage):
    p, y = calibrated(3000, 3)
    cal, test = slice(0, 1500), slice(1500, None)
    score = LAC()
    cal_scores = score.label_scores(p[cal], y[cal])
    ours = score.sets(p[test], class_thresholds(cal_scores, y[cal], coverage, K))
    oracle = crepes.ConformalClassifier().fit(cal_scores, bins=y[cal])
    test_scores = score.class_scores(p[test])
    p_values = np.stack([oracle.predict_p(test_scores, bins=np.full(len(test_scores), k), smoothing=False)[:, k]
                         for k in range(K)], axis=1)  # fmt: skip
    # The set is the classes whose p-value exceeds alpha. crepes' own predict_set keeps p >= alpha,
    # one calibration row more conservative where (n_k + 1) * alpha is a whole number.
    theirs = p_values > (1 - coverage) + 1e-12
    assert np.array_equal(ours, theirs)
    assert 1 < ours.sum(axis=1).mean() < K
