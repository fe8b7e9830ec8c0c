"""A bare grpc.aio server answering candor.v1 Predict and KServe v2 ModelInfer with canned responses:
the transport limit the Candor server is compared with (no batching, no
onnxruntime, no validation, no metrics).

    python benchmarks/echo_server.py PORT CLASSES [edge]

``edge``: put Candor's edge interceptor (stopping, limits, time budget, decoding; no tokens) in
front, to measure what it costs on its own.
"""

from __future__ import annotations

import asyncio
import sys

import grpc
import numpy as np

from candor.kserve.v2 import grpc_predict_v2_pb2 as kpb
from candor.kserve.v2 import grpc_predict_v2_pb2_grpc as kpb_grpc
from candor.v1 import inference_pb2 as pb
from candor.v1 import inference_pb2_grpc as pb_grpc


class Echo(pb_grpc.InferenceServiceServicer):
    def __init__(self, classes: int):
        self.classes = classes

    async def Predict(self, request: pb.PredictRequest, context) -> pb.PredictResponse:
        # The same response shape Candor sends (columnar when asked), built as cheaply as possible.
        n = request.inputs.shape[0] if request.inputs.shape else 1
        probs = np.full((n, self.classes), 1.0 / self.classes, "<f4")
        response = pb.PredictResponse(model=request.model, version="1", top_k=1,
                                      probabilities=pb.Tensor(shape=[n, self.classes], dtype=pb.DATA_TYPE_FLOAT32,
                                                              raw_data=probs.tobytes()))  # fmt: skip
        if request.columnar:
            response.request_id = "0" * 24
            response.top_k_index.CopyFrom(pb.Tensor(shape=[n, 1], dtype=pb.DATA_TYPE_INT32, raw_data=bytes(4 * n)))
            top = probs[:, :1].tobytes()
            response.top_k_probability.CopyFrom(pb.Tensor(shape=[n, 1], dtype=pb.DATA_TYPE_FLOAT32, raw_data=top))
            return response
        response.confidences.extend([1.0 / self.classes] * n)
        response.prediction_ids.extend(["0" * 32] * n)
        response.top_k_indices.extend([0] * n)
        response.top_k_names.extend(["0"] * n)
        response.top_k_probabilities.extend([1.0 / self.classes] * n)
        return response


class KServeEcho(kpb_grpc.GRPCInferenceServiceServicer):
    """KServe v2 ModelInfer answered with Candor's output shapes (probabilities and logits, raw FP32)."""

    def __init__(self, classes: int):
        self.classes = classes

    async def ModelInfer(self, request: kpb.ModelInferRequest, context) -> kpb.ModelInferResponse:
        n = request.inputs[0].shape[0] if request.inputs and request.inputs[0].shape else 1
        out = np.full((n, self.classes), 1.0 / self.classes, "<f4").tobytes()
        response = kpb.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
        for name in ("probabilities", "logits"):
            response.outputs.add(name=name, datatype="FP32", shape=[n, self.classes])
            response.raw_output_contents.append(out)
        return response


async def main(port: int, classes: int, edge: bool) -> None:
    interceptors = []
    if edge:
        from candor.server.core.settings import Settings
        from candor.server.rpc.edge import EdgeInterceptor, EdgeLimits

        s = Settings()
        interceptors.append(EdgeInterceptor(EdgeLimits(s.max_inflight_requests, s.default_deadline_s, s.max_deadline_s,
                                                       s.max_health_watches)))  # fmt: skip
    server = grpc.aio.server(interceptors=interceptors)
    pb_grpc.add_InferenceServiceServicer_to_server(Echo(classes), server)
    kpb_grpc.add_GRPCInferenceServiceServicer_to_server(KServeEcho(classes), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"echo on 127.0.0.1:{bound}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:4] == ["edge"]))
