import numpy as np
import pytest

from candor.calibration import accuracy, brier, calibration_report, multilabel_report, nll


def test_accuracy_nll_brier_by_hand():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    labels = np.array([0, 1])
    assert accuracy(probs, labels) == 0.5
    assert nll(probs, labels) == pytest.approx(-(np.log(0.7) + np.log(0.3)) / 2)
    # sum over classes: (0.09 + 0.04 + 0.01) and (0.01 + 0.49 + 0.36)
    assert brier(probs, labels) == pytest.approx((0.14 + 0.86) / 2)


def test_nll_of_a_certain_mistake_is_large_but_finite():
    value = nll(np.array([[1.0, 0.0]]), np.array([1]))
    assert np.isfinite(value) and value > 20


def test_binary_brier_is_sum_over_both_columns():
    assert brier(np.array([0.8]), np.array([1])) == pytest.approx(2 * 0.2**2)


def test_multilabel_report_per_class_and_macro():
    probs = np.array([[0.9, 0.2], [0.3, 0.7]])
    targets = np.array([[1, 0], [1, 1]])
    r = multilabel_report(probs, targets)
    assert r["per_class"]["accuracy"] == [0.5, 1.0]
    assert r["accuracy"] == pytest.approx(0.75)
    assert r["subset_accuracy"] == 0.5
    assert r["per_class"]["brier"][0] == pytest.approx((0.01 + 0.49) / 2)
    assert r["per_class"]["nll"][1] == pytest.approx(-(np.log(0.8) + np.log(0.7)) / 2)
    # class 0: P = 0.9 (bin 14, event 1) and 0.3 (bin 4, event 1): 0.5*0.1 + 0.5*0.7
    assert r["per_class"]["ece"][0] == pytest.approx(0.4)


def test_multilabel_rejects_non_binary_targets():
    with pytest.raises(ValueError, match="0 or 1"):
        multilabel_report(np.array([[0.5]]), np.array([[2]]))


def test_report_holds_every_metric():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 4))
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    r = calibration_report(probs, rng.integers(0, 4, 50))
    assert set(r) == {"accuracy", "nll", "brier", "ece", "mce", "rms_ece", "adaptive_ece", "classwise_ece", "ece_low", "ece_high",
                      "debiased_rms_ece"}
    assert r["ece_low"] <= r["ece"] <= r["ece_high"]
    assert r["mce"] >= r["rms_ece"] >= r["ece"] >= 0
