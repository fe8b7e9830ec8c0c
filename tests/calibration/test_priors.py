"""A version's priors and its prior-corrected children, on the real digits model: pi_train is what EM finds
on clean rows, corrections fold into the bias and compose, and calibrators they do not fold into are refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from candor.calibration.calibrators import CalibratorError, fit_calibrator
from candor.calibration.label_shift import corrected, em_priors
from candor.calibration.lineage import calibrator_of
from candor.calibration.manifest import read_manifest
from candor.calibration.priors import VersionPriors, priors_reason, reweighted_reference, shifted_calibrator, version_priors
from candor.calibration.reference import read_sample

K = 10


@pytest.fixture(scope="module")
def digits(digits_repo):
    folder = digits_repo / "digits" / "1"
    manifest = read_manifest(folder / "candor.json")
    return folder, manifest, read_sample(folder, manifest.reference.sample)


def test_training_priors_are_what_em_finds_on_the_clean_held_out_rows(digits):
    folder, manifest, sample = digits
    priors = version_priors(folder, manifest)
    assert priors.rows == len(sample.val_labels) + len(sample.test_labels)
    np.testing.assert_array_equal(priors.assumed, priors.training)
    held_out = calibrator_of(manifest).probabilities(np.concatenate([sample.val_logits, sample.test_logits]))
    found = em_priors(held_out, priors.training)
    assert found.iterations <= 2 and np.abs(found.priors - priors.training).max() < 1e-6


def test_corrections_fold_into_the_bias_and_compose_from_the_original_priors(digits):
    folder, manifest, sample = digits
    base = calibrator_of(manifest)
    priors = version_priors(folder, manifest)
    first, second = np.full(K, 0.3 / 7), np.full(K, 0.3 / 7)
    first[:3], second[7:] = 0.7 / 3, 0.7 / 3
    child = shifted_calibrator(base, priors, first)
    assert child.method == "bcts" and child.temperature == base.temperature
    z = sample.test_logits
    np.testing.assert_allclose(child.probabilities(z), corrected(base.probabilities(z), priors.training, first), atol=1e-10)
    # Correcting the child again replaces its shift: the grandchild is the original corrected once, to `second`.
    grandchild = shifted_calibrator(child, VersionPriors(first, priors.training, priors.rows), second)
    np.testing.assert_allclose(grandchild.probabilities(z), corrected(base.probabilities(z), priors.training, second),
                               atol=1e-10)  # fmt: skip
    vector = fit_calibrator("vector", sample.val_logits, sample.val_labels)
    moved = shifted_calibrator(vector, priors, first)
    np.testing.assert_allclose(moved.probabilities(z), corrected(vector.probabilities(z), priors.training, first), atol=1e-10)
    matrix = fit_calibrator("matrix", sample.val_logits, sample.val_labels)
    with pytest.raises(CalibratorError, match="does not commute with matrix scaling"):
        shifted_calibrator(matrix, priors, first)


def test_the_childs_reference_is_the_parents_reweighted_to_the_new_priors(digits):
    folder, manifest, sample = digits
    priors = version_priors(folder, manifest)
    new = np.full(K, 0.3 / 7)
    new[:3] = 0.7 / 3
    child = shifted_calibrator(calibrator_of(manifest), priors, new)
    ref = reweighted_reference(folder, manifest, child, priors, new, "digits/2")
    assert ref.class_frequencies == pytest.approx(new.tolist())
    assert sum(ref.confidence_histogram) == pytest.approx(1.0) and ref.sample == manifest.reference.sample
    probs, labels = child.probabilities(sample.test_logits), sample.test_labels
    weights = (new / priors.training)[labels]
    assert ref.accuracy == pytest.approx(float(np.average(probs.argmax(axis=1) == labels, weights=weights)))
    assert ref.mean_confidence == pytest.approx(float(np.average(probs.max(axis=1), weights=weights)))
    assert "reweighted to its corrected class priors" in ref.source and "digits/2" in ref.source


def test_versions_without_stored_labels_or_softmax_have_no_priors(digits):
    folder, manifest, _ = digits
    without = dataclasses.replace(manifest, reference=dataclasses.replace(manifest.reference, sample=None))
    assert "no stored validation labels" in priors_reason(without) and version_priors(folder, without) is None
    multilabel = dataclasses.replace(manifest, task="multilabel")
    assert "multi-label" in priors_reason(multilabel)
