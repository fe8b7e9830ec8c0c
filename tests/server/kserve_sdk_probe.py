"""Run by tests/server/test_kserve_sdk.py inside .venv-oracles/kserve, where KServe's own SDK is installed (never in
the project's environment). It calls a Candor server the way a KServe user would and prints what it saw as JSON.

usage: python kserve_sdk_probe.py TARGET ROWS.npy
"""

from __future__ import annotations

import asyncio
import json
import sys

import grpc
import numpy as np
from kserve import InferenceGRPCClient, InferInput, InferRequest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from kserve.protocol.infer_type import RequestedOutput


def request(rows: np.ndarray, model: str, raw: bool) -> InferRequest:
    tensor = InferInput(name="input", shape=list(rows.shape), datatype="FP32")
    tensor.set_data_from_numpy(rows, binary_data=raw)  # raw: raw_input_contents plus binary_data_size; typed: fp32_contents
    wanted = [RequestedOutput("probabilities"), RequestedOutput("prediction_set")]
    return InferRequest(model_name=model, infer_inputs=[tensor], request_outputs=wanted)


async def probe(target: str, rows: np.ndarray) -> dict:
    # retries=0: an unknown model must come back as the server answered it, not after a retry policy.
    async with InferenceGRPCClient(url=target, timeout=30, retries=0) as client:
        seen: dict = {"live": await client.is_server_live(), "ready": await client.is_server_ready(),
                      "model_ready": await client.is_model_ready("digits")}  # fmt: skip
        # The SDK has no metadata call of its own; its generated stub is what a KServe user would use.
        metadata = await GRPCInferenceServiceStub(client._channel).ModelMetadata(pb.ModelMetadataRequest(name="digits"))
        inputs = [[t.name, t.datatype, list(t.shape)] for t in metadata.inputs]
        seen["metadata"] = {"platform": metadata.platform, "inputs": inputs, "outputs": [t.name for t in metadata.outputs]}
        raw_sent = request(rows, "digits", raw=True).to_grpc()
        seen["raw_request_parameters"] = sorted(raw_sent.inputs[0].parameters)
        for form, raw in (("raw", True), ("typed", False)):
            answer = await client.infer(request(rows, "digits", raw))
            by_name = {o.name: o for o in answer.outputs}
            seen[form] = {"model": answer.model_name, "version": answer.model_version,
                          "probabilities": by_name["probabilities"].as_numpy().tolist(),
                          "prediction_set": by_name["prediction_set"].as_numpy().tolist()}  # fmt: skip
        try:
            await client.infer(request(rows, "nope", raw=True))
            seen["unknown"] = None
        except grpc.aio.AioRpcError as error:
            seen["unknown"] = [error.code().name, error.details()]
        try:
            seen["unknown_ready"] = await client.is_model_ready("nope")
        except grpc.aio.AioRpcError as error:
            seen["unknown_ready"] = error.code().name
    return seen


if __name__ == "__main__":
    print(json.dumps(asyncio.run(probe(sys.argv[1], np.load(sys.argv[2])))))
