"""Served prediction sets in one compiled call per request, where a set rule allows it.

Every score the served sets use (LAC, APS, RAPS, non-randomised) is, in a row's probabilities sorted from
the largest, ``a * x_r + b * (x_0 + ... + x_r) + offset_r``: LAC is ``a = -1, b = 0, offset = 1``, APS
``a = 0, b = 1``, RAPS adds its rank penalty to the offset. :class:`RankedRule` reads ``a`` and ``b`` off a
rule's affine form (:func:`candor.server.core.sets.affine_form`), and the extension ``_ranked_sets`` (C,
built with the package where a compiler is at hand) ranks, scores and selects each row in one call.

Without the extension, or for a form it does not cover, the numpy path of
:meth:`candor.server.core.sets.PredictionSets.apply` serves the same sets (tests hold them equal).

    rule = RankedRule.of(linear, offset, limit, None)                  # once per (method, level)
    sizes, classes, order, ranked = rule.apply(probs, top_k, per_size)  # per request: float32 [N, K] in
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("candor.server")

try:
    from candor.server.core import _ranked_sets
except ImportError:  # built without a C compiler: the numpy path serves the sets
    _ranked_sets = None

BUILT = _ranked_sets is not None


@functools.cache
def warn_if_not_built() -> None:
    """Say once per process, when a version with prediction sets loads, that they take the slower path."""
    if not BUILT:
        log.warning("prediction sets use the numpy path: the compiled kernel candor.server.core._ranked_sets is not "
                    "built (install a C compiler and Python's headers, then reinstall candor; docs/benchmarks.md "
                    "has what each path costs)")  # fmt: skip


@dataclass(frozen=True)
class RankedRule:
    """A set rule in the kernel's terms: rank r (class c) is in when
    ``a * x_r + b * cumsum_r + rank_offset[r] <= rank_limit[r] + class_limit[c]``."""

    a: float
    b: float
    rank_offset: np.ndarray  # float64 [K]
    rank_limit: np.ndarray  # float64 [K]
    class_limit: np.ndarray  # float64 [K]
    # Sets are prefixes of the ranking (the score never falls along it, the limit never rises): the kernel then
    # ranks a row only until its set has ended and its top-k is known.
    prefix: bool

    @classmethod
    def of(cls, linear: np.ndarray, offset: np.ndarray, limit: np.ndarray | None,
           class_thresholds: np.ndarray | None) -> RankedRule | None:  # fmt: skip
        """The rule for an affine form whose ``linear`` is ``a * I + b * (upper-triangular ones)``, with either one
        threshold (``limit``: already ``threshold + tolerance - offset``) or ``class_thresholds`` (``[K]``, the
        tolerance added); None when the form is another, or when the kernel is not built."""
        if not BUILT:
            return None
        k = linear.shape[0]
        b = float(linear[0, 1]) if k > 1 else 0.0
        a = float(linear[0, 0]) - b
        if not np.array_equal(linear, a * np.eye(k) + b * np.triu(np.ones((k, k)))):
            return None
        zeros = np.zeros(k)
        if limit is not None:  # the numpy path's comparison, (s @ linear) <= limit, term for term
            limit = np.ascontiguousarray(limit, np.float64)
            # With values sorted falling and nonnegative, a * x_r (a <= 0) and b * cumsum_r (b >= 0) never fall
            # along the ranking, and neither does their rounded sum: once a rank is out, every later one is.
            prefix = a <= 0 <= b and bool(np.all(np.diff(limit) <= 0))
            return cls(a, b, zeros, limit, zeros, prefix)
        # class-conditional: (s @ linear) + offset <= thresholds[class] + tolerance; any rank may be in or out
        return cls(a, b, np.ascontiguousarray(offset, np.float64), zeros,
                   np.ascontiguousarray(class_thresholds, np.float64), False)  # fmt: skip

    def apply(self, probs: np.ndarray, top: int, size_counts: np.ndarray) -> tuple[np.ndarray, ...] | None:
        """(sizes int32 [N], the sets' classes int32 flat, order int32 [N, top], ranked float32 [N, top]), each
        row's set size counted into ``size_counts`` (int64 [K + 1]); None when ``probs`` is not float32 in C order
        (the numpy path takes any)."""
        if probs.dtype != np.float32 or not probs.flags.c_contiguous:
            return None
        n, k = probs.shape
        order = np.empty((n, top), np.int32)
        ranked = np.empty((n, top), np.float32)
        sizes = np.empty(n, np.int32)
        classes = np.empty(n * k, np.int32)
        total = _ranked_sets.ranked_sets(probs, n, k, self.a, self.b, self.rank_offset, self.rank_limit, self.class_limit,
                                         self.prefix, top, order, ranked, sizes, classes, size_counts)  # fmt: skip
        return sizes, classes[:total], order, ranked
