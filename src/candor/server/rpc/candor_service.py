"""``candor.v1.InferenceService``: converters over the data plane, nothing more."""

from __future__ import annotations

import grpc

from candor.server.core.plane import DataPlane
from candor.server.rpc import convert
from candor.server.rpc.calls import CallObserver, stream, unary
from candor.v1 import inference_pb2 as pb
from candor.v1 import inference_pb2_grpc as pb_grpc


def _stream_error(item: pb.PredictStreamRequest, code: grpc.StatusCode, message: str) -> pb.PredictStreamResponse:
    return pb.PredictStreamResponse(correlation_id=item.correlation_id, error=pb.StreamError(code=code.value[0], message=message))


class InferenceService(pb_grpc.InferenceServiceServicer):
    def __init__(self, plane: DataPlane, observer: CallObserver):
        self.plane = plane
        self.observer = observer

    async def _predict(self, request: pb.PredictRequest, time_remaining: float | None) -> pb.PredictResponse:
        model = self.plane.model(request.model, request.version)
        prediction = await self.plane.predict(model, convert.input_tensor(request.inputs), top_k=request.top_k,
                                              keep_for_feedback=True, time_remaining=time_remaining,
                                              coverage=request.coverage, conformal_method=request.conformal_method)  # fmt: skip
        return convert.predict_response(prediction, request.return_logits, request.columnar)

    @unary("Predict")
    async def Predict(self, request: pb.PredictRequest, context: grpc.aio.ServicerContext) -> pb.PredictResponse:
        return await self._predict(request, context.time_remaining())

    @stream("PredictStream", error_reply=_stream_error)
    async def PredictStream(self, item: pb.PredictStreamRequest, context: grpc.aio.ServicerContext):
        """Each request answered in order; a bad one gets its own error and the stream goes on."""
        response = await self._predict(item.request, context.time_remaining())
        return pb.PredictStreamResponse(response=response, correlation_id=item.correlation_id)

    @unary("Feedback")
    async def Feedback(self, request: pb.FeedbackRequest, context) -> pb.FeedbackResponse:
        outcomes = await self.plane.feedback(request.model, request.version, convert.feedback_items(request))
        return convert.feedback_response(outcomes)

    @unary("GetCalibration")
    async def GetCalibration(self, request: pb.GetCalibrationRequest, context) -> pb.GetCalibrationResponse:
        return convert.calibration_response(await self.plane.calibration(request.model, request.version))

    @unary("Recalibrate")
    async def Recalibrate(self, request: pb.RecalibrateRequest, context) -> pb.RecalibrateResponse:
        result = await self.plane.recalibrate(request.model, request.version, holdout_share=request.holdout_share or 0.3,
                                              min_rows=request.min_rows or 100, dry_run=request.dry_run,
                                              method=request.method, since=request.since,
                                              newest_rows=request.newest_rows,
                                              include_client_recorded=request.include_client_recorded)  # fmt: skip
        return convert.recalibrate_response(result)

    @unary("ListModels")
    async def ListModels(self, request: pb.ListModelsRequest, context) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[convert.model_info(e, self.plane.settings) for e in self.plane.models()])

    @unary("GetModel")
    async def GetModel(self, request: pb.GetModelRequest, context) -> pb.GetModelResponse:
        entry, versions = self.plane.describe(request.name, request.version)
        return pb.GetModelResponse(model=convert.model_info(entry, self.plane.settings), versions=versions)
