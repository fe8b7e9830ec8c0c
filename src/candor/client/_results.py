"""Typed results of every SDK call: numbers as numbers, arrays as numpy, enums as short names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from candor.v1 import inference_pb2 as pb

_STATES = {pb.MODEL_STATE_LOADING: "LOADING", pb.MODEL_STATE_READY: "READY", pb.MODEL_STATE_FAILED: "FAILED"}
_FEEDBACK = {pb.FEEDBACK_OUTCOME_ACCEPTED: "ACCEPTED", pb.FEEDBACK_OUTCOME_UNKNOWN_ID: "UNKNOWN_ID",
             pb.FEEDBACK_OUTCOME_DUPLICATE: "DUPLICATE", pb.FEEDBACK_OUTCOME_EXPIRED: "EXPIRED"}  # fmt: skip
_DRIFT = {pb.DRIFT_STATE_OK: "OK", pb.DRIFT_STATE_WARN: "WARN", pb.DRIFT_STATE_DRIFT: "DRIFT"}


def tensor_to_array(t: pb.Tensor) -> np.ndarray:
    """A candor.v1 tensor as numpy, read in place from the message's bytes (float32, or int32 for top_k_index)."""
    dtype = "<i4" if t.dtype == pb.DATA_TYPE_INT32 else "<f4"
    int32 = t.dtype == pb.DATA_TYPE_INT32  # int32 tensors come as raw bytes only, an empty set index too
    data = np.frombuffer(t.raw_data, dtype=dtype) if t.raw_data or int32 else np.asarray(t.float_data, dtype=np.float32)
    return data.reshape(tuple(t.shape))


class VersionNames:
    """The class names of one model version as a client learned them, or the error that kept it from
    learning them (raised when they are read)."""

    def __init__(self, names: Sequence[str] | None = None, *, error: Exception | None = None):
        self._names = None if names is None else tuple(names)
        self._error = error

    def _known(self) -> tuple[str, ...]:
        if self._names is None:
            raise self._error or LookupError("the class names of this version are not known")
        return self._names

    def __getitem__(self, index: int) -> str:
        return self._known()[index]

    def __len__(self) -> int:
        return len(self._known())


def is_columnar(r: pb.PredictResponse) -> bool:
    """True when the server answered in the columnar layout (it does when asked; a server of an earlier release
    does not know the flag and answers per row)."""
    return r.HasField("top_k_index")


