"""``candor.v1.InferenceService``."""

from __future__ import annotations

import asyncio
import logging

import grpc
import numpy as np

from candor.server.engine import Answer, Engine, check_top_k
from candor.server.errors import CandorError, InvalidArgument
from candor.server.feedback import ACCEPTED, DUPLICATE, EXPIRED, UNKNOWN_ID, FeedbackItem, FeedbackService
from candor.server.instrument import unary
from candor.server.metrics import ServerMetrics
from candor.server.model import LoadedModel
from candor.server.monitor import DriftThresholds
from candor.server.observed import FeedbackWindow
from candor.server.recalibrate import recalibrate
from candor.server.repository import FAILED, LOADING, READY, VersionEntry
from candor.server.status import status_code
from candor.server.tensors import rows_from_parts, to_raw
from candor.v1 import inference_pb2 as pb
from candor.v1 import inference_pb2_grpc as pb_grpc

log = logging.getLogger("candor.server")
_OUTCOMES = {
    ACCEPTED: pb.FEEDBACK_OUTCOME_ACCEPTED,
    UNKNOWN_ID: pb.FEEDBACK_OUTCOME_UNKNOWN_ID,
    DUPLICATE: pb.FEEDBACK_OUTCOME_DUPLICATE,
    EXPIRED: pb.FEEDBACK_OUTCOME_EXPIRED,
}
_STATES = {LOADING: pb.MODEL_STATE_LOADING, READY: pb.MODEL_STATE_READY, FAILED: pb.MODEL_STATE_FAILED}


def _dtype_name(value: int) -> str:
    # An enum value this server does not know (a newer client) has no name.
    return pb.DataType.Name(value) if value in pb.DataType.values() else f"unknown dtype {value}"


def model_info(entry: VersionEntry, max_batch_size: int) -> pb.ModelInfo:
    info = pb.ModelInfo(name=entry.name, version=str(entry.version), state=_STATES[entry.state], message=entry.message)
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
        info.max_batch_size = max_batch_size
    return info


def build_response(answer: Answer, top_k: int, return_logits: bool) -> pb.PredictResponse:
    model = answer.model
    probs = answer.probabilities
    n, k = probs.shape
    top = answer.top_k(top_k)
    names = model.manifest.class_names
    response = pb.PredictResponse(
        model=model.name,
        version=model.version,
        probabilities=pb.Tensor(shape=[n, k], dtype=pb.DATA_TYPE_FLOAT32, raw_data=to_raw(probs)),
        confidences=probs.max(axis=1).tolist(),
        prediction_ids=answer.prediction_ids(),
        top_k=top_k,
        top_k_indices=top.ravel().tolist(),
        top_k_names=[names[i] for i in top.ravel()],
        top_k_probabilities=np.take_along_axis(probs, top, axis=1).ravel().tolist(),
    )
    if return_logits:
        response.logits.CopyFrom(pb.Tensor(shape=[n, k], dtype=pb.DATA_TYPE_FLOAT32, raw_data=to_raw(answer.logits)))
    return response


_DRIFT_STATES = (pb.DRIFT_STATE_OK, pb.DRIFT_STATE_WARN, pb.DRIFT_STATE_DRIFT)


def calibration_response(
    model: LoadedModel, thresholds: DriftThresholds, window: FeedbackWindow | None
) -> pb.GetCalibrationResponse:
    ref = model.manifest.reference
    response = pb.GetCalibrationResponse(
        model=model.name,
        version=model.version,
        temperature=model.manifest.temperature.value,
        reference=pb.ReferenceSignals(accuracy=ref.accuracy, ece=ref.ece, mean_confidence=ref.mean_confidence,
                                      confidence_histogram=ref.confidence_histogram, class_frequencies=ref.class_frequencies),
    )  # fmt: skip
    drift = model.monitor.report() if model.monitor is not None else None
    if drift is not None:
        response.drift.CopyFrom(pb.DriftSignals(
            rows=drift.rows, confidence_psi=drift.confidence_psi, confidence_js_distance=drift.confidence_js,
            prediction_psi=drift.prediction_psi, expected_accuracy=drift.expected_accuracy,
            expected_accuracy_gap=drift.accuracy_gap, mean_entropy=drift.mean_entropy,
            confidence_state=_DRIFT_STATES[thresholds.state(drift.confidence_psi)],
            prediction_state=_DRIFT_STATES[thresholds.state(drift.prediction_psi)],
        ))  # fmt: skip
    observed = window.report() if window is not None else None
    if observed is not None:
        bins = observed.reliability
        response.observed.CopyFrom(pb.ObservedSignals(
            rows=observed.rows, accuracy=observed.accuracy, ece=observed.ece, nll=observed.nll, brier=observed.brier,
            expected_accuracy=observed.expected_accuracy, accuracy_gap=observed.accuracy_gap,
            reliability=[pb.ReliabilityBin(upper_edge=hi, count=int(n), confidence=c if n else 0.0, accuracy=a if n else 0.0)
                         for hi, n, c, a in zip(bins.edges[1:], bins.count, bins.confidence, bins.accuracy, strict=True)],
        ))  # fmt: skip
    return response


