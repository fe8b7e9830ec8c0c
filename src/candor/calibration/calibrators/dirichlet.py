"""Dirichlet calibration: s = log_softmax(z) W^T + b, the K x K map on log-probabilities (Kull et al., 2019), with ODIR.

Its input is invariant to a per-row shift of the logits, so logits recovered from a
temperature-scaled version's served probabilities fit it as well as raw ones.
"""

from __future__ import annotations

from typing import ClassVar

from candor.calibration.calibrators.base import HeadStep
from candor.calibration.calibrators.odir import OdirMap


class DirichletCalibration(OdirMap):
    name: ClassVar[str] = "dirichlet"
    title: ClassVar[str] = "dirichlet scaling"
    head: ClassVar[tuple[HeadStep, ...]] = (HeadStep("LogSoftmax"), HeadStep("MatMul", "weight"), HeadStep("Add", "bias"))
    row_shift_invariant: ClassVar[bool] = True
