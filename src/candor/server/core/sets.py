"""A served version's conformal prediction sets: thresholds from its stored scores, sets per request.

Thresholds are computed once per (method, level) from the version's ``conformal.npz`` and
kept; a request then costs one score pass and one sort of its rows. Served scores are the
non-randomised ones (a randomised set could not be recomputed when its label arrives).
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from candor.calibration.conformal import ConformalError, ConformalScore, class_thresholds, threshold
from candor.calibration.conformal.base import TIE_TOLERANCE
from candor.calibration.conformal.split import LEVELS, read_split, scores_of
from candor.calibration.intervals import coverage_interval
from candor.calibration.manifest import ConformalSpec, Manifest
from candor.server.core.errors import FailedPrecondition, InvalidArgument
from candor.server.core.ranked_sets import RankedRule, warn_if_not_built
from candor.server.core.tensors import row_starts

RULES_KEPT = 64  # (method, level) pairs whose thresholds are kept: callers asking many levels cannot grow it


@dataclass(frozen=True)
class SetRule:
    """How one request's sets are made: the score, its threshold(s), and what was asked.

    ``linear`` and ``offset``: LAC, APS and RAPS scores are affine in a row's probabilities sorted
    from the largest (``ranked_scores(s) = s @ linear + offset``: a sign, a running sum, a rank
    penalty), found once per rule by :func:`affine_form`; a request then pays one matrix product.
    None where a score is not (randomised: it needs its uniforms)."""

    score: ConformalScore
    thresholds: float | np.ndarray  # one, or [K] class-conditional
    coverage: float
    method: str
    linear: np.ndarray | None = None  # [K, K]
    offset: np.ndarray | None = None  # [K]
    limit: np.ndarray | None = None  # [K]: with one threshold, rank r is in the set when (s @ linear)[r] <= limit[r]
    ranked: RankedRule | None = None  # the same rule for the compiled kernel, where it is built and covers the form
    served_sizes: SizeCounts | None = None  # where serve() counts the sizes of the sets it makes with this rule


def affine_form(score: ConformalScore, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(linear, offset) with ``score.ranked_scores(s) == s @ linear + offset`` for every ``s``, read off the
    zero row and the unit rows and checked on random rows; None when the score has no such form."""
    if score.ranked_scores(np.zeros((1, k))) is None:
        return None
    offset = score.ranked_scores(np.zeros((1, k)))[0]
    linear = score.ranked_scores(np.eye(k)) - offset
    probe = -np.sort(-np.random.default_rng(0).dirichlet(np.ones(k), size=8), axis=1)
    if not np.allclose(score.ranked_scores(probe), probe @ linear + offset, rtol=0, atol=1e-12):
        return None
    return linear, offset


SIZE_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100)  # upper bounds (le) of the served set sizes' histogram


class SizeCounts:
    """A histogram of served set sizes: rows per size (0 to K), turned into the histogram's buckets when read.

    The compiled kernel adds its rows to ``per_size`` itself, with the GIL held. The numpy path only appends a
    request's sizes; they are counted in bulk (one bincount per :data:`FOLD_EVERY` requests, or at a scrape),
    since a numpy call per request costs a loaded server more than the list append."""

    FOLD_EVERY = 64

    def __init__(self, num_classes: int) -> None:
        self.per_size = np.zeros(num_classes + 1, np.int64)  # rows whose set held that many classes
        self._pending: list[np.ndarray] = []
        self._lock = threading.Lock()

    def add(self, sizes: np.ndarray) -> None:
        with self._lock:
            self._pending.append(sizes)
            if len(self._pending) >= self.FOLD_EVERY:
                self._fold()

    def _fold(self) -> None:
        """Count the pending sizes into per_size (the lock held)."""
        if not self._pending:
            return
        counts = np.bincount(np.concatenate(self._pending), minlength=len(self.per_size))
        self._pending = []
        self.per_size += counts  # in place: the kernel holds this very array

    def snapshot(self) -> tuple[np.ndarray, int, int]:
        """Rows per bucket of :data:`SIZE_BUCKETS` (the last: above every bound), the sizes' sum, the rows."""
        with self._lock:
            self._fold()
            per_size = self.per_size.copy()
        sizes = np.arange(len(per_size))
        buckets = np.bincount(np.searchsorted(SIZE_BUCKETS, sizes), weights=per_size, minlength=len(SIZE_BUCKETS) + 1)
        return buckets.astype(np.int64), int(per_size @ sizes), int(per_size.sum())


