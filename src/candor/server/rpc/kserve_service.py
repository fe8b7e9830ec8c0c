"""``inference.GRPCInferenceService``: the KServe v2 / Open Inference Protocol.

Inputs: one tensor (any name) of datatype FP32 and shape [N, F], as
``raw_input_contents`` or ``contents.fp32_contents``. Outputs: always
``raw_output_contents``, FP32, for the requested outputs (``probabilities``
and/or ``logits``; both when none are named).
"""

from __future__ import annotations

import grpc

from candor import __version__
from candor.kserve.v2 import grpc_predict_v2_pb2 as pb
from candor.kserve.v2 import grpc_predict_v2_pb2_grpc as pb_grpc
from candor.server.core.errors import InvalidArgument
from candor.server.core.plane import DataPlane, InputTensor
from candor.server.rpc.calls import CallObserver, unary
from candor.server.rpc.convert import to_raw

PLATFORM = "onnx_onnxv1"
OUTPUTS = ("probabilities", "logits")


class KServeService(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane, observer: CallObserver, is_ready):
        self.plane = plane
        self.observer = observer
        self._is_ready = is_ready  # False while starting or stopping

    @unary("ServerLive")
    async def ServerLive(self, request, context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @unary("ServerReady")
    async def ServerReady(self, request, context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._is_ready())

    @unary("ModelReady")
    async def ModelReady(self, request: pb.ModelReadyRequest, context) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.plane.version_ready(request.name, request.version) and self._is_ready())

    @unary("ServerMetadata")
    async def ServerMetadata(self, request, context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="candor", version=__version__, extensions=[])

    @unary("ModelMetadata")
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context) -> pb.ModelMetadataResponse:
        model = self.plane.model(request.name, request.version)
        k = model.manifest.num_classes
        _, versions = self.plane.describe(request.name, request.version)
        T = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=model.name,
            versions=versions,
            platform=PLATFORM,
            inputs=[T(name="input", datatype="FP32", shape=[-1, model.num_features])],
            outputs=[T(name=name, datatype="FP32", shape=[-1, k]) for name in OUTPUTS],
        )

    @unary("ModelInfer")
    async def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        model = self.plane.model(request.model_name, request.model_version)
        if len(request.inputs) != 1:
            raise InvalidArgument(
                f"the model takes one input tensor 'input' [N, {model.num_features}] FP32, got {len(request.inputs)}"
            )
        tensor = request.inputs[0]
        raw = request.raw_input_contents
        if len(raw) > 1:
            raise InvalidArgument(f"raw_input_contents must hold one entry per input (1), got {len(raw)}")
        wanted = [o.name for o in request.outputs] or list(OUTPUTS)
        unknown = [w for w in wanted if w not in OUTPUTS]
        if unknown:
            raise InvalidArgument(f"unknown output {unknown[0]!r}; outputs are {', '.join(OUTPUTS)}")
        rows = InputTensor(shape=list(tensor.shape), raw=raw[0] if raw else b"", values=list(tensor.contents.fp32_contents),
                           dtype_ok=tensor.datatype == "FP32", dtype_name=tensor.datatype or "(empty)")  # fmt: skip
        answer = await self.plane.predict(model, rows, time_remaining=context.time_remaining())
        arrays = {"probabilities": answer.probabilities, "logits": answer.logits}
        response = pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
        for name in wanted:
            out = arrays[name]
            response.outputs.add(name=name, datatype="FP32", shape=list(out.shape))
            response.raw_output_contents.append(to_raw(out))
        return response
