"""Properties that must hold for any input, checked on generated data."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from candor.calibration import T_MAX, T_MIN, SchemaError, adaptive_ece, ece, fit_temperature, mce, rms_ece, softmax
from candor.calibration.manifest import manifest_from_dict
from tests.calibration.test_manifest import sample_manifest

logit_sets = st.integers(2, 6).flatmap(
    lambda k: st.tuples(
        arrays(np.float64, st.tuples(st.integers(1, 60), st.just(k)), elements=st.floats(-20, 20)),
        st.integers(0, 2**32 - 1),
    )
)


@given(logit_sets)
@settings(max_examples=60, deadline=None)
def test_ece_family_is_ordered_and_bounded(case):
    logits, seed = case
    probs = softmax(logits)
    labels = np.random.default_rng(seed).integers(0, probs.shape[1], len(probs))
    e, r, m = ece(probs, labels), rms_ece(probs, labels), mce(probs, labels)
    assert 0 <= e <= r + 1e-12 <= m + 2e-12 <= 1 + 2e-12
    assert 0 <= adaptive_ece(probs, labels) <= 1
    order = np.random.default_rng(seed).permutation(len(probs))
    assert np.isclose(ece(probs[order], labels[order]), e)


@given(logit_sets, st.floats(0.5, 2.0))
@settings(max_examples=40, deadline=None)
def test_temperature_is_positive_bounded_and_scale_equivariant(case, c):
    logits, seed = case
    labels = np.random.default_rng(seed).integers(0, logits.shape[1], len(logits))
    fit = fit_temperature(logits, labels)
    assert T_MIN <= fit.value <= T_MAX and np.isfinite(fit.nll_after)
    assert fit.nll_after <= fit.nll_before + 1e-9
    if not fit.clamped and T_MIN * 4 < fit.value < T_MAX / 4:
        # softmax(c z / (c T)) = softmax(z / T): scaling the logits scales the optimum.
        scaled = fit_temperature(c * logits, labels)
        assert np.isclose(scaled.value, c * fit.value, rtol=1e-3)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
@settings(max_examples=200, deadline=None)
def test_manifest_reader_refuses_arbitrary_json_with_schema_error(doc):
    # At most 20 leaves and 8-character keys can never spell a whole manifest: every document is refused,
    # and always with SchemaError (never a TypeError or KeyError from half-checked data).
    with pytest.raises(SchemaError):
        manifest_from_dict(doc)


@given(st.sampled_from(["temperature", "metrics", "data", "reference", "input", "smoothing"]), json_values)
@settings(max_examples=200, deadline=None)
def test_manifest_with_one_section_replaced_is_refused_or_valid(section, value):
    doc = json.loads(json.dumps(sample_manifest().to_dict()))
    doc[section] = value
    try:
        manifest_from_dict(doc)
    except SchemaError as e:
        assert section in str(e)


@given(arrays(np.float64, st.tuples(st.integers(1, 20), st.integers(1, 8)), elements=st.floats(-1e4, 1e4)))
@settings(max_examples=200, deadline=None)
def test_log_softmax_is_scipys_on_any_finite_logits(z):
    from scipy.special import log_softmax as scipy_log_softmax

    from candor.calibration.temperature import log_softmax

    for axis in (0, 1, -1):
        np.testing.assert_allclose(log_softmax(z, axis=axis), scipy_log_softmax(z, axis=axis), rtol=1e-12, atol=1e-12)
