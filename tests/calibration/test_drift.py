import numpy as np
import pytest

from candor.calibration.drift import js_distance, psi


def test_psi_by_hand():
    # (0.6-0.5) ln(0.6/0.5) + (0.4-0.5) ln(0.4/0.5), floor 0
    expected = 0.1 * np.log(1.2) - 0.1 * np.log(0.8)
    assert psi([50, 50], [60, 40], floor=0) == pytest.approx(expected)
    assert psi([0.5, 0.5], [0.6, 0.4]) == pytest.approx(expected, rel=1e-3)


def test_psi_is_symmetric_zero_on_equal_and_finite_with_empty_bins():
    a, b = [10, 0, 30], [5, 20, 15]
    assert psi(a, b) == pytest.approx(psi(b, a))
    assert psi(a, [1, 0, 3]) == pytest.approx(0.0)
    assert np.isfinite(psi(a, b)) and psi(a, b) > 0.25


def test_js_distance_bounds():
    assert js_distance([1, 1], [1, 1]) == pytest.approx(0.0)
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert 0 < js_distance([3, 1], [1, 3]) < 1


@pytest.mark.parametrize(
    "ref, live, message",
    [
        ([1], [1], "at least 2 bins"),
        ([1, 1], [0, 0], "live is empty"),
        ([1, -1], [1, 1], "non-negative"),
        ([1, 1], [1, 1, 1], "same bins"),
    ],
)
def test_bad_histograms(ref, live, message):
    with pytest.raises(ValueError, match=message):
        psi(ref, live)
