"""Measure a model's logits on labelled data through two calibrators (before and after a fit)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from candor.calibration import calibration_report
from candor.calibration.binning import (
    DEFAULT_BINS,
    ReliabilityBins,
    bin_statistics,
    reliability_bins,
)
from candor.calibration.calibrators import Calibrator
from candor.calibration.manifest import Metrics, MetricSet, Reference
from candor.calibration.reference import build_reference


@dataclass(frozen=True)
class Measurement:
    split: str
    before: dict  # metrics through the "before" calibrator (T = 1 after training, the parent's for a refit)
    after: dict  # metrics through the fitted calibrator
    bins_before: ReliabilityBins
    bins_after: ReliabilityBins
    reference: Reference  # from the "after" probabilities

    def metrics(self) -> Metrics:
        return Metrics(self.split, DEFAULT_BINS, MetricSet(**self.before), MetricSet(**self.after))

    def panels(self) -> dict[str, ReliabilityBins]:
        return {"before calibration": self.bins_before, "after calibration": self.bins_after}


def reliability(probs: np.ndarray, labels: np.ndarray, multilabel: bool) -> ReliabilityBins:
    """Top-label bins (multiclass) or pooled P(present) bins over every class (multi-label)."""
    if multilabel:
        return bin_statistics(probs.ravel(), labels.ravel(), DEFAULT_BINS)
    return reliability_bins(probs, labels, DEFAULT_BINS)


def measure(logits: np.ndarray, labels: np.ndarray, before: Calibrator, after: Calibrator, multilabel: bool,
            split: str) -> Measurement:  # fmt: skip
    task = "multilabel" if multilabel else "multiclass"
    before, after = before.probabilities(logits, task), after.probabilities(logits, task)
    return Measurement(
        split=split,
        before=calibration_report(before, labels, multilabel=multilabel),
        after=calibration_report(after, labels, multilabel=multilabel),
        bins_before=reliability(before, labels, multilabel),
        bins_after=reliability(after, labels, multilabel),
        reference=build_reference(after, labels, split, multilabel),
    )
