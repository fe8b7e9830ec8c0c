"""Every RPC of both services, fed arbitrary bytes and arbitrary well-formed-but-wrong messages
(hypothesis): each answer must carry a status code from the documented set, never UNKNOWN or
INTERNAL, and the server must still be healthy and correct afterwards.

Message types come from the live server through reflection, into a private descriptor pool,
so this file needs neither generated module (nor clashes with tritonclient's)."""

from __future__ import annotations

import base64

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import FieldDescriptor
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.rpcs import declared_rpcs

pytestmark = pytest.mark.slow  # real servers, installs or Prometheus in child processes

# What README documents; INTERNAL and UNKNOWN would mean a bug reached the caller.
DOCUMENTED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE,
              grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED,
              grpc.StatusCode.FAILED_PRECONDITION}  # fmt: skip
DOCUMENTED_VALUES = {c.value[0] for c in DOCUMENTED}
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


RPCS = declared_rpcs()
SEEN: set[int] = set()  # every status code the fuzzing drew out
IDS = [m for _, m, _ in RPCS]


@pytest.fixture(scope="module")
def pool(server):
    with grpc.insecure_channel(server.target) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        p = descriptor_pool.DescriptorPool(db)
        for service, _, _ in RPCS:
            p.FindServiceByName(service)  # loads the files while the channel is open
    return p


def request_class(pool, service: str, method: str):
    return message_factory.GetMessageClass(pool.FindMethodByName(f"{service}.{method}").input_type)


def call(target: str, service: str, method: str, streaming: bool, payloads: list[bytes]) -> list[int]:
    """Status codes seen: the call's own, plus each per-message error of a stream."""
    path = f"/{service}/{method}"
    with grpc.insecure_channel(target) as channel:
        try:
            if streaming:
                responses = list(channel.stream_stream(path)(iter(payloads), timeout=20))
                return [grpc.StatusCode.OK.value[0], *stream_errors(responses)]
            channel.unary_unary(path)(payloads[0], timeout=20)
            return [grpc.StatusCode.OK.value[0]]
        except grpc.RpcError as e:
            return [e.code().value[0]]


def stream_errors(raw_responses: list[bytes]) -> list[int]:
    """The per-message error codes of PredictStream's responses."""
    from candor.v1 import inference_pb2

    return [r.error.code for r in map(inference_pb2.PredictStreamResponse.FromString, raw_responses) if r.HasField("error")]


# Versions str.isdigit() accepts but int() rejects or misreads, and one of 5,000 digits.
HOSTILE_VERSIONS = ["²", "¹", "١", "9" * 5000]
NAMES = ["", "digits", "1", "2", "0", "-1", "input", "probabilities", "logits", "FP32", "INT64", "BYTES", *HOSTILE_VERSIONS]
HUGE_FINITE = [3.4e38, -3.4e38, 1e38]  # finite, and they overflow a model to NaN
STRINGS = st.sampled_from(NAMES) | st.text(max_size=12)
SIGNED = st.sampled_from([0, 1, -1, 2, 8, 64, 2**31 - 1, -(2**31)]) | st.integers(-(10**6), 10**6)


def scalar(field: FieldDescriptor, depth: int):
    t = field.type
    if t == FieldDescriptor.TYPE_MESSAGE:
        return message_dict(field.message_type, depth + 1)
    if t == FieldDescriptor.TYPE_STRING:
        return STRINGS
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.floats(width=32 if t == FieldDescriptor.TYPE_FLOAT else 64) | st.sampled_from(HUGE_FINITE)
    if t == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values] + [99])
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.sampled_from([0, 1, 2, 64, 2**32 - 1]) | st.integers(0, 10**6)
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.sampled_from([0, 1, 2, 64, 2**63, 2**64 - 1]) | st.integers(0, 10**6)
    if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return SIGNED | st.sampled_from([2**62, -(2**62), 2**63 - 1])
    return SIGNED


def message_dict(desc, depth: int = 0):
    """A dict for json_format.ParseDict with any subset of ``desc``'s fields set to plausible or hostile values."""
    if depth > 3:
        return st.just({})
    fields = {}
    for f in desc.fields:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            key, value = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            fields[f.json_name] = st.dictionaries(st.text(max_size=8), scalar(value, depth), max_size=3) if key else st.just({})
        elif f.is_repeated:
            fields[f.json_name] = st.lists(scalar(f, depth), max_size=6)
        else:
            fields[f.json_name] = scalar(f, depth)
    return st.fixed_dictionaries({}, optional=fields)


def build(cls, data: dict) -> bytes:
    try:
        return json_format.ParseDict(data, cls()).SerializeToString()
    except (json_format.ParseError, ValueError, TypeError):
        assume(False)  # e.g. two members of one oneof: not a well-formed message


@pytest.mark.parametrize(("service", "method", "streaming"), RPCS, ids=IDS)
@FUZZ
@given(data=st.lists(st.binary(max_size=256), min_size=1, max_size=3))
def test_arbitrary_bytes_get_documented_codes(server, service, method, streaming, data):
    codes = call(server.target, service, method, streaming, data)
    assert set(codes) <= DOCUMENTED_VALUES, f"{method}: {codes} for {data!r}"
    SEEN.update(codes)


