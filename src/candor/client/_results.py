"""Typed results of every SDK call: numbers as numbers, arrays as numpy, enums as short names."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from candor.v1 import inference_pb2 as pb

_STATES = {pb.MODEL_STATE_LOADING: "LOADING", pb.MODEL_STATE_READY: "READY", pb.MODEL_STATE_FAILED: "FAILED"}
_FEEDBACK = {pb.FEEDBACK_OUTCOME_ACCEPTED: "ACCEPTED", pb.FEEDBACK_OUTCOME_UNKNOWN_ID: "UNKNOWN_ID",
             pb.FEEDBACK_OUTCOME_DUPLICATE: "DUPLICATE", pb.FEEDBACK_OUTCOME_EXPIRED: "EXPIRED"}  # fmt: skip
_DRIFT = {pb.DRIFT_STATE_OK: "OK", pb.DRIFT_STATE_WARN: "WARN", pb.DRIFT_STATE_DRIFT: "DRIFT"}


def tensor_to_array(t: pb.Tensor) -> np.ndarray:
    data = np.frombuffer(t.raw_data, dtype="<f4") if t.raw_data else np.asarray(t.float_data, dtype=np.float32)
    return data.reshape(tuple(t.shape)).astype(np.float32, copy=False)


@dataclass(frozen=True)
class PredictResult:
    """One answer per input row, in input order."""

    model: str
    version: str
    probabilities: np.ndarray  # [N, K] calibrated
    confidences: np.ndarray  # [N] top-label probability
    prediction_ids: list[str]  # [N] for feedback
    top_k_indices: np.ndarray  # [N, k] most probable first
    labels: list[list[str]]  # [N][k] class names of top_k_indices
    top_k_probabilities: np.ndarray  # [N, k]
    logits: np.ndarray | None  # [N, K] raw, when asked for

    @classmethod
    def from_proto(cls, r: pb.PredictResponse) -> PredictResult:
        probs = tensor_to_array(r.probabilities)
        n, k = len(probs), max(r.top_k, 1)
        names = list(r.top_k_names)
        return cls(
            model=r.model,
            version=r.version,
            probabilities=probs,
            confidences=np.asarray(r.confidences, dtype=np.float32),
            prediction_ids=list(r.prediction_ids),
            top_k_indices=np.asarray(r.top_k_indices, dtype=np.int64).reshape(n, k),
            labels=[names[i * k : (i + 1) * k] for i in range(n)],
            top_k_probabilities=np.asarray(r.top_k_probabilities, dtype=np.float32).reshape(n, k),
            logits=tensor_to_array(r.logits) if r.HasField("logits") else None,
        )


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
    calibration_method: str  # temperature, vector, matrix or dirichlet

    @classmethod
    def from_proto(cls, m: pb.ModelInfo) -> ModelDescription:
        return cls(m.name, m.version, _STATES.get(m.state, "UNKNOWN"), m.message, m.task, list(m.class_names), m.num_features,
                   [round(t, 6) for t in m.temperature], m.provider, m.smoothing_convention, round(m.smoothing_epsilon, 6),
                   m.test_ece, m.test_accuracy, m.calibration_method)  # fmt: skip


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
                                       o.debiased_rms_ece)  # fmt: skip
        return cls(r.model, r.version, [round(t, 6) for t in r.temperature], r.calibration_method, reference, drift, observed)


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

    @classmethod
    def from_proto(cls, r: pb.RecalibrateResponse) -> Recalibration:
        return cls(r.published, r.new_version or None, r.old_temperature, r.new_temperature, int(r.fit_rows),
                   int(r.holdout_rows), r.holdout_nll_before, r.holdout_nll_after, r.holdout_ece_before, r.holdout_ece_after,
                   r.message, r.method, r.selected_by, (r.nll_improvement, r.nll_improvement_low, r.nll_improvement_high),
                   (r.window_start, r.window_end), [int(n) for n in r.label_counts], int(r.rows_without_logits),
                   (r.validation_nll_before, r.validation_nll_after), r.included_client_recorded)  # fmt: skip
