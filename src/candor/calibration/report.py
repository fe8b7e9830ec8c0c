"""One call that measures everything the manifest and reports record."""

from __future__ import annotations

import numpy as np

from candor.calibration.binning import DEFAULT_BINS
from candor.calibration.ece import adaptive_ece, classwise_ece, debiased_rms_ece, mce, rms_ece
from candor.calibration.intervals import ece_interval, multilabel_ece_interval
from candor.calibration.metrics import accuracy, brier, nll
from candor.calibration.multilabel import multilabel_report

METRIC_NAMES = ("accuracy", "nll", "brier", "ece", "mce", "rms_ece", "debiased_rms_ece", "adaptive_ece", "classwise_ece")
# Tables show ece as "value [low, high]"; the interval's ends are their own keys.
INTERVAL_NAMES = ("ece_low", "ece_high")


def calibration_report(
    probs: np.ndarray, labels: np.ndarray, *, multilabel: bool = False, n_bins: int = DEFAULT_BINS
) -> dict[str, float | None]:
    """Every metric in :data:`METRIC_NAMES` as plain floats.

    ``ece_low`` and ``ece_high`` are the 90% bootstrap interval of ``ece``
    (:mod:`candor.calibration.intervals`: 1,000 resamples, seed 0).

    For multi-label, ``labels`` is the 0/1 target matrix and there is no top
    label: ``ece`` and ``classwise_ece`` are both the macro average of the
    per-class ECE of P(present), and ``mce``, ``rms_ece``, ``debiased_rms_ece``
    and ``adaptive_ece`` are None.
    """
    if multilabel:
        r = multilabel_report(probs, labels, n_bins)
        interval = multilabel_ece_interval(probs, labels, n_bins)
        return {
            "accuracy": r["accuracy"],
            "nll": r["nll"],
            "brier": r["brier"],
            "ece": r["ece"],
            "mce": None,
            "rms_ece": None,
            "debiased_rms_ece": None,
            "adaptive_ece": None,
            "classwise_ece": r["ece"],
            "ece_low": interval.low,
            "ece_high": interval.high,
        }
    interval = ece_interval(probs, labels, n_bins)
    return {
        "accuracy": accuracy(probs, labels),
        "nll": nll(probs, labels),
        "brier": brier(probs, labels),
        "ece": interval.value,
        "mce": mce(probs, labels, n_bins),
        "rms_ece": rms_ece(probs, labels, n_bins),
        "debiased_rms_ece": debiased_rms_ece(probs, labels, n_bins),
        "adaptive_ece": adaptive_ece(probs, labels, n_bins),
        "classwise_ece": classwise_ece(probs, labels, n_bins),
        "ece_low": interval.low,
        "ece_high": interval.high,
    }