class InferenceService(pb_grpc.InferenceServiceServicer):
    def __init__(self, engine: Engine, metrics: ServerMetrics, max_rows: int, max_batch_size: int, feedback: FeedbackService,
                 thresholds: DriftThresholds):  # fmt: skip
        self.engine = engine
        self.metrics = metrics
        self.feedback = feedback
        self.thresholds = thresholds
        self.max_rows = max_rows
        self.max_batch_size = max_batch_size

    def _rows(self, request: pb.PredictRequest, model: LoadedModel):
        t = request.inputs
        return rows_from_parts(
            list(t.shape), t.raw_data, list(t.float_data), num_features=model.num_features, max_rows=self.max_rows,
            dtype_ok=t.dtype in (pb.DATA_TYPE_FLOAT32, pb.DATA_TYPE_UNSPECIFIED), dtype_name=_dtype_name(t.dtype),
        )  # fmt: skip

    async def _answer(self, request: pb.PredictRequest, time_remaining: float | None) -> pb.PredictResponse:
        model = self.engine.model(request.model, request.version)
        top_k = check_top_k(request.top_k, model.manifest.num_classes)
        rows = self._rows(request, model)
        answer = await self.engine.predict(model, rows, time_remaining)
        response = build_response(answer, top_k, request.return_logits)
        self.feedback.remember(model.name, model.version, list(response.prediction_ids), answer.logits, answer.probabilities)
        return response

    @unary("Predict")
    async def Predict(self, request: pb.PredictRequest, context: grpc.aio.ServicerContext) -> pb.PredictResponse:
        return await self._answer(request, context.time_remaining())

    async def PredictStream(self, request_iterator, context: grpc.aio.ServicerContext):
        """Each request answered in order; a bad one gets its own error and the stream goes on."""
        self.metrics.in_flight.inc()
        try:
            async for item in request_iterator:
                try:
                    response = await self._answer(item.request, context.time_remaining())
                    self.metrics.requests.labels("PredictStream", "OK").inc()
                    yield pb.PredictStreamResponse(response=response, correlation_id=item.correlation_id)
                except CandorError as e:
                    code = status_code(e)
                    self.metrics.requests.labels("PredictStream", code.name).inc()
                    error = pb.StreamError(code=code.value[0], message=str(e))
                    yield pb.PredictStreamResponse(correlation_id=item.correlation_id, error=error)
        finally:
            self.metrics.in_flight.dec()

    @unary("Feedback")
    async def Feedback(self, request: pb.FeedbackRequest, context) -> pb.FeedbackResponse:
        items = [FeedbackItem(i.prediction_id, i.label, list(i.probabilities), list(i.logits)) for i in request.items]
        outcomes = await self.feedback.submit(request.model, request.version, items)
        codes = [_OUTCOMES[o] for o in outcomes]
        return pb.FeedbackResponse(
            outcomes=codes,
            accepted=outcomes.count(ACCEPTED),
            unknown_id=outcomes.count(UNKNOWN_ID),
            duplicate=outcomes.count(DUPLICATE),
            expired=outcomes.count(EXPIRED),
        )

    @unary("GetCalibration")
    async def GetCalibration(self, request: pb.GetCalibrationRequest, context) -> pb.GetCalibrationResponse:
        if not request.model:
            raise InvalidArgument("model is empty; name the model to report on")
        model = self.engine.model(request.model, request.version)
        return calibration_response(model, self.thresholds, self.feedback.windows.get((model.name, model.version)))

    @unary("Recalibrate")
    async def Recalibrate(self, request: pb.RecalibrateRequest, context) -> pb.RecalibrateResponse:
        if not request.model:
            raise InvalidArgument("model is empty; name the model to recalibrate")
        model = self.engine.model(request.model, request.version)
        rows = await asyncio.to_thread(self.feedback.store.rows_for, model.name, int(model.version))
        result = await asyncio.to_thread(
            recalibrate, self.engine.repository.root, model, rows, request.holdout_share or 0.3, request.min_rows or 100,
            request.dry_run,
        )  # fmt: skip
        if result.published:
            await self.engine.repository.refresh()  # serve it now rather than at the next poll
        fields = {k: v for k, v in result.__dict__.items() if k != "new_version"}
        return pb.RecalibrateResponse(new_version=str(result.new_version or ""), **fields)

    @unary("ListModels")
    async def ListModels(self, request: pb.ListModelsRequest, context) -> pb.ListModelsResponse:
        entries = self.engine.repository.entries()
        return pb.ListModelsResponse(models=[model_info(e, self.max_batch_size) for e in entries])

    @unary("GetModel")
    async def GetModel(self, request: pb.GetModelRequest, context) -> pb.GetModelResponse:
        if not request.name:
            raise InvalidArgument("name is empty; name the model to describe (ListModels shows them)")
        entry = self.engine.repository.entry(request.name, request.version)
        versions = [str(e.version) for e in self.engine.repository.versions(request.name)]
        return pb.GetModelResponse(model=model_info(entry, self.max_batch_size), versions=versions)
