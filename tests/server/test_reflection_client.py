"""What grpcurl does, done here: a client with no generated code at all.

grpcurl itself cannot be installed on this machine (it is in no package registry it can reach), so this
test does what it does, step by step: it learns every message type from the server's reflection service,
builds requests from JSON (grpcurl's ``-d``, with bytes as base64), calls by full method name, and reads the
answers back as JSON. It checks that reflection describes both APIs completely, their dependencies
included, in a descriptor pool of its own (nothing compiled in), and that JSON requests are answered as the
SDK's are.
"""

from __future__ import annotations

import base64

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

pytestmark = pytest.mark.slow

KSERVE = "inference.GRPCInferenceService"
CANDOR = "candor.v1.InferenceService"
HEALTH = "grpc.health.v1.Health"


class ReflectedClient:
    """``grpcurl -d JSON TARGET SERVICE/METHOD``, in Python: types from reflection only."""

    def __init__(self, channel: grpc.Channel):
        self.channel = channel
        self.database = ProtoReflectionDescriptorDatabase(channel)
        self.pool = descriptor_pool.DescriptorPool(self.database)

    def services(self) -> set[str]:
        return set(self.database.get_services())

    def call(self, full_method: str, body: dict) -> dict:
        service, method = full_method.rsplit("/", 1)
        described = self.pool.FindServiceByName(service).FindMethodByName(method)
        request_type = message_factory.GetMessageClass(described.input_type)
        response_type = message_factory.GetMessageClass(described.output_type)
        rpc = self.channel.unary_unary(f"/{service}/{method}", request_serializer=request_type.SerializeToString,
                                       response_deserializer=response_type.FromString)  # fmt: skip
        return json_format.MessageToDict(rpc(json_format.ParseDict(body, request_type()), timeout=30))


@pytest.fixture(scope="module")
def reflected(server):
    with grpc.insecure_channel(server.target) as channel:
        yield ReflectedClient(channel)


def probabilities_of(answer: dict, rows: int) -> np.ndarray:
    names = [o["name"] for o in answer["outputs"]]
    raw = base64.b64decode(answer["rawOutputContents"][names.index("probabilities")])
    return np.frombuffer(raw, "<f4").reshape(rows, -1)


def test_reflection_lists_and_fully_describes_both_apis(reflected):
    assert {KSERVE, CANDOR, HEALTH} <= reflected.services()
    for service in (KSERVE, CANDOR, HEALTH):
        for method in reflected.pool.FindServiceByName(service).methods:  # every type resolvable, imports included
            assert message_factory.GetMessageClass(method.input_type) and message_factory.GetMessageClass(method.output_type)


def test_health_and_metadata_from_json(reflected):
    assert reflected.call(f"{HEALTH}/Check", {}) == {"status": "SERVING"}
    assert reflected.call(f"{KSERVE}/ServerLive", {}) == {"live": True}
    assert reflected.call(f"{KSERVE}/ServerReady", {}) == {"ready": True}
    assert reflected.call(f"{KSERVE}/ModelReady", {"name": "digits"}) == {"ready": True}
    metadata = reflected.call(f"{KSERVE}/ModelMetadata", {"name": "digits"})
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "64"]}]  # JSON writes int64 as text


def test_infer_with_raw_and_typed_contents_answers_as_the_sdk_does(reflected, server, digits_rows):
    rows = digits_rows[:4].astype("<f4")
    tensor = {"name": "input", "datatype": "FP32", "shape": [4, 64]}
    raw = reflected.call(f"{KSERVE}/ModelInfer", {"model_name": "digits", "inputs": [tensor],
                                                  "raw_input_contents": [base64.b64encode(rows.tobytes()).decode()]})  # fmt: skip
    typed_tensor = {**tensor, "contents": {"fp32_contents": rows.ravel().tolist()}}
    typed = reflected.call(f"{KSERVE}/ModelInfer", {"model_name": "digits", "inputs": [typed_tensor]})
    with server.client() as c:
        expected = c.predict(rows, model="digits").probabilities
    np.testing.assert_allclose(probabilities_of(raw, 4), expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(probabilities_of(typed, 4), probabilities_of(raw, 4))
    inputs = {"shape": [4, 64], "raw_data": base64.b64encode(rows.tobytes()).decode()}
    own = reflected.call(f"{CANDOR}/Predict", {"model": "digits", "columnar": True, "coverage": 0.9, "inputs": inputs})
    np.testing.assert_allclose(np.frombuffer(base64.b64decode(own["probabilities"]["rawData"]), "<f4").reshape(4, -1), expected,
                               rtol=0, atol=1e-6)  # fmt: skip
    assert own["coverage"] == 0.9 and len(base64.b64decode(own["predictionSetSize"]["rawData"])) == 4 * 4


def test_an_unknown_model_is_not_found_and_not_ready(reflected):
    with pytest.raises(grpc.RpcError) as info:
        reflected.call(f"{KSERVE}/ModelInfer", {"model_name": "nope", "inputs": [{"name": "input", "datatype": "FP32",
                                                                                   "shape": [1, 64]}]})  # fmt: skip
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in info.value.details()
    assert reflected.call(f"{KSERVE}/ModelReady", {"name": "nope"}) == {}  # ready: false is JSON's default, left out