@dataclass(frozen=True)
class PredictResult:
    """One answer per input row, in input order, as arrays. ``labels`` and ``prediction_ids`` are Python
    lists made on first use (from ``class_names`` and ``request_id``), so a caller who needs only the
    arrays never pays for a string per row."""

    model: str
    version: str
    probabilities: np.ndarray  # [N, K] calibrated
    top_k_indices: np.ndarray  # [N, k] int32, most probable first
    top_k_probabilities: np.ndarray  # [N, k]
    logits: np.ndarray | None  # [N, K] raw, when asked for
    request_id: str  # row i's prediction id is request_id + f"{i:08x}"; empty from a server of the per-row layout
    class_names: Sequence[str] | Mapping[int, str] | VersionNames  # of the version: index -> name
    _ids: Sequence[str] | None = field(default=None, repr=False, compare=False)  # per-row layout: as the server sent them
    set_sizes: np.ndarray | None = None  # [N] int32, when coverage was asked for
    set_classes: np.ndarray | None = None  # every set's class indices one row after another, most probable first
    coverage: float = 0.0  # the level the sets were made at (0: none asked)
    conformal_method: str = ""  # the score that made them

    @cached_property
    def sets(self) -> list[list[int]]:
        """[N] each row's prediction set, class indices, most probable first; empty lists of none asked."""
        if self.set_sizes is None:
            raise ValueError("no prediction sets: pass coverage= (e.g. 0.9) to predict")
        ends = np.cumsum(self.set_sizes).tolist()
        flat = self.set_classes.tolist()
        return [flat[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]

    @cached_property
    def set_labels(self) -> list[list[str]]:
        """[N] the class names of each row's set."""
        names = self.class_names
        return [[names[i] for i in row] for row in self.sets]

    @cached_property
    def confidences(self) -> np.ndarray:
        """[N] top-label probability."""
        return self.top_k_probabilities[:, 0]

    @cached_property
    def prediction_ids(self) -> list[str]:
        """[N] ids for feedback."""
        if self._ids is not None:
            return list(self._ids)
        return [f"{self.request_id}{i:08x}" for i in range(len(self.probabilities))] if self.request_id else []

    @cached_property
    def labels(self) -> list[list[str]]:
        """[N][k] class names of top_k_indices. If the client could not learn the version's names, this
        raises why; ``top_k_indices`` holds the answer either way."""
        names = self.class_names
        return [[names[i] for i in row] for row in self.top_k_indices.tolist()]

    @classmethod
    def from_proto(cls, r: pb.PredictResponse, class_names: Sequence[str] | VersionNames = ()) -> PredictResult:
        """Either layout: columnar (``class_names`` of the version needed) or the deprecated per-row one
        (from a server of an earlier release, which carries names and ids per row)."""
        probs = tensor_to_array(r.probabilities)
        logits = tensor_to_array(r.logits) if r.HasField("logits") else None
        sets = {}
        if r.HasField("prediction_set_size"):
            sets = dict(set_sizes=tensor_to_array(r.prediction_set_size), set_classes=tensor_to_array(r.prediction_set_index),
                        coverage=r.coverage, conformal_method=r.conformal_method)  # fmt: skip
        if is_columnar(r):
            return cls(r.model, r.version, probs, tensor_to_array(r.top_k_index), tensor_to_array(r.top_k_probability),
                       logits, r.request_id, class_names, **sets)  # fmt: skip
        n, k = len(probs), max(r.top_k, 1)
        top = np.asarray(r.top_k_indices, dtype=np.int32).reshape(n, k)
        names = dict(zip(top.ravel().tolist(), r.top_k_names, strict=True))  # the names of the classes it sent
        return cls(r.model, r.version, probs, top, np.asarray(r.top_k_probabilities, dtype=np.float32).reshape(n, k),
                   logits, "", class_names or names, list(r.prediction_ids), **sets)  # fmt: skip

    @classmethod
    def joined(cls, parts: Sequence[PredictResult]) -> PredictResult:
        """The answers to consecutive chunks of one call's rows (one version), as one result in row order."""
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        logits = None if first.logits is None else np.concatenate([p.logits for p in parts])
        ids = [i for p in parts for i in p.prediction_ids]
        sets = {}
        if first.set_sizes is not None:
            sets = dict(set_sizes=np.concatenate([p.set_sizes for p in parts]), coverage=first.coverage,
                        set_classes=np.concatenate([p.set_classes for p in parts]), conformal_method=first.conformal_method)
        return cls(first.model, first.version, np.concatenate([p.probabilities for p in parts]),
                   np.concatenate([p.top_k_indices for p in parts]), np.concatenate([p.top_k_probabilities for p in parts]),
                   logits, "", first.class_names, ids, **sets)  # fmt: skip


@dataclass(frozen=True)
class ModelDescription:
    name: str
    version: str
    state: str  # LOADING, READY or FAILED
    message: str
    task: str
    class_names: list[str]
    num_features: int
    temperature: list[float]
    provider: str
    smoothing: str
    epsilon: float
    test_ece: float
    test_accuracy: float
    calibration_method: str  # temperature, bcts, vector, matrix or dirichlet
    max_rows_per_request: int = 0  # the server's limit per Predict or Feedback; 0 from a server of an earlier release
    conformal_methods: list[str] = field(default_factory=list)  # scores of its prediction sets; empty: no sets
    recommended_conformal_method: str = ""
    default_coverage: float = 0.0  # KServe's prediction_set output
    max_coverage: float = 0.0  # the finest level its calibration split supports, n / (n + 1)

    @classmethod
    def from_proto(cls, m: pb.ModelInfo) -> ModelDescription:
        return cls(m.name, m.version, _STATES.get(m.state, "UNKNOWN"), m.message, m.task, list(m.class_names), m.num_features,
                   [round(t, 6) for t in m.temperature], m.provider, m.smoothing_convention, round(m.smoothing_epsilon, 6),
                   m.test_ece, m.test_accuracy, m.calibration_method, m.max_rows_per_request, list(m.conformal_methods),
                   m.recommended_conformal_method, round(m.default_coverage, 6), m.max_coverage)  # fmt: skip


@dataclass(frozen=True)
class FeedbackResult:
    """One outcome per item, in order: ACCEPTED, UNKNOWN_ID, DUPLICATE or EXPIRED."""

    outcomes: list[str]
    accepted: int
    unknown_id: int
    duplicate: int
    expired: int

    @classmethod
    def from_proto(cls, r: pb.FeedbackResponse) -> FeedbackResult:
        return cls([_FEEDBACK.get(o, "UNSPECIFIED") for o in r.outcomes], r.accepted, r.unknown_id, r.duplicate, r.expired)

    @classmethod
    def joined(cls, parts: Sequence[FeedbackResult]) -> FeedbackResult:
        """The answers to consecutive chunks of one call's items, as one result in item order."""
        return cls([o for p in parts for o in p.outcomes], sum(p.accepted for p in parts), sum(p.unknown_id for p in parts),
                   sum(p.duplicate for p in parts), sum(p.expired for p in parts))  # fmt: skip


@dataclass(frozen=True)
class ReferenceSignals:
    """What healthy traffic looked like when the version was made (its manifest's reference)."""

    accuracy: float
    ece: float
    mean_confidence: float
    confidence_histogram: list[float]  # shares over 100 equal-width (lo, hi] bins of [0, 1]
    class_frequencies: list[float]  # predicted-class mix
    source: str  # where the statistics came from, in words
    ece_interval: tuple[float, float] | None  # 90% bootstrap; None for versions made without one


@dataclass(frozen=True)
class DriftSignals:
    """Label-free drift of the live window against the reference."""

    rows: int
    confidence_psi: float
    confidence_js_distance: float
    prediction_psi: float
    expected_accuracy: float
    expected_accuracy_gap: float
    mean_entropy: float
    confidence_state: str  # OK, WARN or DRIFT
    prediction_state: str


@dataclass(frozen=True)
class ReliabilityBin:
    upper_edge: float
    count: int
    confidence: float  # mean confidence of the bin's rows (0 when empty)
    accuracy: float


@dataclass(frozen=True)
class SetCoverage:
    """How often one conformal method's sets at one promised level held the label, on joined feedback."""

    method: str
    coverage: float  # promised
    rows: int
    covered: float  # observed share
    interval: tuple[float, float]  # 90% Clopper-Pearson
    mean_size: float


@dataclass(frozen=True)
class ObservedSignals:
    """Label-based calibration over the window of joined feedback."""

    rows: int
    accuracy: float
    ece: float
    nll: float
    brier: float
    expected_accuracy: float
    accuracy_gap: float  # expected minus observed: > 0 means overconfident
    reliability: list[ReliabilityBin]
    # 90% bootstrap intervals (1,000 resamples of the rows, seed 0): ECE basic, gap percentile.
    ece_interval: tuple[float, float]
    accuracy_gap_interval: tuple[float, float]
    debiased_rms_ece: float  # Kumar et al. 2019; 0 when the error is within noise
    set_coverage: list[SetCoverage] = field(default_factory=list)  # prediction sets on the same rows, per method and level


@dataclass(frozen=True)
class PriorShift:
    """The class priors of a window of the version's logged (unlabeled) rows, estimated by EM on its calibrated
    probabilities, against the priors those assume; every list is per class, in the version's class order."""

    rows: int
    window: tuple[float, float]  # oldest and newest request (unix seconds)
    priors: list[float]
    interval: list[tuple[float, float]]  # per class, 90% percentile bootstrap
    assumed_priors: list[float]  # the training priors, or those the version was corrected to
    training_priors: list[float]  # the original validation label mix
    em_iterations: int
    converged: bool
    log_likelihood_ratio: float
    p_value: float  # of "no shift from assumed_priors"
    total_variation: float
    expected_accuracy: tuple[float, float, float]  # label-free, under the corrected posteriors: value, 90% low, high
    labelled_rows: int  # window rows whose feedback has arrived ...
    observed_accuracy: float | None  # ... and the accuracy on them (None without any)

    @classmethod
    def from_proto(cls, p: pb.PriorShift) -> PriorShift:
        interval = list(zip(p.priors_low, p.priors_high, strict=True))
        return cls(int(p.rows), (p.window_start, p.window_end), list(p.priors), interval,
                   list(p.assumed_priors), list(p.training_priors), int(p.em_iterations), p.converged, p.log_likelihood_ratio,
                   p.p_value, p.total_variation, (p.expected_accuracy, p.expected_accuracy_low, p.expected_accuracy_high),
                   int(p.labelled_rows), p.observed_accuracy if p.labelled_rows else None)  # fmt: skip


@dataclass(frozen=True)
class CalibrationReport:
    """A version's live calibration (``GetCalibration``): the reference, label-free drift
    (None while nothing was predicted) and label-based signals (None while no feedback arrived)."""

    model: str
    version: str
    temperature: list[float]
    calibration_method: str
    reference: ReferenceSignals
    drift: DriftSignals | None
    observed: ObservedSignals | None
    prior_shift: PriorShift | None = None  # None where no estimate could be made: prior_shift_reason says why
    prior_shift_reason: str = ""
    last_prediction_at: float | None = None  # unix seconds of the newest request any replica logged
    idle: bool = False  # no request logged in the server's idle window (15 minutes by default)

    @classmethod
    def from_proto(cls, r: pb.GetCalibrationResponse) -> CalibrationReport:
        ref, d, o = r.reference, r.drift, r.observed
        interval = (ref.ece_low, ref.ece_high) if ref.ece_high > 0 else None
        reference = ReferenceSignals(ref.accuracy, ref.ece, ref.mean_confidence, list(ref.confidence_histogram),
                                     list(ref.class_frequencies), ref.source, interval)  # fmt: skip
        drift = None
        if r.HasField("drift"):
            drift = DriftSignals(int(d.rows), d.confidence_psi, d.confidence_js_distance, d.prediction_psi, d.expected_accuracy,
                                 d.expected_accuracy_gap, d.mean_entropy, _DRIFT.get(d.confidence_state, "UNSPECIFIED"),
                                 _DRIFT.get(d.prediction_state, "UNSPECIFIED"))  # fmt: skip
        observed = None
        if r.HasField("observed"):
            bins = [ReliabilityBin(b.upper_edge, int(b.count), b.confidence, b.accuracy) for b in o.reliability]
            observed = ObservedSignals(int(o.rows), o.accuracy, o.ece, o.nll, o.brier, o.expected_accuracy, o.accuracy_gap, bins,
                                       (o.ece_low, o.ece_high), (o.accuracy_gap_low, o.accuracy_gap_high),
                                       o.debiased_rms_ece,
                                       [SetCoverage(c.method, round(c.coverage, 6), int(c.rows), c.covered,
                                                    (c.covered_low, c.covered_high), c.mean_size)
                                        for c in o.set_coverage])  # fmt: skip
        shift = PriorShift.from_proto(r.prior_shift) if r.HasField("prior_shift") else None
        return cls(r.model, r.version, [round(t, 6) for t in r.temperature], r.calibration_method, reference, drift, observed,
                   shift, r.prior_shift_reason, r.last_prediction_at or None, r.idle)  # fmt: skip


@dataclass(frozen=True)
class Recalibration:
    """What ``Recalibrate`` did: the refit, its held-out check, and the version it published (if any)."""

    published: bool
    new_version: str | None  # None when nothing was published
    old_temperature: float
    new_temperature: float
    fit_rows: int
    holdout_rows: int
    holdout_nll_before: float
    holdout_nll_after: float
    holdout_ece_before: float
    holdout_ece_after: float
    message: str
    method: str
    selected_by: str  # how auto chose the method; empty when named
    nll_improvement: tuple[float, float, float]  # held-out mean NLL decrease, 90% paired-bootstrap low, high
    window: tuple[float, float]  # first and last feedback time fitted on (unix seconds)
    label_counts: list[int]  # rows per class in the window
    rows_without_logits: int  # left out: probabilities only, and the method needs raw logits
    validation_nll: tuple[float, float]  # before, after on the version's own validation logits (0, 0: none stored)
    included_client_recorded: bool  # client-recorded rows were in the window (asked for explicitly)
    # method "conformal": the promised level, and the held-out coverage of the old and the new scores,
    # each (value, 90% low, high); zeros otherwise.
    coverage_target: float = 0.0
    holdout_coverage_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    holdout_coverage_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    prior_shift: PriorShift | None = None  # method "label_shift": the estimate corrected to

    @classmethod
    def from_proto(cls, r: pb.RecalibrateResponse) -> Recalibration:
        return cls(r.published, r.new_version or None, r.old_temperature, r.new_temperature, int(r.fit_rows),
                   int(r.holdout_rows), r.holdout_nll_before, r.holdout_nll_after, r.holdout_ece_before, r.holdout_ece_after,
                   r.message, r.method, r.selected_by, (r.nll_improvement, r.nll_improvement_low, r.nll_improvement_high),
                   (r.window_start, r.window_end), [int(n) for n in r.label_counts], int(r.rows_without_logits),
                   (r.validation_nll_before, r.validation_nll_after), r.included_client_recorded, r.coverage_target,
                   (r.holdout_coverage_before, r.holdout_coverage_before_low, r.holdout_coverage_before_high),
                   (r.holdout_coverage_after, r.holdout_coverage_after_low, r.holdout_coverage_after_high),
                   PriorShift.from_proto(r.prior_shift) if r.HasField("prior_shift") else None)  # fmt: skip
