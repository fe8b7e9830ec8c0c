"""``inference.GRPCInferenceService``: the KServe v2 / Open Inference Protocol.

Inputs: one tensor named ``input``, datatype FP32, shape [N, F], as ``raw_input_contents``
or ``contents.fp32_contents``. Outputs: always ``raw_output_contents``, FP32, for the
requested outputs (``probabilities`` and/or ``logits``, each at most once; both when none
are named). Parameters (Triton's ``classification``, shared memory, sequences, priorities)
are not supported and are refused by name rather than ignored. As Triton does,
``ModelReady`` answers ``ready: false`` for a model or version it does not have.
"""

from __future__ import annotations

import grpc
import numpy as np

from candor import __version__
from candor.kserve.v2 import grpc_predict_v2_pb2 as pb
from candor.kserve.v2 import grpc_predict_v2_pb2_grpc as pb_grpc
from candor.server.core.errors import InvalidArgument, NotFound, shown
from candor.server.core.model import LoadedModel
from candor.server.core.plane import DataPlane, InputTensor
from candor.server.rpc.calls import CallObserver, unary
from candor.server.rpc.convert import to_raw
from candor.server.rpc.kserve_parameters import check_parameters

PLATFORM = "onnx_onnxv1"
INPUT = "input"
OUTPUTS = ("probabilities", "logits")
PREDICTION_SET = "prediction_set"  # BOOL [N, K], at the version's default coverage and method, where it has sets


def set_mask(sizes: np.ndarray, classes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The sets as a bool mask [N, K] from their sizes and concatenated classes."""
    mask = np.zeros(shape, dtype=bool)
    mask[np.repeat(np.arange(shape[0]), sizes), classes] = True
    return mask


def outputs_of(model: LoadedModel) -> tuple[str, ...]:
    return (*OUTPUTS, PREDICTION_SET) if model.opened.sets is not None else OUTPUTS


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
        try:
            ready = self.plane.version_ready(request.name, request.version)
        except NotFound:
            ready = False  # Triton's answer, which tritonclient.is_model_ready() expects
        return pb.ModelReadyResponse(ready=ready and self._is_ready())

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
            outputs=[T(name=name, datatype="BOOL" if name == PREDICTION_SET else "FP32", shape=[-1, k])
                     for name in outputs_of(model)],  # fmt: skip
        )

    @unary("ModelInfer")
    async def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        model = self.plane.model(request.model_name, request.model_version)
        if len(request.inputs) != 1:
            raise InvalidArgument(
                f"the model takes one input tensor 'input' [N, {model.num_features}] FP32, got {len(request.inputs)}"
            )
        tensor = request.inputs[0]
        if tensor.name != INPUT:
            raise InvalidArgument(f"unexpected input {shown(tensor.name)} for model {shown(model.name)}; its input is "
                                  f"{INPUT!r} [N, {model.num_features}] FP32")  # fmt: skip
        raw = request.raw_input_contents
        if len(raw) > 1:
            raise InvalidArgument(f"raw_input_contents must hold one entry per input (1), got {len(raw)}")
        offered = outputs_of(model)
        check_parameters("request", "request", request.parameters)
        check_parameters("input", "input", tensor.parameters, tensor.datatype)
        for o in request.outputs:
            check_parameters(f"output {shown(o.name)}", "output", o.parameters, "BOOL" if o.name == PREDICTION_SET else "FP32")
        wanted = [o.name for o in request.outputs] or list(offered)
        unknown = [w for w in wanted if w not in offered]
        if unknown:
            missing = " (this version has no conformal scores)" if unknown[0] == PREDICTION_SET else ""
            raise InvalidArgument(f"unknown output {shown(unknown[0])}{missing}; outputs are {', '.join(offered)}")
        if len(set(wanted)) != len(wanted):
            twice = next(w for w in wanted if wanted.count(w) > 1)
            raise InvalidArgument(f"output {twice!r} is requested more than once; name each output once")
        rows = InputTensor(shape=list(tensor.shape), raw=raw[0] if raw else b"", values=tensor.contents.fp32_contents,
                           dtype_ok=tensor.datatype == "FP32", dtype_name=tensor.datatype or "(empty)")  # fmt: skip
        coverage = model.opened.sets.spec.default_coverage if PREDICTION_SET in wanted else 0.0
        answer = await self.plane.predict(model, rows, time_remaining=context.time_remaining(), coverage=coverage)
        arrays = {"probabilities": answer.probabilities, "logits": answer.logits}
        response = pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
        for name in wanted:
            if name == PREDICTION_SET:
                served = answer.sets[1]
                mask = set_mask(served.sizes, served.classes, answer.probabilities.shape)
                response.outputs.add(name=name, datatype="BOOL", shape=list(mask.shape))
                response.raw_output_contents.append(mask.tobytes())  # one byte per element, as the protocol's BOOL
                continue
            out = arrays[name]
            response.outputs.add(name=name, datatype="FP32", shape=list(out.shape))
            response.raw_output_contents.append(to_raw(out))
        return response
