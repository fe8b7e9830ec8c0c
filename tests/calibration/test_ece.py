"""ECE and its relatives against cases computed by hand."""

import numpy as np
import pytest

from candor.calibration import adaptive_ece, classwise_ece, ece, mce, reliability_bins, rms_ece
from candor.calibration.binning import bin_index


def test_two_rows_by_hand():
    # Row 1: conf 0.9, right (bin 14 of 15). Row 2: conf 0.6, wrong (bin 9).
    # ECE = 1/2 * |1 - 0.9| + 1/2 * |0 - 0.6| = 0.35
    probs = np.array([[0.9, 0.1], [0.6, 0.4]])
    assert ece(probs, np.array([0, 1])) == pytest.approx(0.35)
    assert mce(probs, np.array([0, 1])) == pytest.approx(0.6)
    assert rms_ece(probs, np.array([0, 1])) == pytest.approx(np.sqrt(0.5 * 0.01 + 0.5 * 0.36))


def test_rows_in_one_bin_are_averaged_before_the_gap():
    # Both in bin (0.8, 0.8667]: mean conf 0.85, accuracy 0.5 -> ECE 0.35, not the mean of row gaps.
    probs = np.array([[0.84, 0.16], [0.86, 0.14]])
    assert ece(probs, np.array([0, 1])) == pytest.approx(0.35)


def test_confidence_exactly_one_goes_in_the_last_bin():
    probs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    bins = reliability_bins(probs, np.array([0, 2]))
    assert bins.count[-1] == 2 and bins.count[:-1].sum() == 0
    assert ece(probs, np.array([0, 2])) == pytest.approx(0.5)


def test_confidence_zero_goes_in_the_first_bin():
    # A binary P(1) of 0 and 1: top-label confidence is 1 for both; use the
    # bin index directly for a zero confidence, which no top label can have.
    assert bin_index(np.array([0.0]), 15).tolist() == [0]
    assert bin_index(np.array([0.0, 1e-12, 1 / 15, 1 / 15 + 1e-12, 1.0]), 15).tolist() == [0, 0, 0, 1, 14]


def test_bins_are_closed_on_the_right():
    # 0.2 is the upper edge of bin 2 of 15: (0.1333, 0.2]
    assert bin_index(np.array([0.2, 0.2000001]), 15).tolist() == [2, 3]
    assert bin_index(np.array([0.4, 0.6, 0.8]), 5).tolist() == [1, 2, 3]


def test_empty_bins_are_skipped_and_weights_are_shares():
    probs = np.array([[0.95, 0.05]] * 3 + [[0.55, 0.45]])
    labels = np.array([0, 0, 1, 0])
    bins = reliability_bins(probs, labels)
    assert bins.count.sum() == 4 and np.count_nonzero(bins.count) == 2
    expected = 3 / 4 * abs(2 / 3 - 0.95) + 1 / 4 * abs(1 - 0.55)
    assert ece(probs, labels) == pytest.approx(expected)
    assert np.isnan(bins.accuracy[0]) and bins.gap[0] == 0


def test_perfectly_calibrated_bins_give_zero():
    probs = np.array([[0.75, 0.25]] * 4)
    assert ece(probs, np.array([0, 0, 0, 1])) == pytest.approx(0.0)


def test_binary_one_dimensional_input_is_p_of_class_one():
    p1 = np.array([0.9, 0.2])
    two_col = np.array([[0.1, 0.9], [0.8, 0.2]])
    labels = np.array([1, 1])
    assert ece(p1, labels) == pytest.approx(ece(two_col, labels))
    assert ece(p1, labels) == pytest.approx(0.5 * 0.1 + 0.5 * 0.8)


def test_adaptive_ece_uses_equal_mass_bins():
    # Four rows, two bins of two rows each: confidences (0.6, 0.7) and (0.8, 0.9).
    probs = np.array([[0.6, 0.4], [0.7, 0.3], [0.8, 0.2], [0.9, 0.1]])
    labels = np.array([0, 1, 0, 0])
    expected = 0.5 * abs(0.5 - 0.65) + 0.5 * abs(1.0 - 0.85)
    assert adaptive_ece(probs, labels, n_bins=2) == pytest.approx(expected)


def test_classwise_ece_by_hand():
    # Class 0: p = (0.9, 0.6) vs events (1, 0): bins 14 and 9 -> 0.5*0.1 + 0.5*0.6
    # Class 1: p = (0.1, 0.4) vs events (0, 1): bins 1 and 5 -> 0.5*0.1 + 0.5*0.6
    probs = np.array([[0.9, 0.1], [0.6, 0.4]])
    assert classwise_ece(probs, np.array([0, 1])) == pytest.approx(0.35)


@pytest.mark.parametrize(
    "probs, labels, message",
    [
        (np.array([[0.5, 0.6]]), np.array([0]), "sum to 1"),
        (np.array([[np.nan, 1.0]]), np.array([0]), "NaN"),
        (np.array([[0.5, 0.5]]), np.array([2]), r"\[0, 2\)"),
        (np.array([[0.5, 0.5]]), np.array([0, 1]), "1 entries"),
        (np.zeros((0, 3)), np.array([]), "empty"),
        (np.array([[1.2, -0.2]]), np.array([0]), r"\[0, 1\]"),
        (np.array([[0.5, 0.5]]), np.array([0.5]), "whole numbers"),
    ],
)
def test_bad_inputs_are_refused_with_a_reason(probs, labels, message):
    with pytest.raises(ValueError, match=message):
        ece(probs, labels)
