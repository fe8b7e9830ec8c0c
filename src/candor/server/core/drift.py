"""Label-free calibration monitoring: live predictions against the reference
the trainer recorded in the manifest, over a sliding window.

Signals per model version (DESIGN.md, "Flow of data" step 4):

* confidence drift: PSI and Jensen-Shannon distance between the live
  top-label confidence histogram and the reference one;
* prediction drift: PSI between the live predicted-class mix and the reference;
* expected accuracy: mean top-label confidence, which estimates accuracy
  without labels when the model is calibrated, and its gap to the reference
  accuracy;
* mean entropy of the predicted distributions (nats).

The window keeps whole batches: the newest ones that together cover at least
``max_rows`` rows, none older than ``max_age_s``. Its signals describe this replica's recent
traffic. Next to it, running totals since the version loaded (rows per PSI bin, per predicted
class, confidence sums) add up across replicas, so Prometheus can compute the fleet's PSI.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from candor.calibration.binning import bin_index
from candor.calibration.drift import js_distance, psi
from candor.calibration.manifest import Reference
from candor.calibration.reference import REFERENCE_BINS
from candor.server.core.tensors import all_finite

# PSI over the manifest's 100 fine bins is noisy for windows of a few hundred
# rows. As usual for PSI, adjacent fine bins are merged into groups holding at
# least this share of the reference each (about ten equal-mass bins; a single
# fine bin with more mass, like the top one of a confident model, stays alone).
PSI_GROUP_SHARE = 0.1
# Batches wait to be summarised together until this many rows do: a summary's dozen numpy calls cost much
# the same for 1 row as for 1,024, and under 256-row load py-spy put them at about 50 us a request when they
# ran every 1,024 rows; so 16 such requests share one. The window still covers at least max_rows rows ...
SUMMARY_ROWS = 4096
SUMMARY_SPREAD_S = 0.25  # ... or until one arrives this much later than the oldest waiting (reads never wait)


@dataclass(frozen=True)
class DriftThresholds:
    psi_warn: float = 0.1
    psi_drift: float = 0.25

    def state(self, value: float) -> int:
        """0 ok, 1 warn, 2 drift."""
        return 2 if value >= self.psi_drift else 1 if value >= self.psi_warn else 0


@dataclass(frozen=True)
class DriftReport:
    rows: int
    confidence_psi: float
    confidence_js: float
    prediction_psi: float
    expected_accuracy: float
    accuracy_gap: float  # expected accuracy minus the reference accuracy
    mean_entropy: float


@dataclass
class _Batch:
    at: float
    rows: int
    confidence: np.ndarray  # counts over REFERENCE_BINS
    classes: np.ndarray  # predicted-class counts [K]
    confidence_sum: float
    confidence_n: int  # rows (multiclass) or rows x classes (multi-label)
    entropy_sum: float


@dataclass(frozen=True)
class DriftTotals:
    """Everything predicted since the version loaded on this replica."""

    rows: int
    confidence_fine: np.ndarray  # [REFERENCE_BINS] entries per fine confidence bin
    confidence_bins: np.ndarray  # [groups] entries per PSI bin (DriftWindow.group_upper_edges)
    classes: np.ndarray  # [K] predicted-class counts
    confidence_sum: float
    confidence_n: int  # rows (multiclass) or rows x classes (multi-label)
    posterior_sums: np.ndarray  # [K] sum of each class's calibrated probability (multiclass; zeros for multi-label)


def psi_groups(reference_hist, min_share: float = PSI_GROUP_SHARE) -> np.ndarray:
    """Group index of each fine bin: consecutive bins merged until a group holds ``min_share`` of the reference."""
    ref = np.asarray(reference_hist, dtype=np.float64)
    ref = ref / ref.sum()
    groups = np.empty(len(ref), dtype=np.int64)
    group, mass = 0, 0.0
    for i, share in enumerate(ref):
        groups[i] = group
        mass += share
        if mass >= min_share and i < len(ref) - 1:
            group, mass = group + 1, 0.0
    if mass < min_share and group > 0:  # a thin tail joins the group before it
        groups[groups == group] = group - 1
    return groups


class DriftWindow:
    def __init__(self, reference: Reference, num_classes: int, multilabel: bool, max_rows: int, max_age_s: float):
        if len(reference.confidence_histogram) != REFERENCE_BINS:
            raise ValueError(f"reference histogram has {len(reference.confidence_histogram)} bins, expected {REFERENCE_BINS}")
        self.reference = reference
        self.num_classes = num_classes
        self.multilabel = multilabel
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self._groups = psi_groups(reference.confidence_histogram)
        n_groups = int(self._groups[-1]) + 1
        fine_upper = np.arange(1, REFERENCE_BINS + 1) / REFERENCE_BINS
        # The upper edge of each PSI bin (its last fine bin's), and the reference's share of it.
        self.group_upper_edges = np.array([fine_upper[self._groups == g][-1] for g in range(n_groups)])
        self.reference_group_shares = self._coarse(reference.confidence_histogram) / sum(reference.confidence_histogram)
        self._totals = DriftTotals(0, np.zeros(REFERENCE_BINS), np.zeros(n_groups), np.zeros(num_classes, np.int64), 0.0, 0,
                                   np.zeros(num_classes))  # fmt: skip
        self._batches: deque[_Batch] = deque()
        self._rows = 0
        self._pending: list[tuple[float, np.ndarray]] = []  # (time, probabilities) of batches not yet summarised
        self._pending_rows = 0
        self._lock = threading.Lock()

    def add(self, probs: np.ndarray, now: float | None = None) -> None:
        """Account one batch of calibrated probabilities [N, K].

        Batches are summarised in bulk: under load they are a few rows each, and a summary costs the same
        dozen numpy calls for 1 row as for 256. So a batch waits until ``SUMMARY_ROWS`` rows do, or until
        a newer one arrives more than ``SUMMARY_SPREAD_S`` later; every read summarises what waits first,
        so what is read always includes every batch added before."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._pending and now - self._pending[0][0] > SUMMARY_SPREAD_S:
                self._summarise()
            self._pending.append((now, probs))
            self._pending_rows += len(probs)
            if self._pending_rows >= SUMMARY_ROWS:
                self._summarise()

    def _summarise(self) -> None:
        """Fold the waiting batches into the window and the totals as one (under the lock)."""
        pending, self._pending, self._pending_rows = self._pending, [], 0
        now = pending[-1][0]
        # float32 as served: the sums below accumulate in float64 (confidences) or are only reported as a
        # mean (entropy), and float32 halves the memory each numpy pass reads.
        p = np.asarray(pending[0][1] if len(pending) == 1 else np.concatenate([b for _, b in pending]), dtype=np.float32)
        if not all_finite(p):  # one NaN would turn every signal and running sum into NaN for good
            p = p[np.isfinite(p).all(axis=1)]
            if not len(p):
                return
        clipped = np.clip(p, 1e-12, 1.0)
        if self.multilabel:
            conf = np.maximum(p, 1 - p).ravel().astype(np.float64)
            classes = (p > 0.5).sum(axis=0)
            q = np.clip(1 - p, 1e-12, 1.0)
            entropy = -(clipped * np.log(clipped) + q * np.log(q)).sum(dtype=np.float64)
            posteriors = 0.0
        else:
            predicted = p.argmax(axis=1)
            conf = p[np.arange(len(p)), predicted].astype(np.float64)  # the row's max: cheaper than max(axis=1)
            classes = np.bincount(predicted, minlength=self.num_classes)
            entropy = -float(np.dot(clipped.ravel(), np.log(clipped).ravel()))
            # EM's first step from the assumed priors: the mean posterior, summable across replicas
            posteriors = p.sum(axis=0, dtype=np.float64)
        bins = bin_index(conf, REFERENCE_BINS)
        fine = np.bincount(bins, minlength=REFERENCE_BINS).astype(np.float64)  # entries per fine bin
        groups = np.bincount(self._groups[bins], minlength=len(self.group_upper_edges)).astype(np.float64)
        batch = _Batch(now, len(p), fine, classes, float(conf.sum()), len(conf), float(entropy))
        t = self._totals
        self._totals = DriftTotals(t.rows + batch.rows, t.confidence_fine + fine, t.confidence_bins + groups,
                                   t.classes + classes, t.confidence_sum + batch.confidence_sum,
                                   t.confidence_n + batch.confidence_n, t.posterior_sums + posteriors)  # fmt: skip
        self._batches.append(batch)
        self._rows += batch.rows
        self._evict(now)

    def totals(self) -> DriftTotals:
        """Since the version loaded (an immutable value: safe to keep and read from any thread)."""
        with self._lock:
            if self._pending:
                self._summarise()
            return self._totals

    def _evict(self, now: float) -> None:
        while self._batches and (
            now - self._batches[0].at > self.max_age_s or self._rows - self._batches[0].rows >= self.max_rows
        ):
            self._rows -= self._batches.popleft().rows

    def _coarse(self, hist) -> np.ndarray:
        return np.bincount(self._groups, weights=np.asarray(hist, dtype=np.float64))

    def report(self, now: float | None = None) -> DriftReport | None:
        """The window's signals, or None while it is empty."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._pending:
                self._summarise()
            self._evict(now)
            if not self._batches:
                return None
            rows = self._rows
            conf = sum(b.confidence for b in self._batches)
            classes = sum(b.classes for b in self._batches)
            conf_sum = sum(b.confidence_sum for b in self._batches)
            conf_n = sum(b.confidence_n for b in self._batches)
            entropy_sum = sum(b.entropy_sum for b in self._batches)
        ref = self.reference
        expected = conf_sum / conf_n
        return DriftReport(
            rows=rows,
            confidence_psi=psi(self._coarse(ref.confidence_histogram), self._coarse(conf)),
            confidence_js=js_distance(self._coarse(ref.confidence_histogram), self._coarse(conf)),
            prediction_psi=psi(ref.class_frequencies, classes)
            if sum(ref.class_frequencies) > 0 and classes.sum() > 0
            else math.nan,
            expected_accuracy=expected,
            accuracy_gap=expected - ref.accuracy,
            mean_entropy=entropy_sum / rows,
        )
