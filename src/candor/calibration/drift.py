"""Distances between a reference distribution and live traffic, for drift.

Both take histograms as counts or shares over the same bins (the reference
confidence histogram and predicted-class mix in the manifest, and the same
bins filled by live predictions) and normalise them first.

>>> psi([0.5, 0.5], [0.5, 0.5])
0.0
"""

from __future__ import annotations

import numpy as np

# Empty bins make PSI's log infinite; both sides get this share added before
# renormalising (the usual fix), so one empty bin moves PSI a bounded amount.
PSI_FLOOR = 1e-4


def _shares(hist, name: str) -> np.ndarray:
    h = np.asarray(hist, dtype=np.float64)
    if h.ndim != 1 or h.size < 2:
        raise ValueError(f"{name} must be a 1-D histogram with at least 2 bins, got shape {h.shape}")
    if not np.all(np.isfinite(h)) or np.any(h < 0):
        raise ValueError(f"{name} must hold finite, non-negative counts")
    total = h.sum()
    if total <= 0:
        raise ValueError(f"{name} is empty: no observations to compare")
    return h / total


def psi(reference, live, floor: float = PSI_FLOOR) -> float:
    """Population stability index: sum over bins of (l - r) * ln(l / r).

    Symmetric in its arguments; 0 for identical mixes. Common reading: below
    0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a major one.
    """
    r, lv = _shares(reference, "reference"), _shares(live, "live")
    if r.shape != lv.shape:
        raise ValueError(f"reference and live histograms need the same bins, got {r.size} and {lv.size}")
    r = (r + floor) / (1 + floor * r.size)
    lv = (lv + floor) / (1 + floor * lv.size)
    return float(np.sum((lv - r) * np.log(lv / r)))


def js_distance(reference, live) -> float:
    """Jensen-Shannon distance (square root of the divergence, log base 2): 0 to 1."""
    r, lv = _shares(reference, "reference"), _shares(live, "live")
    if r.shape != lv.shape:
        raise ValueError(f"reference and live histograms need the same bins, got {r.size} and {lv.size}")
    from scipy.spatial.distance import (
        jensenshannon,  # imported on first use (at a scrape, never per request): it adds about 0.2 s to every start
    )
    return float(jensenshannon(r, lv, base=2))
