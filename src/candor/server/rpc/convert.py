"""candor.v1 messages to core values and back: the only place that knows both."""

from __future__ import annotations

import numpy as np

from candor.server.core.feedback import ACCEPTED, DUPLICATE, EXPIRED, UNKNOWN_ID, FeedbackItem
from candor.server.core.label_shift import ShiftReport
from candor.server.core.plane import CalibrationState, InputTensor, Prediction
from candor.server.core.recalibrate import Recalibration
from candor.server.core.repository import FAILED, LOADING, READY, VersionEntry
from candor.server.core.settings import Settings
from candor.v1 import inference_pb2 as pb

OUTCOMES = {ACCEPTED: pb.FEEDBACK_OUTCOME_ACCEPTED, UNKNOWN_ID: pb.FEEDBACK_OUTCOME_UNKNOWN_ID,
            DUPLICATE: pb.FEEDBACK_OUTCOME_DUPLICATE, EXPIRED: pb.FEEDBACK_OUTCOME_EXPIRED}  # fmt: skip
STATES = {LOADING: pb.MODEL_STATE_LOADING, READY: pb.MODEL_STATE_READY, FAILED: pb.MODEL_STATE_FAILED}
DRIFT_STATES = (pb.DRIFT_STATE_OK, pb.DRIFT_STATE_WARN, pb.DRIFT_STATE_DRIFT)


FP32, INT32 = np.dtype("<f4"), np.dtype("<i4")


def to_raw(array: np.ndarray, dtype: np.dtype = FP32) -> bytes:
    """Little-endian bytes in row-major order, as both protocols carry tensors: ``tobytes`` writes C order
    whatever the layout, so an array already of ``dtype`` (the model's outputs) costs one call."""
    return (array if array.dtype == dtype else array.astype(dtype)).tobytes()


def _dtype_name(value: int) -> str:
    # An enum value this server does not know (a newer client) has no name.
    return pb.DataType.Name(value) if value in pb.DataType.values() else f"unknown dtype {value}"


FLOAT32_DTYPES = (pb.DATA_TYPE_FLOAT32, pb.DATA_TYPE_UNSPECIFIED)


def input_tensor(t: pb.Tensor) -> InputTensor:
    dtype = t.dtype
    if dtype in FLOAT32_DTYPES:  # the common case: no name to look up
        return InputTensor(shape=t.shape, raw=t.raw_data, values=t.float_data)
    return InputTensor(shape=t.shape, raw=t.raw_data, values=t.float_data, dtype_ok=False, dtype_name=_dtype_name(dtype))


def _fill(tensor: pb.Tensor, array: np.ndarray, dtype: int = pb.DATA_TYPE_FLOAT32) -> None:
    """Write ``array`` into a response's own tensor field (no intermediate message to copy)."""
    tensor.shape[:] = array.shape
    tensor.dtype = dtype
    tensor.raw_data = to_raw(array, FP32 if dtype == pb.DATA_TYPE_FLOAT32 else INT32)


def predict_response(p: Prediction, return_logits: bool, columnar: bool) -> pb.PredictResponse:
    """Columnar: whole arrays as raw bytes and one request id, nothing per row in Python. The per-row
    layout (deprecated, for clients of earlier releases) spells out ids, names and lists per row."""
    top = p.top_k_indices
    response = pb.PredictResponse(model=p.model.name, version=p.model.version, top_k=top.shape[1])
    _fill(response.probabilities, p.probabilities)
    if return_logits:
        _fill(response.logits, p.logits)
    if p.sets is not None:
        rule, served = p.sets
        _fill(response.prediction_set_size, served.sizes, pb.DATA_TYPE_INT32)
        _fill(response.prediction_set_index, served.classes, pb.DATA_TYPE_INT32)
        response.coverage, response.conformal_method = rule.coverage, rule.method
    if columnar:
        response.request_id = p.request_id
        _fill(response.top_k_index, top, pb.DATA_TYPE_INT32)
        _fill(response.top_k_probability, p.top_k_probabilities)
        return response
    names = p.model.manifest.class_names
    response.confidences.extend(p.confidences.tolist())
    response.prediction_ids.extend(p.prediction_ids)
    response.top_k_indices.extend(top.ravel().tolist())
    response.top_k_names.extend([names[i] for i in top.ravel()])
    response.top_k_probabilities.extend(p.top_k_probabilities.ravel().tolist())
    return response


def model_info(entry: VersionEntry, settings: Settings) -> pb.ModelInfo:
    info = pb.ModelInfo(name=entry.name, version=str(entry.version), state=STATES[entry.state], message=entry.message,
                        max_rows_per_request=settings.max_rows_per_request)  # fmt: skip
    if entry.model is not None:
        m = entry.model.manifest
        info.task = m.task
        info.class_names.extend(m.class_names)
        info.num_features = m.input.shape[1]
        info.temperature.extend(m.temperature.value)
        info.provider = entry.model.provider
        info.smoothing_convention = m.smoothing.convention
        info.smoothing_epsilon = m.smoothing.epsilon
        info.test_ece = m.metrics.after_temperature.ece
        info.test_accuracy = m.metrics.after_temperature.accuracy
        info.calibration_method = m.calibrator.method
        sets = entry.model.opened.sets
        if sets is not None:
            info.conformal_methods.extend(sets.spec.methods)
            info.recommended_conformal_method = sets.spec.recommended
            info.default_coverage = sets.spec.default_coverage
            info.max_coverage = sets.max_coverage
        info.max_batch_size = settings.max_batch_size
    return info


