"""Measure a model's logits on labelled data at two temperatures."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from candor.calibration import calibration_report, scale_logits
from candor.calibration.binning import (
    DEFAULT_BINS,
    ReliabilityBins,
    bin_statistics,
    reliability_bins,
)
from candor.calibration.manifest import Metrics, MetricSet, Reference
from candor.calibration.reference import build_reference


@dataclass(frozen=True)
class Measurement:
    split: str
    before: dict  # metrics at the "before" temperature (T = 1 after training)
    after: dict  # metrics at the fitted temperature
    bins_before: ReliabilityBins
    bins_after: ReliabilityBins
    reference: Reference  # from the "after" probabilities

    def metrics(self) -> Metrics:
        return Metrics(self.split, DEFAULT_BINS, MetricSet(**self.before), MetricSet(**self.after))

    def panels(self) -> dict[str, ReliabilityBins]:
        return {"before temperature": self.bins_before, "after temperature": self.bins_after}


def reliability(probs: np.ndarray, labels: np.ndarray, multilabel: bool) -> ReliabilityBins:
    """Top-label bins (multiclass) or pooled P(present) bins over every class (multi-label)."""
    if multilabel:
        return bin_statistics(probs.ravel(), labels.ravel(), DEFAULT_BINS)
    return reliability_bins(probs, labels, DEFAULT_BINS)


def measure(logits: np.ndarray, labels: np.ndarray, t_before, t_after, multilabel: bool, split: str) -> Measurement:
    task = "multilabel" if multilabel else "multiclass"
    before = scale_logits(logits, t_before, task)
    after = scale_logits(logits, t_after, task)
    return Measurement(
        split=split,
        before=calibration_report(before, labels, multilabel=multilabel),
        after=calibration_report(after, labels, multilabel=multilabel),
        bins_before=reliability(before, labels, multilabel),
        bins_after=reliability(after, labels, multilabel),
        reference=build_reference(after, labels, split, multilabel),
    )
