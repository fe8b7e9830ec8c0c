"""What healthy predictions look like: the reference the server compares live traffic with."""

from __future__ import annotations

import numpy as np

from candor.calibration._inputs import as_multilabel, as_probs_and_labels
from candor.calibration.binning import bin_index
from candor.calibration.ece import ece, per_class_ece
from candor.calibration.manifest import Reference

REFERENCE_BINS = 100  # fine enough for PSI and JS distance on live histograms


def confidence_histogram(confidence: np.ndarray, n_bins: int = REFERENCE_BINS) -> np.ndarray:
    """Shares of ``confidence`` in equal-width ``(lo, hi]`` bins of [0, 1] (0 in the first)."""
    counts = np.bincount(bin_index(np.asarray(confidence, dtype=np.float64), n_bins), minlength=n_bins)
    return counts / max(counts.sum(), 1)


def build_reference(probs: np.ndarray, labels: np.ndarray, split: str, multilabel: bool = False) -> Reference:
    """Reference statistics of calibrated ``probs`` on held-out data.

    Multiclass: top-label confidence histogram, predicted-class mix, mean
    confidence, accuracy and top-label ECE. Multi-label: every entry's
    confidence in its own decision, max(p, 1 - p); the share of rows
    predicting each class present; macro ECE of P(present).
    """
    if multilabel:
        p, y = as_multilabel(probs, labels)
        conf = np.maximum(p, 1 - p).ravel()
        return Reference(
            split=split,
            n_samples=int(p.shape[0]),
            confidence_histogram=confidence_histogram(conf).tolist(),
            class_frequencies=np.mean(p > 0.5, axis=0).tolist(),
            mean_confidence=float(conf.mean()),
            accuracy=float(np.mean((p > 0.5) == (y == 1))),
            ece=float(per_class_ece(p, y).mean()),
        )
    p, y = as_probs_and_labels(probs, labels)
    conf = p.max(axis=1)
    pred = p.argmax(axis=1)
    return Reference(
        split=split,
        n_samples=int(p.shape[0]),
        confidence_histogram=confidence_histogram(conf).tolist(),
        class_frequencies=(np.bincount(pred, minlength=p.shape[1]) / len(pred)).tolist(),
        mean_confidence=float(conf.mean()),
        accuracy=float(np.mean(pred == y)),
        ece=ece(p, y),
    )