def feedback_items(request: pb.FeedbackRequest) -> list[FeedbackItem]:
    return [FeedbackItem(i.prediction_id, i.label, list(i.probabilities), list(i.logits)) for i in request.items]


def feedback_response(outcomes: list[str]) -> pb.FeedbackResponse:
    return pb.FeedbackResponse(outcomes=[OUTCOMES[o] for o in outcomes], accepted=outcomes.count(ACCEPTED),
                               unknown_id=outcomes.count(UNKNOWN_ID), duplicate=outcomes.count(DUPLICATE),
                               expired=outcomes.count(EXPIRED))  # fmt: skip


def calibration_response(state: CalibrationState) -> pb.GetCalibrationResponse:
    model = state.model
    ref = model.manifest.reference
    low, high = ref.ece_interval or (0.0, 0.0)
    response = pb.GetCalibrationResponse(
        model=model.name,
        version=model.version,
        temperature=model.manifest.temperature.value,
        calibration_method=model.manifest.calibrator.method,
        reference=pb.ReferenceSignals(accuracy=ref.accuracy, ece=ref.ece, mean_confidence=ref.mean_confidence,
                                      confidence_histogram=ref.confidence_histogram, class_frequencies=ref.class_frequencies,
                                      source=ref.source, ece_low=low, ece_high=high),
    )  # fmt: skip
    drift = state.drift
    if drift is not None:
        response.drift.CopyFrom(pb.DriftSignals(
            rows=drift.rows, confidence_psi=drift.confidence_psi, confidence_js_distance=drift.confidence_js,
            prediction_psi=drift.prediction_psi, expected_accuracy=drift.expected_accuracy,
            expected_accuracy_gap=drift.accuracy_gap, mean_entropy=drift.mean_entropy,
            confidence_state=DRIFT_STATES[state.confidence_state], prediction_state=DRIFT_STATES[state.prediction_state],
        ))  # fmt: skip
    observed = state.observed
    if observed is not None:
        bins = observed.reliability
        response.observed.CopyFrom(pb.ObservedSignals(
            rows=observed.rows, accuracy=observed.accuracy, ece=observed.ece, nll=observed.nll, brier=observed.brier,
            expected_accuracy=observed.expected_accuracy, accuracy_gap=observed.accuracy_gap,
            ece_low=observed.ece_interval.low, ece_high=observed.ece_interval.high,
            accuracy_gap_low=observed.accuracy_gap_interval.low, accuracy_gap_high=observed.accuracy_gap_interval.high,
            debiased_rms_ece=observed.debiased_rms_ece,
            reliability=[pb.ReliabilityBin(upper_edge=hi, count=int(n), confidence=c if n else 0.0, accuracy=a if n else 0.0)
                         for hi, n, c, a in zip(bins.edges[1:], bins.count, bins.confidence, bins.accuracy, strict=True)],
            set_coverage=[pb.SetCoverage(method=c.method, coverage=c.coverage, rows=c.rows, covered=c.covered,
                                         covered_low=c.covered_low, covered_high=c.covered_high, mean_size=c.mean_size)
                          for c in observed.set_coverage],
        ))  # fmt: skip
    if state.prior_shift is not None:
        response.prior_shift.CopyFrom(prior_shift(state.prior_shift))
    response.prior_shift_reason = state.prior_shift_reason
    response.last_prediction_at = state.last_prediction_at or 0.0
    response.idle = state.idle
    return response


def prior_shift(report: ShiftReport) -> pb.PriorShift:
    e = report.estimate
    return pb.PriorShift(
        rows=e.rows, window_start=report.window_start, window_end=report.window_end, priors=e.priors.tolist(),
        priors_low=e.priors_low.tolist(), priors_high=e.priors_high.tolist(), assumed_priors=e.assumed.tolist(),
        training_priors=report.training_priors.tolist(), em_iterations=e.iterations, converged=e.converged,
        log_likelihood_ratio=e.log_likelihood_ratio, p_value=e.p_value, total_variation=e.total_variation,
        expected_accuracy=e.expected_accuracy, expected_accuracy_low=e.expected_accuracy_low,
        expected_accuracy_high=e.expected_accuracy_high, labelled_rows=report.labelled_rows,
        observed_accuracy=0.0 if report.labelled_rows == 0 else report.observed_accuracy,
    )  # fmt: skip


def recalibrate_response(r: Recalibration) -> pb.RecalibrateResponse:
    fields = {k: v for k, v in r.__dict__.items() if k not in ("new_version", "prior_shift")}
    response = pb.RecalibrateResponse(new_version=str(r.new_version or ""), **fields)
    if r.prior_shift is not None:
        response.prior_shift.CopyFrom(prior_shift(r.prior_shift))
    return response