@dataclass
class PredictionSets:
    spec: ConformalSpec
    scores: dict[str, np.ndarray]  # the served methods' calibration scores
    labels: np.ndarray
    num_classes: int
    _rules: dict[tuple[str, float], SetRule] = field(default_factory=dict)
    # Served sizes per (method, level label): a level outside watched_levels counts as "other", so
    # callers asking many levels cannot add series.
    served: dict[tuple[str, str], SizeCounts] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.watched = frozenset(watched_levels(self.spec))

    def _served_sizes(self, method: str, coverage: float) -> SizeCounts:
        level = f"{coverage:g}" if coverage in self.watched else "other"
        counts = self.served.get((method, level))
        if counts is None:
            counts = self.served.setdefault((method, level), SizeCounts(self.num_classes))
        return counts

    @classmethod
    def load(cls, folder: Path, manifest: Manifest) -> PredictionSets | None:
        """The version's sets, or None when its manifest has no conformal scores (ValueError: a bad file)."""
        if manifest.conformal is None:
            return None
        warn_if_not_built()
        split = read_split(folder, manifest.conformal)
        missing = [m for m in manifest.conformal.methods if m not in split.scores]
        if missing:
            raise ValueError(f"{folder / manifest.conformal.file}: no scores for {', '.join(missing)}")
        return cls(manifest.conformal, {m: split.scores[m] for m in manifest.conformal.methods}, split.labels,
                   manifest.num_classes)  # fmt: skip

    @property
    def max_coverage(self) -> float:
        """The finest level the calibration split supports: n / (n + 1)."""
        n = self.spec.rows
        return n / (n + 1)

    def rule(self, coverage: float, method: str = "") -> SetRule:
        """The rule for a request, or InvalidArgument naming the allowed levels and methods."""
        method = method or self.spec.recommended
        key = (method, coverage)
        found = self._rules.get(key)
        if found is not None:
            return found
        if method not in self.scores:
            raise InvalidArgument(f"conformal method {method!r} is not one this version serves; choose one of "
                                  f"{', '.join(self.spec.methods)} (empty: {self.spec.recommended})")  # fmt: skip
        if not (0 < coverage < 1):
            raise InvalidArgument(f"coverage must lie in (0, 1), got {coverage}")
        try:
            if self.spec.class_conditional:
                q = class_thresholds(self.scores[method], self.labels, coverage, self.num_classes)
            else:
                q = threshold(self.scores[method], coverage, f"this version's calibration split ({self.spec.rows} rows)")
        except ConformalError as e:
            raise InvalidArgument(f"{e}; allowed: coverage in (0, {self.max_coverage:.6g}]") from None
        score = next(s for s in scores_of(self.spec, randomised=False) if s.label == method)
        form = affine_form(score, self.num_classes)
        counts = self._served_sizes(method, coverage)
        if form is None:
            found = SetRule(score, q, coverage, method, served_sizes=counts)
        else:
            linear, offset = form
            limit = None if np.ndim(q) else q + TIE_TOLERANCE - offset
            ranked = RankedRule.of(linear, offset, limit, None if limit is not None else q + TIE_TOLERANCE)
            found = SetRule(score, q, coverage, method, linear, offset, limit, ranked, counts)
        if len(self._rules) < RULES_KEPT:
            self._rules[key] = found
        return found

    @staticmethod
    def serve(rule: SetRule, probs: np.ndarray, top_k: int = 0, compiled: bool = True) -> ServedSets:
        """Each row's set, most probable class first, as ranked by a stable sort of the served float32 values
        (their order is that of the float64 ones; ties to the lower class), with the rows' ``top_k`` classes;
        the sets' sizes are counted into ``rule.served_sizes``.

        One call of the compiled kernel where the rule has one (:mod:`candor.server.core.ranked_sets`;
        ``compiled=False`` turns it off, for benchmarks). Otherwise :meth:`apply`'s numpy calls."""
        p = np.asarray(probs)
        if compiled and rule.ranked is not None:
            counts = rule.served_sizes.per_size if rule.served_sizes is not None else np.zeros(p.shape[1] + 1, np.int64)
            found = rule.ranked.apply(p, top_k, counts)
            if found is not None:
                return ServedSets(*found)
        served = PredictionSets.apply(rule, p)
        if rule.served_sizes is not None:
            rule.served_sizes.add(served.sizes)
        return served

    @staticmethod
    def apply(rule: SetRule, probs: np.ndarray) -> ServedSets:
        """The numpy path: each row's set, most probable class first, with every class ranked.

        A handful of numpy calls per request, each on the request's rows at once: under load their
        fixed cost is what a request pays (py-spy), so the sorted values are gathered by flat index, the
        scores are one matrix product (:func:`affine_form`) and the sizes another."""
        p = np.asarray(probs)
        n, k = p.shape
        order = np.argsort(-p, axis=1, kind="stable")
        ranked_probs = p.ravel()[order + row_starts(n, k)]
        if rule.limit is not None:  # one threshold
            in_order = ranked_probs @ rule.linear <= rule.limit
        elif rule.linear is not None:  # class-conditional: each rank against its class's threshold
            in_order = ranked_probs @ rule.linear + rule.offset <= rule.thresholds[order] + TIE_TOLERANCE
        else:
            in_order = np.take_along_axis(rule.score.sets(p.astype(np.float64), rule.thresholds), order, axis=1)
        sizes = in_order @ _ones(k)
        return ServedSets(sizes, order[in_order], order, ranked_probs)