@pytest.mark.parametrize(("service", "method", "streaming"), RPCS, ids=IDS)
@FUZZ
@given(data=st.data())
def test_wrong_messages_get_documented_codes(server, pool, service, method, streaming, data):
    cls = request_class(pool, service, method)
    count = data.draw(st.integers(1, 3)) if streaming else 1
    payloads = [build(cls, data.draw(message_dict(cls.DESCRIPTOR))) for _ in range(count)]
    codes = call(server.target, service, method, streaming, payloads)
    assert set(codes) <= DOCUMENTED_VALUES, f"{method}: {codes}"
    SEEN.update(codes)


def hostile_messages(pool) -> list[tuple[str, str, bool, bytes]]:
    """Hand-made attacks from issue 15, as (service, method, streaming, payload)."""
    predict_cls = request_class(pool, "candor.v1.InferenceService", "Predict")
    infer_cls = request_class(pool, "inference.GRPCInferenceService", "ModelInfer")
    stream_cls = request_class(pool, "candor.v1.InferenceService", "PredictStream")
    huge = [3.4e38] * 64
    out = []
    for version in HOSTILE_VERSIONS:
        p = json_format.ParseDict({"model": "digits", "version": version, "inputs": {"shape": [1, 64], "floatData": [0.0] * 64}},
                                  predict_cls())  # fmt: skip
        out.append(("candor.v1.InferenceService", "Predict", False, p.SerializeToString()))
        out.append(("candor.v1.InferenceService", "PredictStream", True, stream_cls(request=p).SerializeToString()))
    p = json_format.ParseDict({"model": "digits", "inputs": {"shape": [1, 64], "floatData": huge}}, predict_cls())
    out.append(("candor.v1.InferenceService", "Predict", False, p.SerializeToString()))
    oversized = json_format.ParseDict({"model": "digits", "inputs": {"shape": [1, 64], "floatData": [0.5] * 200_000}},
                                      predict_cls())  # fmt: skip
    out.append(("candor.v1.InferenceService", "Predict", False, oversized.SerializeToString()))
    infer = json_format.ParseDict({"modelName": "digits", "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64],
                                   "contents": {"fp32Contents": [0.5] * 200_000}}]}, infer_cls())  # fmt: skip
    out.append(("inference.GRPCInferenceService", "ModelInfer", False, infer.SerializeToString()))
    infer_huge = json_format.ParseDict({"modelName": "digits", "inputs": [{"name": "input", "datatype": "FP32",
                                        "shape": [1, 64], "contents": {"fp32Contents": huge}}]}, infer_cls())  # fmt: skip
    out.append(("inference.GRPCInferenceService", "ModelInfer", False, infer_huge.SerializeToString()))
    return out


def test_hostile_values_get_documented_codes(server, pool):
    """Non-ASCII digit versions, huge finite floats and oversized typed floats: each refused with
    INVALID_ARGUMENT (a stream: that message's error, the stream goes on), never INTERNAL or UNKNOWN."""
    for service, method, streaming, payload in hostile_messages(pool):
        codes = call(server.target, service, method, streaming, [payload, payload] if streaming else [payload])
        refused = [c for c in codes if c != grpc.StatusCode.OK.value[0]]
        assert refused and set(refused) == {grpc.StatusCode.INVALID_ARGUMENT.value[0]}, (method, codes)
        SEEN.update(codes)


def test_the_server_is_healthy_and_correct_after_the_fuzzing(server, digits_rows):
    """Runs after the fuzz tests above (file order): still SERVING, still right, nothing internal logged;
    and the fuzzing reached past the parsers (some calls succeeded, some were refused for their content)."""
    assert {grpc.StatusCode.OK.value[0], grpc.StatusCode.INVALID_ARGUMENT.value[0], grpc.StatusCode.NOT_FOUND.value[0]} <= SEEN
    with server.client() as client:
        assert client.health() == "SERVING" and client.health("digits") == "SERVING"
        result = client.predict(digits_rows[:4], model="digits")
        assert result.probabilities.shape == (4, 10)
    log = "".join(server.process.output)
    assert "Traceback" not in log and "internal error" not in log
    assert server.metric("candor_requests_total", code="INTERNAL") == 0
    assert server.metric("candor_requests_total", code="UNKNOWN") == 0


def test_the_fuzzer_can_see_a_bad_code(server):
    """The check above can fail: a method that does not exist answers UNIMPLEMENTED, outside the set."""
    codes = call(server.target, "candor.v1.InferenceService", "NoSuchMethod", False, [b""])
    assert codes == [grpc.StatusCode.UNIMPLEMENTED.value[0]]


def test_undecodable_requests_are_named(server):
    """Bytes that are not the expected message: INVALID_ARGUMENT naming the type (for a stream, which message)."""
    with grpc.insecure_channel(server.target) as channel:
        with pytest.raises(grpc.RpcError) as e:
            channel.unary_unary("/candor.v1.InferenceService/Predict")(b"\xff\xfe\xfd", timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details() == "Predict: the request is not a valid candor.v1.PredictRequest message"
        with pytest.raises(grpc.RpcError) as e:
            list(channel.stream_stream("/candor.v1.InferenceService/PredictStream")(iter([b"", b"\xff\xff"]), timeout=10))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details() == "PredictStream: message 2 of the stream is not a valid candor.v1.PredictStreamRequest"
