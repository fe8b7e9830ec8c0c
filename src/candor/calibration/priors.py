"""The class priors a version's posteriors assume, and what a child corrected to new priors is.

A version's calibrated posteriors assume the label mix of the rows they were calibrated for:

* **training priors** pi_train: the mean calibrated posterior of the stored held-out rows
  (validation and test, ``reference.npz``, which every child shares), through the version's own
  calibrator. That is the mix EM finds on clean traffic, so no shift is estimated where there is
  none: for BCTS it is the label mix of its fit rows (the bias's optimality condition), for
  temperature scaling the mix the network learned. (abstention's EM uses the same convention.)
  The label mix itself would not do: a temperature does not move the posteriors' mix to it;
* **assumed priors**: pi_train, or for a version corrected to new priors (manifest
  ``label_shift``) the priors it was corrected to.

A correction to priors pi adds log(pi / pi_train) to the *uncorrected* calibrated logits. For
calibrators whose head ends in adding a bias (BCTS, vector scaling) that is an exact fold into
the bias; temperature scaling becomes BCTS with that bias. A correction of a corrected version
first takes its own log ratio back out, so that pi_train always means the original priors and
corrections compose rather than pile up. Matrix and Dirichlet calibration are refused: adding a
bias after their map is expressible, but the map was fitted to undo per-class offsets jointly
with the mix of its fit rows, so there is no uncorrected bias to start from that EM's pi_t
describes (Alexandari et al. correct temperature-family calibrators only).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from candor.calibration.binning import bin_index
from candor.calibration.calibrators import Calibrator, CalibratorError, TemperatureScaling
from candor.calibration.calibrators.bcts import BiasCorrectedTemperature
from candor.calibration.label_shift import checked_priors, log_ratio
from candor.calibration.lineage import calibrator_of
from candor.calibration.manifest import Manifest, Reference
from candor.calibration.reference import REFERENCE_BINS, build_reference, read_sample

SHIFTABLE = ("temperature", "bcts", "vector")  # calibrators a prior correction folds into exactly


@dataclass(frozen=True)
class VersionPriors:
    assumed: np.ndarray  # [K] what the version's posteriors assume
    training: np.ndarray  # [K] pi_train, the original validation label mix
    rows: int  # held-out rows pi_train was measured on (the shift test is scaled for them)


def priors_reason(manifest: Manifest) -> str | None:
    """Why label shift cannot be estimated or corrected for this version, or None when it can."""
    who = f"{manifest.name}/{manifest.version}"
    if manifest.task != "multiclass":
        return f"{who} is a multi-label model; label-shift estimation covers softmax (multiclass) models"
    if manifest.reference.sample is None:
        return (f"{who} has no stored validation labels (reference.npz, made before schema 2) to take its training "
                "priors from; retrain or re-export it")  # fmt: skip
    return None


def version_priors(folder: Path, manifest: Manifest) -> VersionPriors | None:
    """The version's priors from its stored sample, or None where :func:`priors_reason` says why not."""
    if priors_reason(manifest) is not None:
        return None
    sample = read_sample(folder, manifest.reference.sample)
    rows = len(sample.val_labels) + len(sample.test_labels)
    shift = manifest.label_shift
    if shift is not None:
        return VersionPriors(np.asarray(shift.priors, dtype=np.float64), np.asarray(shift.training_priors, dtype=np.float64),
                             rows)  # fmt: skip
    held_out = np.concatenate([sample.val_logits, sample.test_logits])
    training = checked_priors(calibrator_of(manifest).probabilities(held_out).mean(axis=0))
    return VersionPriors(training, training, rows)


def shifted_calibrator(calibrator: Calibrator, priors: VersionPriors, new: np.ndarray) -> Calibrator:
    """The version's calibrator corrected to priors ``new``: its bias, less its own correction, plus
    log(new / pi_train). Raises :class:`CalibratorError` for a calibrator it does not fold into."""
    if calibrator.method not in SHIFTABLE:
        raise CalibratorError(f"a prior correction does not commute with {calibrator.title}: its map was fitted jointly "
                              f"with its rows' class mix; correct a version calibrated by {', '.join(SHIFTABLE)}")  # fmt: skip
    shift = log_ratio(priors.training, new)
    if isinstance(calibrator, TemperatureScaling):
        return BiasCorrectedTemperature(calibrator.temperature, bias=shift)
    base = calibrator.bias - log_ratio(priors.training, priors.assumed)
    return dataclasses.replace(calibrator, bias=base + shift, details={})


def reweighted_reference(folder: Path, manifest: Manifest, calibrator: Calibrator, priors: VersionPriors, new: np.ndarray,
                         who: str) -> Reference:  # fmt: skip
    """The child's reference: the stored reference rows (drawn at the training priors) through its
    calibrator, each weighted by new(y) / pi_train(y) of its label, so that they describe the traffic the child expects; the class
    mix reference is ``new`` itself. ECE and its interval are those of a seeded resample by the weights."""
    spec = manifest.reference.sample
    sample = read_sample(folder, spec)
    probs = calibrator.probabilities(sample.test_logits)
    labels = np.asarray(sample.test_labels, dtype=np.int64)
    weights = (checked_priors(new) / priors.training)[labels]
    weights /= weights.sum()
    resampled = np.random.default_rng(0).choice(len(labels), size=len(labels), p=weights)
    built = build_reference(probs[resampled], labels[resampled], spec.split, source="", sample=spec)
    conf, hit = probs.max(axis=1), probs.argmax(axis=1) == labels
    hist = np.bincount(bin_index(conf, REFERENCE_BINS), weights=weights, minlength=REFERENCE_BINS)
    source = (f"{spec.split} split ({spec.rows} rows, logits stored with {spec.stored_with}) through {who}'s "
              f"{calibrator.method} calibrator, reweighted to its corrected class priors")  # fmt: skip
    return dataclasses.replace(built, source=source, confidence_histogram=(hist / hist.sum()).tolist(),
                               class_frequencies=checked_priors(new).tolist(), mean_confidence=float(weights @ conf),
                               accuracy=float(weights @ hit))  # fmt: skip
