"""The conformal scores Candor serves and reports; adding one is a module and a line here."""

from __future__ import annotations

from candor.calibration.conformal.aps import APS
from candor.calibration.conformal.base import ConformalError, ConformalScore
from candor.calibration.conformal.lac import LAC
from candor.calibration.conformal.raps import RAPS

REGISTRY: dict[str, type[ConformalScore]] = {cls.name: cls for cls in (LAC, APS, RAPS)}
METHODS: tuple[str, ...] = tuple(REGISTRY)
# Served when a version measured nothing to choose by (see candor.calibration.conformal.split.recommend).
RECOMMENDED = "lac"


def score_of(name: str, **options) -> ConformalScore:
    """A registered score, with its options (RAPS: penalty_weight, k_reg); ConformalError naming the choices otherwise."""
    cls = REGISTRY.get(name)
    if cls is None:
        raise ConformalError(f"unknown conformal method {name!r}; choose one of {', '.join(METHODS)}")
    return cls(**options)
