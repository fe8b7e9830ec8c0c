"""Calibration math shared by the trainer and the server (numpy and scipy only).

Conventions are stated once here and repeated in each docstring:

* ``probs`` is ``[N, K]`` with rows summing to 1 (multiclass). A 1-D array of
  length N is a binary problem and holds P(class 1); it is expanded to
  ``[N, 2]`` as ``[1 - p, p]`` so that every metric sees the same layout.
* ``labels`` are integers in ``[0, K)``.
* Top-label ECE uses 15 equal-width bins ``(lo, hi]``; confidence 0 falls in
  the first bin and 1.0 in the last; empty bins are skipped; bins are weighted
  by their share of samples.

>>> import numpy as np
>>> from candor.calibration import ece
>>> ece(np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([0, 1]))
0.25
"""

from candor.calibration.binning import ReliabilityBins, reliability_bins
from candor.calibration.ece import adaptive_ece, classwise_ece, ece, mce, rms_ece
from candor.calibration.manifest import Manifest, read_manifest, write_manifest
from candor.calibration.metrics import accuracy, brier, nll
from candor.calibration.multilabel import multilabel_report
from candor.calibration.report import calibration_report
from candor.calibration.temperature import (
    T_MAX,
    T_MIN,
    TemperatureFit,
    fit_temperature,
    scale_logits,
    sigmoid,
    softmax,
)
from candor.schema import SchemaError

__all__ = [
    "Manifest",
    "SchemaError",
    "read_manifest",
    "write_manifest",
    "T_MAX",
    "T_MIN",
    "ReliabilityBins",
    "TemperatureFit",
    "accuracy",
    "adaptive_ece",
    "brier",
    "calibration_report",
    "classwise_ece",
    "ece",
    "fit_temperature",
    "mce",
    "multilabel_report",
    "nll",
    "reliability_bins",
    "rms_ece",
    "scale_logits",
    "sigmoid",
    "softmax",
]
