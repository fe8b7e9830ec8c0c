"""A bare grpc.aio server answering candor.v1 Predict with a canned response:
the transport limit the Candor server is compared with (no batching, no
onnxruntime, no validation, no metrics).

    python benchmarks/echo_server.py PORT ROWS CLASSES
"""

from __future__ import annotations

import asyncio
import sys

import grpc
import numpy as np

from candor.v1 import inference_pb2 as pb
from candor.v1 import inference_pb2_grpc as pb_grpc


class Echo(pb_grpc.InferenceServiceServicer):
    def __init__(self, classes: int):
        self.classes = classes

    async def Predict(self, request: pb.PredictRequest, context) -> pb.PredictResponse:
        # The same response shape Candor sends, built as cheaply as possible.
        n = request.inputs.shape[0] if request.inputs.shape else 1
        probs = np.full((n, self.classes), 1.0 / self.classes, "<f4")
        return pb.PredictResponse(
            model=request.model,
            version="1",
            probabilities=pb.Tensor(shape=[n, self.classes], dtype=pb.DATA_TYPE_FLOAT32, raw_data=probs.tobytes()),
            confidences=[1.0 / self.classes] * n,
            prediction_ids=["0" * 32] * n,
            top_k=1,
            top_k_indices=[0] * n,
            top_k_names=["0"] * n,
            top_k_probabilities=[1.0 / self.classes] * n,
        )


async def main(port: int, classes: int) -> None:
    server = grpc.aio.server()
    pb_grpc.add_InferenceServiceServicer_to_server(Echo(classes), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"echo on 127.0.0.1:{bound}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
