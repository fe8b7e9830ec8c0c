"""Post-hoc calibrators on raw logits z ``[N, K]``, fitted by minimising held-out NLL.

Each method is one class in a module of its own, found through :data:`REGISTRY`:

* ``temperature``: s = z / T, one T > 0 (Guo et al., 2017);
* ``bcts``: s = z / T + b, a temperature and a per-class bias (Alexandari et al., 2020);
* ``vector``: s = z * a + b, a per-class scale and bias (Guo et al., 2017);
* ``matrix``: s = z W^T + b, a full K x K map (Guo et al., 2017), fitted with
  off-diagonal and intercept regularisation (ODIR, Kull et al., 2019);
* ``dirichlet``: s = log_softmax(z) W^T + b, the same map on log-probabilities
  (Dirichlet calibration with ODIR, Kull et al., 2019).

The server never fits on its hot path and never imports torch: a fitted
:class:`Calibrator` is folded into the ONNX graph by :mod:`candor.graph` from its
:attr:`~Calibrator.head`, the same steps :meth:`~Calibrator.calibrated_logits` applies.

>>> import numpy as np
>>> c = fit_calibrator("temperature", np.array([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0]]), np.array([0, 0, 0]))
>>> c.name, c.parameters
('temperature', 1)
"""

from candor.calibration.calibrators.base import Calibrator, CalibratorError, HeadStep
from candor.calibration.calibrators.odir import ODIR_FOLDS, ODIR_GRID
from candor.calibration.calibrators.registry import METHODS, REGISTRY, fit_calibrator, method_class, minimum_rows, with_head
from candor.calibration.calibrators.temperature import TemperatureScaling
from candor.calibration.temperature import T_MAX, T_MIN

__all__ = ["METHODS", "ODIR_FOLDS", "ODIR_GRID", "REGISTRY", "T_MAX", "T_MIN", "Calibrator", "CalibratorError", "HeadStep",
           "TemperatureScaling", "fit_calibrator", "method_class", "minimum_rows", "with_head"]