# A constant array a request would otherwise build: every numpy call costs a served request several
# microseconds (under load, about three times what it costs alone), whatever its size.
@functools.lru_cache(maxsize=64)
def _ones(k: int) -> np.ndarray:
    return np.ones(k, np.int32)


class ServedSets(NamedTuple):
    """One request's sets: sizes ``[N]`` int32 and every set's classes one row after another; with the
    rows' first classes and probabilities in falling order (at least the top-k asked for), from which top-k is
    a slice. A tuple: built on every request, it costs less than a frozen dataclass."""

    sizes: np.ndarray
    classes: np.ndarray
    order: np.ndarray  # [N, top-k or more]
    ranked_probs: np.ndarray  # [N, top-k or more], float32 as served

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most probable classes and their probabilities: what top_classes gives, as views of the
        sort (the response's writer makes them int32 and contiguous in the one copy it makes anyway)."""
        return self.order[:, :k], self.ranked_probs[:, :k]


def no_sets_reason(manifest: Manifest) -> FailedPrecondition:
    if manifest.task == "multilabel":
        return FailedPrecondition(f"{manifest.name} version {manifest.version} is multi-label: prediction sets cover one "
                                  "label per row, and a multi-label row has several; use the per-class probabilities")
    return FailedPrecondition(f"{manifest.name} version {manifest.version} has no conformal scores (trained before they "
                              "were stored, or with --conformal-share 0); retrain it or serve a version that has them")


def watched_levels(spec: ConformalSpec) -> tuple[float, ...]:
    """The levels coverage is counted at for every joined label: the reported ones and the version's default."""
    return tuple(sorted({*LEVELS, spec.default_coverage}))


class CoverageTotals:
    """Per (method, level), the joined rows whose set was computed, how many held their label, and the
    sum of their sizes: counters a fleet adds up, whatever level each request asked for (the sets are
    recomputed from the stored logits, through the version's own thresholds)."""

    def __init__(self) -> None:
        self._sums: dict[tuple[str, float], list[int]] = {}
        self._lock = threading.Lock()

    def add(self, sets: PredictionSets, probabilities: np.ndarray, labels: np.ndarray) -> None:
        p = np.asarray(probabilities, dtype=np.float64)
        y = np.asarray(labels, dtype=np.int64)
        finite = np.isfinite(p).all(axis=1)
        p, y = p[finite], y[finite]
        counts = {}
        for method in sets.spec.methods:
            for level in watched_levels(sets.spec):
                try:
                    rule = sets.rule(level, method)
                except InvalidArgument:
                    continue  # the split cannot support this level (class-conditional with a small class)
                member = rule.score.sets(p, rule.thresholds)
                counts[(method, level)] = (len(y), int(member[np.arange(len(y)), y].sum()), int(member.sum()))
        with self._lock:
            for key, (rows, covered, size) in counts.items():
                sums = self._sums.setdefault(key, [0, 0, 0])
                sums[0] += rows
                sums[1] += covered
                sums[2] += size

    def snapshot(self) -> dict[tuple[str, float], tuple[int, int, int]]:
        """(method, level) -> (rows, covered, sum of set sizes)."""
        with self._lock:
            return {key: (a, b, c) for key, (a, b, c) in self._sums.items()}


@dataclass(frozen=True)
class SetCoverage:
    """One method's sets at one promised level on labelled rows: the share that held the label."""

    method: str
    coverage: float
    rows: int
    covered: float
    covered_low: float  # 90% Clopper-Pearson
    covered_high: float
    mean_size: float


def coverage_report(sets: PredictionSets, probabilities: np.ndarray, labels: np.ndarray) -> list[SetCoverage]:
    """Per served method and watched level, the coverage of ``labels`` by the sets of ``probabilities``."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    found = []
    for method in sets.spec.methods:
        for level in watched_levels(sets.spec):
            try:
                rule = sets.rule(level, method)
            except InvalidArgument:
                continue
            member = rule.score.sets(p, rule.thresholds)
            hit = int(member[np.arange(len(y)), y].sum())
            low, high = coverage_interval(hit, len(y))
            found.append(SetCoverage(method, level, len(y), hit / len(y), low, high,
                                     float(member.sum() / len(y))))  # fmt: skip
    return found
