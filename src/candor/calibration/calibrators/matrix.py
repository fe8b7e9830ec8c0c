"""Matrix scaling: s = z W^T + b, a full K x K map on the logits (Guo et al., 2017), fitted with ODIR."""

from __future__ import annotations

from typing import ClassVar

from candor.calibration.calibrators.base import HeadStep
from candor.calibration.calibrators.odir import OdirMap


class MatrixScaling(OdirMap):
    name: ClassVar[str] = "matrix"
    title: ClassVar[str] = "matrix scaling"
    head: ClassVar[tuple[HeadStep, ...]] = (HeadStep("MatMul", "weight"), HeadStep("Add", "bias"))
