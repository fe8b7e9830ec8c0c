"""The bare model server: grpc.aio plus onnxruntime and nothing else, the anchor Candor's batched
path is measured against (a model server's floor in Python, where the echo server is the transport's).

    python benchmarks/bare_server.py PORT MODEL.onnx

It answers KServe v2 ``ModelInfer`` and candor.v1 ``Predict`` on raw little-endian FP32 bytes: one
onnxruntime run per request, on the event loop (no batching, no thread hand-off), with the session
options Candor uses by default, and the softmax probabilities out as raw bytes. No validation beyond
what numpy needs, no prediction log, no drift, no metrics, no top-k, no ids.
"""

from __future__ import annotations

import asyncio
import sys

import grpc
import numpy as np

from candor.kserve.v2 import grpc_predict_v2_pb2 as kpb
from candor.kserve.v2 import grpc_predict_v2_pb2_grpc as kpb_grpc
from candor.server.core.sessions import CPU, create_session
from candor.server.core.settings import Settings
from candor.v1 import inference_pb2 as pb
from candor.v1 import inference_pb2_grpc as pb_grpc

OUTPUT = ["probabilities"]


class Bare(pb_grpc.InferenceServiceServicer):
    def __init__(self, session, features: int):
        self.session = session
        self.features = features

    async def Predict(self, request: pb.PredictRequest, context) -> pb.PredictResponse:
        X = np.frombuffer(request.inputs.raw_data, dtype="<f4").reshape(-1, self.features)
        (probs,) = self.session.run(OUTPUT, {"input": X})
        return pb.PredictResponse(model=request.model, version="1",
                                  probabilities=pb.Tensor(shape=probs.shape, dtype=pb.DATA_TYPE_FLOAT32,
                                                          raw_data=probs.tobytes()))  # fmt: skip


class KServeBare(kpb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, session, features: int):
        self.session = session
        self.features = features

    async def ModelInfer(self, request: kpb.ModelInferRequest, context) -> kpb.ModelInferResponse:
        X = np.frombuffer(request.raw_input_contents[0], dtype="<f4").reshape(-1, self.features)
        (probs,) = self.session.run(OUTPUT, {"input": X})
        response = kpb.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
        response.outputs.add(name="probabilities", datatype="FP32", shape=probs.shape)
        response.raw_output_contents.append(probs.tobytes())
        return response


async def main(port: int, model_path: str) -> None:
    defaults = Settings()
    session, _ = create_session(model_path, [CPU], defaults.intra_op_threads, defaults.allow_spinning)
    features = session.get_inputs()[0].shape[1]
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    pb_grpc.add_InferenceServiceServicer_to_server(Bare(session, features), server)
    kpb_grpc.add_GRPCInferenceServiceServicer_to_server(KServeBare(session, features), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"bare on 127.0.0.1:{bound}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
